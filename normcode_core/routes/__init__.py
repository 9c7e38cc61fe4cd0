"""Every route module of the HTTP API, listed explicitly (each exports `routes: list[BaseRoute]`)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from normcode_core.routes import agents, config, plans, plugins, runs, streaming

ROUTE_MODULES = (plugins, config, agents, plans, runs, streaming)


def all_routes() -> list[BaseRoute]:
    """The API routes of every route module, in the order listed above."""
    return [route for module in ROUTE_MODULES for route in module.routes]
