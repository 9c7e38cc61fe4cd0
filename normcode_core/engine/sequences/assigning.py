"""`assigning` ($. specification, $+ continuation, $- derelation/selection, $% abstraction, $= identity).

Working interpretation: `syntax.marker` plus marker-specific fields: `assign_source` (a name or
a prioritized list of names), `assign_destination`, `by_axes`, `face_value`, `axis_names`,
`selector` ({index, key, unpack, unpack_before_selection}), `canonical_concept`, `alias_concept`.
"""

from __future__ import annotations

import json
from typing import Any

from normcode_core.engine.reference import NONE_AXIS, Reference, element_action
from normcode_core.engine.step import StepContext, StepResult


class _Unpacked(list):
    """A selection result that spreads into several elements of the output."""


async def run(ctx: StepContext) -> StepResult:
    syntax = ctx.working_interpretation.get("syntax") or {}
    marker = syntax.get("marker")
    if not marker:
        raise ValueError("assigning needs syntax.marker")
    # Later duplicates win, as in upstream's name -> record map.
    values = {v.name: v.reference for v in ctx.values}

    if marker == "=":
        canonical, alias = syntax.get("canonical_concept"), syntax.get("alias_concept")
        if not canonical or not alias:
            raise ValueError("identity ($=) needs canonical_concept and alias_concept")
        source = ctx.state.reference(canonical) or ctx.state.reference(alias)
        return StepResult(reference=source.copy() if source is not None else None, identities=[(canonical, alias)])

    if marker == "%":
        if syntax.get("face_value") is None:
            raise ValueError("abstraction ($%) needs face_value")
        return StepResult(reference=abstraction(syntax["face_value"], syntax.get("axis_names")))

    if marker == ".":
        source_name = syntax.get("assign_source")
        if not source_name:
            raise ValueError("specification ($.) needs assign_source")
        destination = values.get(syntax.get("assign_destination")) if syntax.get("assign_destination") else None
        if isinstance(source_name, list):
            sources = [values.get(name) for name in source_name]
        else:
            if source_name not in values:
                raise ValueError(f"assign_source {source_name!r} is not a value concept of this step")
            sources = [values[source_name]]
        return StepResult(reference=specification(sources, destination))

    if marker == "+":
        source_name, dest_name = syntax.get("assign_source"), syntax.get("assign_destination")
        if not source_name or not dest_name:
            raise ValueError("continuation ($+) needs assign_source and assign_destination")
        if isinstance(source_name, list):
            raise ValueError("continuation ($+) takes a single assign_source")
        if source_name not in values:
            raise ValueError(f"assign_source {source_name!r} is not a value concept of this step")
        return StepResult(reference=continuation(values[source_name], values.get(dest_name), syntax.get("by_axes")))

    if marker == "-":
        source_name, selector = syntax.get("assign_source"), syntax.get("selector")
        if not source_name:
            raise ValueError("derelation ($-) needs assign_source")
        if not selector:
            raise ValueError("derelation ($-) needs a selector")
        if source_name not in values:
            raise ValueError(f"assign_source {source_name!r} is not a value concept of this step")
        return StepResult(reference=derelation(values[source_name], selector))

    destination = values.get(syntax.get("assign_destination") or "")
    return StepResult(reference=destination.copy() if destination is not None else None)


def abstraction(face_value: Any, axis_names: list[str] | None) -> Reference:
    """A reference made from a literal: a sign or plain text is a singleton, a JSON list is data."""
    data, singleton = face_value, not isinstance(face_value, list)
    if isinstance(face_value, str):
        text = face_value.strip()
        data, singleton = text, True
        if text.startswith("[") and not text.startswith("%"):
            try:
                data, singleton = json.loads(text), False
            except json.JSONDecodeError:
                pass
    if singleton:
        return Reference.from_data([data], [NONE_AXIS])
    return Reference.from_data(data, axis_names or None)


def specification(sources: list[Reference | None], destination: Reference | None) -> Reference:
    """The first source with any non-SKIP data, else the destination, else an empty `result`."""
    for source in sources:
        if source is not None and source.get_tensor(ignore_skip=True):
            return source.copy()
    if destination is not None:
        return destination.copy()
    return Reference(["result"], (0,))


def continuation(source: Reference | None, destination: Reference | None, by_axes: list[str] | None) -> Reference:
    if destination is None:
        return source.copy() if source is not None else Reference.from_data([])
    if source is None:
        return destination.copy()
    axis = by_axes[0] if by_axes and by_axes[0] in destination.axes else destination.axes[0]
    return destination.append(source, by_axis=axis)


def derelation(source: Reference, selector: dict[str, Any]) -> Reference:
    index, key = selector.get("index"), selector.get("key")
    unpack = selector.get("unpack", False)
    unpack_before = selector.get("unpack_before_selection", False)

    def select(element: Any) -> Any:
        if unpack_before and isinstance(element, list):
            return _Unpacked(item.get(key) if key is not None and isinstance(item, dict) else item for item in element)
        selected = element
        if index is not None and isinstance(selected, list) and len(selected) > index:
            selected = selected[index]
        if key is not None and isinstance(selected, dict):
            selected = selected.get(key)
        if unpack and isinstance(selected, list):
            return _Unpacked(selected)
        return selected

    out = element_action(select, [source])
    flat = out.tensor
    if isinstance(flat, list) and flat and any(isinstance(item, _Unpacked) for item in flat):
        spread: list[Any] = []
        for item in flat:
            if isinstance(item, _Unpacked):
                spread.extend(item)
            else:
                spread.append(item)
        return Reference.from_data(spread)
    return out
