"""GET /api/config: the effective settings with every secret redacted, and where each value came from."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route


async def effective_config(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    return JSONResponse({"settings": settings.redacted(), "sources": settings.sources()})


routes: list[BaseRoute] = [Route("/api/config", effective_config, methods=["GET"])]
