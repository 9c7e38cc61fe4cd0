"""Finding and loading plugins: the `normcode` entry-point group, then drop-in `.py` files.

Built-in plugins register through the entry-point group exactly like third-party ones. A plugin
that fails to import is recorded with its error; start-up only stops when a required one failed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from normcode_core import hookspecs
from normcode_core.logging import get_logger, redact

ENTRY_POINT_GROUP = "normcode"
# Without these the server cannot work at all; anything else may fail and be reported.
REQUIRED_PLUGINS = frozenset({"storage_sql"})

logger = get_logger("normcode.plugins")


class PluginLoadError(Exception):
    """A required plugin failed to load; `str()` is one line naming it."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    source: str  # "entry_point" or "drop_in"
    module: str
    version: str | None
    hooks: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "module": self.module,
            "version": self.version,
            "hooks": list(self.hooks),
        }


@dataclass(frozen=True)
class PluginFailure:
    name: str
    source: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "source": self.source, "error": self.error}


class PluginManager:
    """Wraps a pluggy manager with what the server needs to know: what loaded, what failed, why."""

    def __init__(self, disabled: list[str] | tuple[str, ...] = ()) -> None:
        self.hook_manager = pluggy.PluginManager("normcode")
        self.hook_manager.add_hookspecs(hookspecs)
        self.disabled = frozenset(disabled)
        self.loaded: list[PluginInfo] = []
        self.failed: list[PluginFailure] = []
        self.skipped: list[str] = []

    @property
    def hook(self) -> Any:
        return self.hook_manager.hook

    # -- loading ----------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
            if self._is_disabled(entry_point.name):
                continue
            version = entry_point.dist.version if entry_point.dist else None
            try:
                module = entry_point.load()
            except BaseException as exc:  # noqa: BLE001 - any import failure is reported, not fatal
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                self._fail(entry_point.name, "entry_point", exc)
                continue
            self._register(entry_point.name, "entry_point", module, version)

    def load_drop_ins(self, directory: Path) -> None:
        """Load every `<directory>/*.py` (not starting with '_') as a plugin named after the file."""
        if not directory.is_dir():
            return
        for path in sorted(directory.glob("*.py")):
            name = path.stem
            if name.startswith("_") or self._is_disabled(name):
                continue
            if name in {info.name for info in self.loaded}:
                self.failed.append(PluginFailure(name, "drop_in", f"a plugin named {name!r} is already loaded"))
                continue
            module_name = f"normcode_drop_in_{name}"
            try:
                spec = importlib.util.spec_from_file_location(module_name, path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except BaseException as exc:  # noqa: BLE001
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                sys.modules.pop(module_name, None)
                self._fail(name, "drop_in", exc)
                continue
            self._register(name, "drop_in", module, getattr(module, "__version__", None))

    def register(self, name: str, plugin: ModuleType | object, version: str | None = None) -> None:
        """Register an already imported plugin object (tests and embedding code use this)."""
        self._register(name, "registered", plugin, version)

    def require(self, names: frozenset[str] = REQUIRED_PLUGINS) -> None:
        """Raise PluginLoadError when a required plugin failed to load or was disabled."""
        for failure in self.failed:
            if failure.name in names:
                raise PluginLoadError(f"required plugin {failure.name!r} failed to load: {failure.error}")
        for name in names & self.disabled:
            raise PluginLoadError(f"required plugin {name!r} cannot be disabled (plugins.disabled)")

    # -- queries ----------------------------------------------------------------------------
    def provider_names(self) -> set[str]:
        """Provider names served by the loaded plugins."""
        names = set()
        for providers in self.hook.agent_providers():
            for provider in providers or []:
                names.add(provider.name)
        return names

    def describe(self) -> dict[str, Any]:
        return {
            "loaded": [info.as_dict() for info in self.loaded],
            "failed": [failure.as_dict() for failure in self.failed],
            "disabled": sorted(self.disabled),
        }

    async def call_lifecycle(self, hook_name: str, app_state: Any) -> None:
        """Call `startup` (in load order) or `shutdown` (reverse order) on every plugin, awaiting results.

        A failing startup hook stops start-up; a failing shutdown hook is logged and the rest still run.
        """
        impls = getattr(self.hook, hook_name).get_hookimpls()  # registration order
        for impl in impls if hook_name == "startup" else reversed(impls):
            try:
                result = impl.function(**{arg: app_state for arg in impl.argnames})
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001
                logger.error("plugin_hook_failed", plugin=impl.plugin_name, hook=hook_name, error=redact(str(exc)))
                if hook_name == "startup":
                    raise

    # -- internals --------------------------------------------------------------------------
    def _is_disabled(self, name: str) -> bool:
        if name in self.disabled:
            self.skipped.append(name)
            return True
        return False

    def _register(self, name: str, source: str, module: Any, version: str | None) -> None:
        try:
            self.hook_manager.register(module, name=name)
        except Exception as exc:  # noqa: BLE001 - e.g. a hook implementation with a wrong signature
            self._fail(name, source, exc)
            return
        try:
            self.hook_manager.check_pending()  # an implementation of a hook nobody declared
        except pluggy.PluginValidationError as exc:
            self.hook_manager.unregister(module)
            self._fail(name, source, exc)
            return
        hooks = tuple(sorted(caller.name for caller in self.hook_manager.get_hookcallers(module) or []))
        module_name = getattr(module, "__name__", type(module).__name__)
        self.loaded.append(PluginInfo(name, source, module_name, version, hooks))

    def _fail(self, name: str, source: str, exc: BaseException) -> None:
        error = redact(f"{type(exc).__name__}: {exc}")
        self.failed.append(PluginFailure(name, source, error))
        logger.warning("plugin_failed", plugin=name, source=source, error=error)


def load_plugins(settings: Any) -> PluginManager:
    """Entry points, then `<data_dir>/plugins/*.py`, minus `plugins.disabled`."""
    manager = PluginManager(disabled=list(settings.get("plugins.disabled", []) or []))
    manager.load_entry_points()
    manager.load_drop_ins(settings.data_dir / "plugins")
    return manager
