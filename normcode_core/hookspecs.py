"""Every hook a NormCode Server plugin can implement.

Built-in plugins (in `plugins/`) and third-party ones implement these the same way: they are
found through the `normcode` entry-point group or dropped into `<data_dir>/plugins/*.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from normcode_core.agents.types import AgentProvider
    from normcode_core.health import HealthCheck
    from normcode_core.settings import Settings
    from normcode_core.storage.base import Storage

hookspec = pluggy.HookspecMarker("normcode")
hookimpl = pluggy.HookimplMarker("normcode")


@hookspec
def agent_providers() -> list[AgentProvider]:
    """Return the agent providers this plugin serves, each under its provider name (e.g. 'openai')."""


@hookspec(firstresult=True)
def storage_backend(settings: Settings) -> Storage | None:
    """Return a Storage for the configured `storage.url`, or None when the URL is not this plugin's."""


@hookspec
def health_checks(app_state: Any) -> list[HealthCheck]:
    """Return readiness checks that GET /ready runs."""


@hookspec
def extra_routes() -> list[BaseRoute]:
    """Return extra Starlette routes to mount on the server."""


@hookspec
def startup(app_state: Any) -> Awaitable[None] | None:
    """Run once when the server starts, after storage and agents are ready (may return an awaitable)."""


@hookspec
def shutdown(app_state: Any) -> Awaitable[None] | None:
    """Run once when the server stops, before storage is closed (may return an awaitable)."""
