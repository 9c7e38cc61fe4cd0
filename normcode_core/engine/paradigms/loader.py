"""Paradigm files: `<name>.json` in the plan's paradigm directory.

A paradigm describes how to build a step's function: `env_spec.tools[].affordances[]` name the
tool affordances it uses (their `call_code` only tells which native implementation is meant,
see bindings.py), and `sequence_spec.steps[]` call them in order, storing results under
`result_key`; `{"__type__": "MetaValue", "key": k}` refers to an earlier result (or to the
step state when `k` starts with "states."). The result stored as `instruction_fn` is the
function applied to every input combination.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any


class ParadigmError(Exception):
    """A paradigm that cannot be found or understood."""


@dataclass(frozen=True)
class MetaValue:
    key: str


@dataclass(frozen=True)
class Affordance:
    tool: str
    name: str
    call_code: str

    @property
    def qualified(self) -> str:
        return f"{self.tool}.{self.name}"


@dataclass(frozen=True)
class ParadigmStep:
    index: int
    affordance: str
    params: Any
    result_key: str | None

    @cached_property
    def refers_to_results(self) -> bool:
        """Whether the params hold MetaValues to resolve (most steps have constant params)."""
        return _holds_meta(self.params)


def _holds_meta(value: Any) -> bool:
    if isinstance(value, MetaValue):
        return True
    if isinstance(value, dict):
        return any(_holds_meta(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_meta(v) for v in value)
    return False


@dataclass(frozen=True)
class Paradigm:
    name: str
    affordances: dict[str, Affordance]
    steps: tuple[ParadigmStep, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


def _object_hook(data: dict[str, Any]) -> Any:
    if data.get("__type__") == "MetaValue":
        return MetaValue(key=str(data.get("key", "")))
    return data


def parse_paradigm(name: str, raw: Any, *, source: str = "") -> Paradigm:
    where = source or name
    if not isinstance(raw, dict):
        raise ParadigmError(f"paradigm {where}: not a JSON object")
    try:
        affordances: dict[str, Affordance] = {}
        for tool in raw["env_spec"]["tools"]:
            for entry in tool["affordances"]:
                affordance = Affordance(str(tool["tool_name"]), str(entry["affordance_name"]), str(entry["call_code"]))
                affordances[affordance.qualified] = affordance  # later entries win, as upstream
        steps = tuple(
            sorted(
                (
                    ParadigmStep(int(step["step_index"]), str(step["affordance"]), step.get("params") or {}, step.get("result_key"))
                    for step in raw["sequence_spec"]["steps"]
                ),
                key=lambda s: s.index,
            )
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ParadigmError(f"paradigm {where}: malformed ({type(exc).__name__}: {exc})") from exc
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    return Paradigm(name=name, affordances=affordances, steps=steps, metadata=metadata)


# Parsed paradigms shared by runs: safe because a Paradigm is immutable and the key changes with
# the file's content (path, inode, mtime, ctime, size: any rewrite or replacement gives a new key).
_CACHE: dict[tuple[str, int, int, int, int], Paradigm] = {}
_CACHE_LIMIT = 512


class ParadigmLibrary:
    """The paradigms of one plan, loaded by name from its paradigm directory."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def load(self, name: Any) -> Paradigm:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            raise ParadigmError(f"invalid paradigm name {name!r}")
        if self.directory is None:
            raise ParadigmError(f"paradigm {name!r} not found: the plan has no paradigm directory")
        path = self.directory / f"{name}.json"
        try:
            stat = path.stat()
        except OSError:
            raise ParadigmError(f"paradigm {name!r} not found in {self.directory.name}/") from None
        key = (str(path), stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        try:
            raw = json.loads(path.read_text(encoding="utf-8"), object_hook=_object_hook)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ParadigmError(f"paradigm {name!r}: cannot read {path.name} ({exc})") from exc
        paradigm = parse_paradigm(name, raw, source=path.name)
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        _CACHE[key] = paradigm
        return paradigm
