"""GET /api/agents: the configured agents, whether each can be used and why not.

Also GET /api/models, the list upstream's deployment server offers its clients.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from normcode_core.agents.registry import AgentRegistry


def _registry(request: Request) -> AgentRegistry:
    return request.app.state.agents


async def list_agents(request: Request) -> JSONResponse:
    registry = _registry(request)
    return JSONResponse({"agents": registry.status(), "default_agent": registry.default_name})


async def list_models(request: Request) -> JSONResponse:
    """Upstream's shape: [{id, name, model, is_mock}], plus `available` and `reason`."""
    return JSONResponse([
        {
            "id": row["name"],
            "name": row["name"],
            "model": row["model"] or row["name"],
            "is_mock": row["provider"] == "mock",
            "available": row["available"],
            "reason": row["reason"],
        }
        for row in _registry(request).status()
    ])


routes: list[BaseRoute] = [
    Route("/api/agents", list_agents, methods=["GET"]),
    Route("/api/models", list_models, methods=["GET"]),
]
