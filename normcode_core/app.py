"""create_app(settings) -> Starlette: routes, middleware, and a lifespan wiring plugins, storage,
agents and runs. `app` is the ASGI entry for `hypercorn normcode_core.app:app` (settings from env).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from normcode_core import __version__
from normcode_core.auth import BearerAuthMiddleware
from normcode_core.errors import EXCEPTION_HANDLERS
from normcode_core.health import health, ready
from normcode_core.logging import RequestLogMiddleware, configure_logging, get_logger, redact
from normcode_core.plugins import PluginLoadError, PluginManager, load_plugins
from normcode_core.routes import all_routes
from normcode_core.settings import DATA_DIR_LAYOUT, Settings, SettingsError, check_agent_providers, load_settings
from normcode_core.storage.base import StorageUnavailable

logger = get_logger("normcode.app")
STORAGE_RETRY_S = 2.0


def create_app(settings: Settings | None = None, plugin_manager: PluginManager | None = None) -> Starlette:
    """Build the server. Raises SettingsError / PluginLoadError when it cannot work at all."""
    settings = settings or load_settings()
    configure_logging(settings)
    plugins = plugin_manager or load_plugins(settings)
    plugins.require()
    check_agent_providers(settings, plugins.provider_names())
    storage = plugins.hook.storage_backend(settings=settings)  # opens no connection yet
    if storage is None:
        raise SettingsError(settings.source_of("storage.url"), "storage.url", "no storage plugin handles this URL")

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        *all_routes(),
        *[route for batch in plugins.hook.extra_routes() for route in batch or []],
    ]
    webui_dir = Path(settings.server.webui_dir)
    if (webui_dir / "index.html").is_file():
        routes.append(Mount("/", app=SinglePageApp(directory=webui_dir, html=True), name="webui"))

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestLogMiddleware),
            Middleware(BearerAuthMiddleware, token=settings.get("server.api_token") or ""),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.plugins = plugins
    app.state.storage = storage
    app.state.agents = None
    app.state.runs = None
    return app


class SinglePageApp(StaticFiles):
    """The built web UI; unknown paths get index.html so client-side routes survive a reload."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or path.split("/", 1)[0] in ("api", "ws"):
                raise
            return await super().get_response("index.html", scope)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    state = app.state
    settings: Settings = state.settings
    configure_logging(settings)
    _create_data_dir_layout(settings)

    storage = state.storage
    state.agents = _build_optional("normcode_core.agents.registry", "AgentRegistry", settings, state.plugins)
    state.runs = _build_optional(
        "normcode_core.runs.manager",
        "RunManager",
        settings=settings,
        storage=storage,
        agents=state.agents,
        plugin_manager=state.plugins,
    )

    retry_task: asyncio.Task[None] | None = None
    if await _migrate(storage):
        await _start_runs(state)
    else:
        retry_task = asyncio.create_task(_retry_storage(state))
    await state.plugins.call_lifecycle("startup", state)
    logger.info(
        "server_started",
        version=__version__,
        data_dir=str(settings.data_dir),
        storage=storage.describe() if hasattr(storage, "describe") else type(storage).__name__,
        plugins=[info.name for info in state.plugins.loaded],
        failed_plugins=[failure.name for failure in state.plugins.failed],
    )
    try:
        yield
    finally:
        if retry_task is not None:
            retry_task.cancel()
        await _shutdown(state, settings)


async def _shutdown(state: Any, settings: Settings) -> None:
    logger.info("server_stopping")
    if state.runs is not None:
        try:
            await state.runs.shutdown(float(settings.get("execution.shutdown_grace_s", 10)))
        except Exception as exc:  # noqa: BLE001 - keep shutting the rest down
            logger.error("run_manager_shutdown_failed", error=redact(str(exc)))
    await state.plugins.call_lifecycle("shutdown", state)
    close = getattr(state.agents, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()
    await asyncio.to_thread(state.storage.close)
    logger.info("server_stopped")


def _create_data_dir_layout(settings: Settings) -> None:
    """plans/ provisions/ runs/ config/ under the data dir; a failure is reported by /ready, not fatal."""
    directories = [settings.data_dir / name for name in DATA_DIR_LAYOUT]
    directories += [Path(settings.storage[key]) for key in ("plans_dir", "runs_dir", "provisions_dir")]
    for directory in directories:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.error("data_dir_unusable", path=str(directory), error=exc.strerror or str(exc))


async def _migrate(storage: Any) -> bool:
    try:
        await asyncio.to_thread(storage.migrate)
    except StorageUnavailable as exc:
        logger.error("storage_unavailable", error=redact(str(exc)), retry_in_s=STORAGE_RETRY_S)
        return False
    return True


async def _retry_storage(state: Any) -> None:
    """Keep trying to reach the database; once migrated, start the run manager (then /ready can pass)."""
    while not await _migrate(state.storage):
        await asyncio.sleep(STORAGE_RETRY_S)
    logger.info("storage_available")
    try:
        await _start_runs(state)
    except Exception as exc:  # noqa: BLE001 - nobody awaits this task; /ready keeps reporting it
        logger.error("run_manager_start_failed", error=redact(str(exc)), exc_info=exc)


async def _start_runs(state: Any) -> None:
    if state.runs is not None:
        await state.runs.start()


def _build_optional(module_name: str, class_name: str, *args: Any, **kwargs: Any) -> Any:
    """Build a component whose module another part of the project provides; None while it is missing."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            logger.warning("component_missing", module=module_name)
            return None
        raise
    return getattr(module, class_name)(*args, **kwargs)


class _AppFromEnvironment:
    """The ASGI entry `normcode_core.app:app`: builds the server from the environment on first use,
    so importing this module stays side-effect free."""

    def __init__(self) -> None:
        self._app: Starlette | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            _die_with_process_runner()
            try:
                self._app = create_app()
            except (SettingsError, PluginLoadError) as exc:
                print(f"normcode-server: {exc}", file=sys.stderr)
                if scope["type"] != "lifespan":
                    raise
                await receive()  # lifespan.startup
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
        await self._app(scope, receive, send)


def _die_with_process_runner() -> None:
    """In a worker process that hypercorn's runner spawned: die with the runner. A runner killed
    with SIGKILL runs no code, and its worker would live on as an orphan, holding the port and
    the runs it was executing, which a restarted server must take over (Linux only)."""
    import multiprocessing
    import os

    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent.pid:  # the runner died before the signal was armed
        os._exit(1)


app = _AppFromEnvironment()
