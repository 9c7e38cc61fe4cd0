"""GET /api/plugins: loaded plugins with their versions and hooks, plus failed and disabled ones."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route


async def list_plugins(request: Request) -> JSONResponse:
    manager = request.app.state.plugins
    described = manager.describe()
    described["providers"] = sorted(manager.provider_names())
    return JSONResponse(described)


routes: list[BaseRoute] = [Route("/api/plugins", list_plugins, methods=["GET"])]
