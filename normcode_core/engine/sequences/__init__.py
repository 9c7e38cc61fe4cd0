"""The inference sequences: `inference_sequence` name -> handler.

Every handler is `async def run(ctx: StepContext) -> StepResult` (see engine/step.py).
Entries are "module:function" strings imported on first use, so a sequence whose module
fails to import only breaks plans that use it (and the error names it).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable

from normcode_core.engine.step import StepContext, StepResult

Handler = Callable[[StepContext], Awaitable[StepResult]]

_HERE = "normcode_core.engine.sequences"
_AGENTIC = f"{_HERE}.agentic"

SEQUENCES: dict[str, str] = {
    # syntactic sequences (runtime engineer)
    "simple": f"{_HERE}.simple:run",
    "assigning": f"{_HERE}.assigning:run",
    "grouping": f"{_HERE}.grouping:run",
    "timing": f"{_HERE}.timing:run",
    "looping": f"{_HERE}.looping:run",
    "quantifying": f"{_HERE}.quantifying:run",
    # agent sequences (normcode_core/engine/sequences/agentic/): composition.py (paradigm steps),
    # user_input.py, legacy.py (the older LLM / script / direct forms)
    "imperative": f"{_AGENTIC}.legacy:run_imperative",
    "imperative_direct": f"{_AGENTIC}.legacy:run_imperative_direct",
    "imperative_in_composition": f"{_AGENTIC}.composition:run_imperative",
    "imperative_input": f"{_AGENTIC}.user_input:run_imperative_input",
    "imperative_python": f"{_AGENTIC}.legacy:run_imperative_python",
    "imperative_python_indirect": f"{_AGENTIC}.legacy:run_imperative_python_indirect",
    "judgement": f"{_AGENTIC}.legacy:run_judgement",
    "judgement_direct": f"{_AGENTIC}.legacy:run_judgement_direct",
    "judgement_in_composition": f"{_AGENTIC}.composition:run_judgement",
    "judgement_python": f"{_AGENTIC}.legacy:run_judgement_python",
    "judgement_python_indirect": f"{_AGENTIC}.legacy:run_judgement_python_indirect",
}

# Deterministic functions of the run state: their results are not stored in the event log but
# recomputed when a run is resumed (this keeps run.db small, e.g. for loops).
SYNTACTIC = frozenset({"simple", "assigning", "grouping", "timing", "looping", "quantifying"})

_loaded: dict[str, Handler] = {}


class UnknownSequence(LookupError):
    pass


def known_sequences() -> frozenset[str]:
    return frozenset(SEQUENCES)


def get_handler(name: str) -> Handler:
    """The handler for a sequence name (imported once)."""
    handler = _loaded.get(name)
    if handler is not None:
        return handler
    target = SEQUENCES.get(name)
    if target is None:
        raise UnknownSequence(f"unknown inference sequence {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    handler = getattr(module, attr)
    _loaded[name] = handler
    return handler


def is_concurrent_safe(inference: object, plan: object = None) -> bool:
    """Whether a step may run ahead of upstream's order, concurrently with others.

    Only steps without order-dependent side effects qualify (e.g. pure LLM steps; not file
    reads/writes, scripts with effects or questions to a human). A sequence module says so by
    defining `concurrent_safe(inference, plan) -> bool`; without it the answer is no.
    """
    target = SEQUENCES.get(getattr(inference, "sequence", ""))
    if target is None:
        return False
    try:
        module = importlib.import_module(target.partition(":")[0])
    except ImportError:
        return False
    check = getattr(module, "concurrent_safe", None)
    return bool(check(inference, plan)) if callable(check) else False
