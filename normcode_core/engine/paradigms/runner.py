"""Building a step function from a paradigm: run its sequence steps against native tools."""

from __future__ import annotations

from typing import Any

from normcode_core.engine.paradigms.bindings import bind
from normcode_core.engine.paradigms.loader import MetaValue, Paradigm, ParadigmError
from normcode_core.engine.tools import Toolbox

STATE_PREFIX = "states."


class ParadigmState:
    """What `states.*` meta values may read: the instruction (`vertical`) and the tools (`body`)."""

    def __init__(self, toolbox: Toolbox, vertical: Any = None, **extra: Any) -> None:
        self.body = toolbox
        self.vertical = vertical
        for name, value in extra.items():
            setattr(self, name, value)


def _state_value(state: ParadigmState, key: str) -> Any:
    value: Any = state
    for part in key[len(STATE_PREFIX):].split("."):
        if not part or part.startswith("_") or not hasattr(value, part):
            raise ParadigmError(f"meta value {key!r} does not name step state")
        value = getattr(value, part)
    return value


def _resolve(value: Any, meta: dict[str, Any], state: ParadigmState) -> Any:
    if isinstance(value, MetaValue):
        if value.key.startswith(STATE_PREFIX):
            return _state_value(state, value.key)
        return meta.get(value.key)
    if isinstance(value, dict):
        return {k: _resolve(v, meta, state) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, meta, state) for v in value]
    return value


def run_paradigm(paradigm: Paradigm, toolbox: Toolbox, state: ParadigmState) -> dict[str, Any]:
    """Execute the sequence steps in order; returns the results by `result_key`."""
    meta: dict[str, Any] = {}
    for step in paradigm.steps:
        affordance = paradigm.affordances.get(step.affordance)
        if affordance is None:
            raise ParadigmError(f"paradigm {paradigm.name}: affordance not found: {step.affordance}")
        params = _resolve(step.params, meta, state) if step.refers_to_results else step.params
        if not isinstance(params, dict):
            raise ParadigmError(f"paradigm {paradigm.name}: step {step.index} params must be an object")
        result = bind(affordance, toolbox, params)
        if step.result_key:
            meta[step.result_key] = result
    return meta
