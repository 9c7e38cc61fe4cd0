"""Layered settings: packaged YAML -> <data_dir>/config YAML -> environment, last wins.

Every leaf value remembers where it came from (`Settings.source_of`), so `normcode-server config`
can say which file or variable set it. Bad settings raise `SettingsError` with one line naming
the file, the key and the problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from dynaconf import DataDict

from normcode_core.agents.types import AgentConfig

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS_DIR = PACKAGE_ROOT / "config"
DEFAULT_FILES = ("default-server.yaml", "default-agents.yaml")
DATA_DIR_FILES = ("server.yaml", "agents.yaml")
DATA_DIR_LAYOUT = ("plans", "provisions", "runs", "config")
ENV_PREFIX = "NORMCODE_"
DEFAULT_DATA_DIR = "./data"

# Built-in provider names; plugins may add more (checked by `check_agent_providers`).
BUILTIN_PROVIDERS = frozenset({"openai", "anthropic", "dashscope", "mock"})

# Types of the known keys. Unknown keys are kept as given (plugins may read their own).
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "env": str,
    "data_dir": str,
    "default_agent": str,
    "server.host": str,
    "server.port": int,
    "server.workers": int,
    "server.api_token": str,
    "server.webui_dir": str,
    "storage.url": str,
    "storage.plans_dir": str,
    "storage.runs_dir": str,
    "storage.provisions_dir": str,
    "execution.max_concurrent_runs": int,
    "execution.default_max_cycles": int,
    "execution.checkpoint_frequency": int,
    "execution.max_parallel_steps": int,
    "execution.script_timeout_s": (int, float),
    "execution.script_memory_mb": int,
    "execution.spare_script_workers": int,
    "execution.resume_on_start": bool,
    "execution.shutdown_grace_s": (int, float),
    "execution.node_id": str,
    "plans.max_package_bytes": int,
    "plans.max_files": int,
    "plans.deploy_examples": bool,
    "logging.level": str,
    "logging.format": str,
    "plugins.disabled": list,
}
CHOICES: dict[str, tuple[str, ...]] = {
    "env": ("development", "production"),
    "logging.level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    "logging.format": ("auto", "json", "console"),
}
POSITIVE = {
    "server.port",
    "server.workers",
    "execution.max_concurrent_runs",
    "execution.default_max_cycles",
    "execution.checkpoint_frequency",
    "execution.max_parallel_steps",
    "execution.script_timeout_s",
    "execution.script_memory_mb",
    "plans.max_package_bytes",
    "plans.max_files",
}
NON_NEGATIVE = {"execution.spare_script_workers"}
AGENT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "provider": str,
    "model": str,
    "api_key_env": str,
    "base_url": str,
    "timeout": (int, float),
    "max_retries": int,
    "max_concurrency": int,
    "temperature": (int, float),
    "description": str,
}

# Key names whose values are secrets wherever they appear (api_key_env names a variable: not secret).
SECRET_KEY_PATTERN = re.compile(r"(token|secret|password|passwd|api_?key|credential|private_?key)$", re.I)
REDACTED = "***"
_EXPANSION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SettingsError(Exception):
    """Invalid settings; `str()` is one line naming the file (or variable), the key and the problem."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"invalid settings: {where}: {problem}")


class Settings:
    """The effective settings: attribute and item access over the merged layers, plus provenance."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str], environ: Mapping[str, str]):
        self._values = values
        self._sources = sources
        self.environ = environ
        # dynaconf's DataDict gives attribute access to nested values; values are stored as given
        # (a full Dynaconf object would evaluate strings such as "@format ..." inside tokens).
        self._tree = DataDict(values)
        self.agents: dict[str, AgentConfig] = _agent_configs(values.get("agents") or {}, sources)

    # -- access -------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._values:
            raise AttributeError(f"no setting {name!r}")
        return self._tree[name]

    def __getitem__(self, key: str) -> Any:
        return self._tree[key]

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def get(self, dotted_key: str, default: Any = None) -> Any:
        """The value at `a.b.c`, or `default` when any part is missing."""
        node: Any = self._values
        for part in dotted_key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def data_dir(self) -> Path:
        return Path(self._values["data_dir"])

    @property
    def default_agent(self) -> str:
        return self._values.get("default_agent", "")

    @property
    def is_development(self) -> bool:
        return self._values.get("env") == "development"

    def as_dict(self) -> dict[str, Any]:
        """A deep copy of every value, secrets included (never send this anywhere)."""
        return _deep_copy(self._values)

    # -- provenance and redaction -------------------------------------------------------
    def source_of(self, dotted_key: str) -> str:
        """Where the value came from: a file path, `env NAME`, or `computed` for derived values."""
        if dotted_key in self._sources:
            return self._sources[dotted_key]
        prefix = dotted_key + "."
        below = [source for key, source in self._sources.items() if key.startswith(prefix)]
        if below:
            return below[-1]
        raise KeyError(dotted_key)

    def sources(self) -> dict[str, str]:
        """Every leaf key and where its value came from."""
        return dict(self._sources)

    def secret_values(self) -> list[str]:
        """Values that must never be shown: keys named in agents' api_key_env and secret-named settings."""
        secrets = {self.environ.get(agent.api_key_env, "") for agent in self.agents.values() if agent.api_key_env}
        for key, value in _leaves(self._values):
            if _is_secret_key(key) and isinstance(value, str):
                secrets.add(value)
        password = _url_password(self._values.get("storage", {}).get("url", ""))
        if password:
            secrets.add(password)
        return sorted(s for s in secrets if len(s) >= 4)

    def redacted(self) -> dict[str, Any]:
        """Every value with secrets replaced by '***' (safe for /api/config and logs)."""
        secrets = self.secret_values()
        return _redact(self._values, secrets, path="")


_MISSING = object()


# -- loading ------------------------------------------------------------------------------
def load_settings(data_dir: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load packaged defaults, then `<data_dir>/config/*.yaml`, then env; validate; return Settings."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    if data_dir is not None:
        resolved_data_dir, data_dir_source = str(data_dir), "argument"
    elif environ.get(ENV_PREFIX + "DATA_DIR"):
        resolved_data_dir, data_dir_source = environ[ENV_PREFIX + "DATA_DIR"], f"env {ENV_PREFIX}DATA_DIR"
    else:
        resolved_data_dir, data_dir_source = DEFAULT_DATA_DIR, "default"
    data_path = Path(resolved_data_dir).expanduser().absolute()

    for path in [DEFAULTS_DIR / name for name in DEFAULT_FILES] + [
        data_path / "config" / name for name in DATA_DIR_FILES
    ]:
        if path.is_file():
            _merge(values, sources, _read_yaml(path, environ), str(path))

    _merge(values, sources, _environment_layer(environ), source=None)

    values["data_dir"] = str(data_path)
    sources["data_dir"] = data_dir_source
    _validate(values, sources)
    _derive(values, sources, data_path)
    return Settings(values, sources, environ)


def _read_yaml(path: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(str(path), "", f"cannot read file: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SettingsError(str(path), "", f"malformed YAML: {where}{problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(str(path), "", f"expected a mapping at the top level, got {type(data).__name__}")
    return _expand(data, environ)


def _expand(node: Any, environ: Mapping[str, str]) -> Any:
    """Expand ${VAR} and ${VAR:-default} in string values; a fully expanded value is re-typed as YAML."""
    if isinstance(node, dict):
        return {key: _expand(value, environ) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand(value, environ) for value in node]
    if isinstance(node, str) and "${" in node:
        expanded = _EXPANSION.sub(lambda m: environ.get(m.group(1)) or (m.group(2) or ""), node)
        return _scalar(expanded)
    return node


def _scalar(text: str) -> Any:
    """'8000' -> 8000, 'true' -> True; anything that is not a plain scalar stays a string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, str)) else text


def _environment_layer(environ: Mapping[str, str]) -> list[tuple[list[str], Any, str]]:
    """(key path, raw value, source) for every env var that sets a value; later entries win."""
    entries: list[tuple[list[str], Any, str]] = []
    # The Docker strategy's plain variables first, so an explicit NORMCODE_* one still wins.
    if environ.get("PORT"):
        entries.append((["server", "port"], environ["PORT"], "env PORT"))
    if environ.get("LOG_LEVEL"):
        entries.append((["logging", "level"], environ["LOG_LEVEL"], "env LOG_LEVEL"))
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "DATA_DIR":
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if all(path):
            entries.append((path, environ[name], f"env {name}"))
    return entries


def _merge(values: dict[str, Any], sources: dict[str, str], layer: Any, source: str | None) -> None:
    """Deep-merge one layer: mappings merge, everything else replaces."""
    if source is None:  # environment entries
        for path, raw, env_source in layer:
            node = values
            for part in path[:-1]:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[path[-1]] = _env_value(".".join(path), raw)
            _forget_below(sources, ".".join(path))
            sources[".".join(path)] = env_source
        return
    for key, value in _leaves(layer, keep_empty=True):
        node = values
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = _deep_copy(value)
        _forget_below(sources, key)
        sources[key] = source


def _env_value(dotted_key: str, raw: str) -> Any:
    """Env values are strings: keep them for string keys, parse them for the rest."""
    expected = SCHEMA.get(dotted_key)
    if expected is str:
        return raw
    if expected is list:
        stripped = raw.strip()
        if stripped.startswith("["):
            parsed = _yaml_or_raw(stripped)
            return parsed
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return _scalar(raw) if expected is not None else _yaml_or_raw(raw)


def _yaml_or_raw(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _forget_below(sources: dict[str, str], key: str) -> None:
    prefix = key + "."
    for existing in [k for k in sources if k.startswith(prefix)]:
        del sources[existing]


def _leaves(node: Mapping[str, Any], prefix: str = "", keep_empty: bool = False) -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and (value or not keep_empty):
            yield from _leaves(value, dotted + ".", keep_empty)
        else:
            yield dotted, value


# -- validation -----------------------------------------------------------------------------
def _validate(values: dict[str, Any], sources: dict[str, str]) -> None:
    for dotted, expected in SCHEMA.items():
        parts = dotted.split(".")
        parent: Any = values
        for part in parts[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
            if parent is None:
                break
        if not isinstance(parent, dict):
            if parent is not None:
                raise SettingsError(_source(sources, parts[0]), parts[0], "expected a mapping")
            continue
        if parts[-1] not in parent:
            continue
        value = _coerce(parent[parts[-1]], expected)
        if value is _MISSING:
            raise SettingsError(
                _source(sources, dotted), dotted, f"expected {_type_name(expected)}, got {parent[parts[-1]]!r}"
            )
        if dotted in CHOICES:
            value = value.upper() if dotted == "logging.level" else value.lower()
            if value not in CHOICES[dotted]:
                raise SettingsError(
                    _source(sources, dotted), dotted, f"must be one of {', '.join(CHOICES[dotted])}, got {value!r}"
                )
        if dotted in POSITIVE and value <= 0:
            raise SettingsError(_source(sources, dotted), dotted, f"must be positive, got {value!r}")
        if dotted in NON_NEGATIVE and value < 0:
            raise SettingsError(_source(sources, dotted), dotted, f"must be 0 or more, got {value!r}")
        parent[parts[-1]] = value
    url = values.get("storage", {}).get("url") or ""
    if url and not url.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise SettingsError(
            _source(sources, "storage.url"), "storage.url", "must start with sqlite:/// or postgresql+psycopg://"
        )
    _validate_agents(values, sources)


def _validate_agents(values: dict[str, Any], sources: dict[str, str]) -> None:
    agents = values.get("agents")
    if agents is None:
        values["agents"] = agents = {}
    if not isinstance(agents, dict):
        raise SettingsError(_source(sources, "agents"), "agents", "expected a mapping of agent names to settings")
    for name, agent in agents.items():
        key = f"agents.{name}"
        if not isinstance(agent, dict):
            raise SettingsError(_source(sources, key), key, "expected a mapping with at least 'provider'")
        if not agent.get("provider"):
            raise SettingsError(_source(sources, key), f"{key}.provider", "missing (e.g. openai, anthropic, dashscope, mock)")
        for field_name, expected in AGENT_FIELDS.items():
            if agent.get(field_name) is None:
                continue
            value = _coerce(agent[field_name], expected)
            if value is _MISSING:
                field_key = f"{key}.{field_name}"
                raise SettingsError(
                    _source(sources, field_key), field_key, f"expected {_type_name(expected)}, got {agent[field_name]!r}"
                )
            agent[field_name] = value
    default_agent = values.get("default_agent")
    if default_agent and default_agent not in agents:
        raise SettingsError(
            _source(sources, "default_agent"),
            "default_agent",
            f"names no configured agent: {default_agent!r} (agents: {', '.join(sorted(agents)) or 'none'})",
        )


def check_agent_providers(settings: Settings, provider_names: set[str] | frozenset[str]) -> None:
    """Raise SettingsError for the first agent whose provider is neither built in nor served by a plugin."""
    known = set(provider_names) | BUILTIN_PROVIDERS
    for name, agent in settings.agents.items():
        if agent.provider not in known:
            key = f"agents.{name}.provider"
            raise SettingsError(
                _source(settings.sources(), key), key, f"unknown provider {agent.provider!r} (known: {', '.join(sorted(known))})"
            )


def _coerce(value: Any, expected: type | tuple[type, ...]) -> Any:
    """The value as the expected type, or _MISSING when it cannot be one."""
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in kinds:
        return _MISSING
    if isinstance(value, kinds):
        return value
    if str in kinds and isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        parsed = _scalar(value.strip())
        if not isinstance(parsed, str):
            return _coerce(parsed, expected)
        if bool in kinds and value.strip().lower() in ("on", "off"):
            return value.strip().lower() == "on"
    if float in kinds and isinstance(value, int):
        return float(value)
    return _MISSING


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds if not (kind is int and float in kinds))


def _source(sources: Mapping[str, str], dotted_key: str) -> str:
    if dotted_key in sources:
        return sources[dotted_key]
    prefix = dotted_key + "."
    below = [source for key, source in sources.items() if key.startswith(prefix)]
    return below[-1] if below else "settings"


# -- derived values -------------------------------------------------------------------------------
def _derive(values: dict[str, Any], sources: dict[str, str], data_path: Path) -> None:
    """Fill the values that depend on the data dir, so every consumer sees absolute paths."""
    storage = values.setdefault("storage", {})
    if not storage.get("url"):
        storage["url"] = f"sqlite:///{data_path / 'server.db'}"
        sources["storage.url"] = "computed (data_dir)"
    for key, default in (("plans_dir", "plans"), ("runs_dir", "runs"), ("provisions_dir", "provisions")):
        raw = storage.get(key) or default
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = data_path / path
            sources[f"storage.{key}"] = "computed (data_dir)" if f"storage.{key}" not in sources else sources[f"storage.{key}"]
        storage[key] = str(path)
    server = values.setdefault("server", {})
    if not server.get("webui_dir"):
        server["webui_dir"] = str(PACKAGE_ROOT / "webui" / "dist")
        sources["server.webui_dir"] = "computed (package)"
    values.setdefault("plugins", {}).setdefault("disabled", [])
    logging_settings = values.setdefault("logging", {})
    if logging_settings.get("format", "auto") == "auto":
        logging_settings["format"] = "console" if values.get("env") == "development" else "json"


def _agent_configs(agents: Mapping[str, Any], sources: Mapping[str, str]) -> dict[str, AgentConfig]:
    configs = {}
    for name, raw in agents.items():
        known = {key: raw[key] for key in AGENT_FIELDS if raw.get(key) is not None}
        extra = {key: value for key, value in raw.items() if key not in AGENT_FIELDS}
        configs[name] = AgentConfig(name=name, extra=extra, **known)
    return configs


def _is_secret_key(dotted_key: str) -> bool:
    return bool(SECRET_KEY_PATTERN.search(dotted_key.rsplit(".", 1)[-1]))


def _url_password(url: str) -> str:
    match = re.match(r"^[a-z0-9+]+://[^:/@]+:([^@]+)@", url or "")
    return match.group(1) if match else ""


def _redact(node: Any, secrets: list[str], path: str) -> Any:
    if isinstance(node, Mapping):
        return {
            key: _redact(value, secrets, f"{path}{key}.")
            for key, value in node.items()
        } if not (path and _is_secret_key(path.rstrip("."))) else REDACTED
    if isinstance(node, list):
        return [_redact(value, secrets, path) for value in node]
    if isinstance(node, str):
        if node and path and _is_secret_key(path.rstrip(".")):
            return REDACTED
        return redact_text(node, secrets)
    return node


def redact_text(text: str, secrets: list[str]) -> str:
    """`text` with every occurrence of a secret replaced by '***'."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value
