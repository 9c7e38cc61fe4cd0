"""Paradigms: loading paradigm JSON from a plan's provisions, binding its tool affordances to
native implementations, and running compositions."""

from normcode_core.engine.paradigms.composition import CompositionError, compose
from normcode_core.engine.paradigms.loader import (
    MetaValue,
    Paradigm,
    ParadigmError,
    ParadigmLibrary,
    parse_paradigm,
)
from normcode_core.engine.paradigms.runner import ParadigmState, run_paradigm

__all__ = [
    "CompositionError",
    "MetaValue",
    "Paradigm",
    "ParadigmError",
    "ParadigmLibrary",
    "ParadigmState",
    "compose",
    "parse_paradigm",
    "run_paradigm",
]
