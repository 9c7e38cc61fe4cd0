"""`grouping`: `&[{}]` / `in` (a labelled relation) and `&[#]` / `across` (a flat collection).

Working interpretation `syntax`: `marker` ("in" | "across"), `by_axes` (axes to collapse, one
list per value reference, or one shared list), `create_axis` (name of the new axis; without it
everything lands in one `_none_axis` element), and the legacy `by_axis_concepts` /
`protect_axes` (axes taken from context concepts).

Kept upstream quirk: references of skipped value concepts (no reference) are dropped, but the
labels of `in` still come from *all* value concepts, so labels shift after a skipped source.
"""

from __future__ import annotations

from typing import Any

from normcode_core.engine.reference import (
    NONE_AXIS,
    SKIP,
    Reference,
    cross_product,
    element_action,
)
from normcode_core.engine.step import StepContext, StepResult


async def run(ctx: StepContext) -> StepResult:
    syntax = ctx.working_interpretation.get("syntax") or {}
    by_axis_concepts = syntax.get("by_axis_concepts") or []
    per_ref_by_axes = syntax.get("by_axes")
    create_axis = syntax.get("create_axis")
    protect_axes = syntax.get("protect_axes") or []

    if by_axis_concepts:
        context_refs = [c.reference for c in ctx.context if c.reference is not None and c.name in by_axis_concepts]
    else:
        context_refs = [c.reference for c in ctx.context if c.reference is not None]
    value_refs = [v.reference for v in ctx.values if v.reference is not None]
    labels = [v.name for v in ctx.values]

    legacy_by_axes = list(dict.fromkeys(axis for ref in context_refs for axis in ref.axes))
    if protect_axes:
        legacy_by_axes = [a for a in legacy_by_axes if a not in protect_axes]
    by_axes = per_ref_by_axes if per_ref_by_axes is not None else legacy_by_axes

    marker = syntax.get("marker")
    if marker == "in":
        result = group_in(value_refs, labels, by_axes, create_axis if per_ref_by_axes is not None else None)
    elif marker == "across":
        result = group_across(value_refs, by_axes, create_axis)
    else:
        result = Reference(["result"], (0,))
    return StepResult(reference=result)


def _per_reference(by_axes: list | None, refs: list[Reference]) -> list[list[str]] | None:
    if not by_axes:
        return None
    if isinstance(by_axes[0], list):
        return by_axes
    return [by_axes for _ in refs]


def _shared_axes(refs: list[Reference]) -> list[str]:
    # Upstream uses a set intersection (order undefined); the first reference's order is used here.
    common = set(refs[0].axes)
    for ref in refs[1:]:
        common &= set(ref.axes)
    return [a for a in refs[0].axes if a in common]


def _collapse(ref: Reference, axes: list[str], label: str | None) -> tuple[list[Any], list[str] | None]:
    """Elements of `ref` with `axes` collapsed; (elements, preserved axes) in stack mode."""
    collapse = [a for a in axes if a in ref.axes]
    keep = [a for a in ref.axes if a not in collapse]
    if not collapse and keep:
        # Nothing to collapse: keep the whole tensor as one element (SKIPs kept for alignment).
        return [{label: ref.tensor} if label else ref.tensor], keep
    leaves = list(ref.slice(*keep).leaves()) if keep else list(ref.leaves())
    return [{label: leaf} if label else leaf for leaf in leaves if leaf != SKIP], None


def _result(elements: list[Any], create_axis: str | None, preserved: list[str] | None) -> Reference:
    if create_axis is None:
        return Reference([NONE_AXIS], (1,)).with_data([elements])
    if preserved:
        first = elements[0] if elements else None
        first_value = next(iter(first.values())) if isinstance(first, dict) else first
        if elements and isinstance(first_value, list):
            shape = (len(elements), *(len(first_value) for _ in preserved))
        else:
            shape = (len(elements), *(1 for _ in preserved))
        return Reference([create_axis, *preserved], shape).with_data(elements)
    return Reference([create_axis], (len(elements),)).with_data(elements)


def _per_reference_group(
    refs: list[Reference], by_axes: list[list[str]], labels: list[str] | None, create_axis: str | None
) -> Reference:
    elements: list[Any] = []
    preserved_for_result = None
    pairs = zip(refs, labels) if labels is not None else ((ref, None) for ref in refs)
    for position, (ref, label) in enumerate(pairs):
        axes = by_axes[position] if position < len(by_axes) else list(ref.axes)
        found, preserved = _collapse(ref, axes, label)
        elements.extend(found)
        if preserved is not None and preserved_for_result is None:
            preserved_for_result = preserved
    return _result(elements, create_axis, preserved_for_result)


def group_in(refs: list[Reference], labels: list[str], by_axes: list | None, create_axis: str | None) -> Reference:
    if not refs:
        return Reference([create_axis or NONE_AXIS], (0,))
    per_ref = _per_reference(by_axes, refs)
    if per_ref is not None:
        return _per_reference_group(refs, per_ref, labels, create_axis)
    shared = _shared_axes(refs)
    combined = cross_product([ref.slice(*shared) for ref in refs])

    def annotate(items: list[Any]) -> Any:
        if len(items) != len(labels):
            return SKIP
        out = {}
        for label, value in zip(labels, items):
            if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
                value = value[0]
            out[label] = value
        return out

    result = element_action(annotate, [combined])
    if by_axes is not None:
        result = result.slice(*[a for a in result.axes if a not in by_axes])
    return result


def group_across(refs: list[Reference], by_axes: list | None, create_axis: str | None) -> Reference:
    if not refs:
        return Reference([create_axis or NONE_AXIS], (0,))
    per_ref = _per_reference(by_axes, refs)
    if per_ref is not None:
        return _per_reference_group(refs, per_ref, None, create_axis)
    shared = _shared_axes(refs)
    result = cross_product([ref.slice(*shared) for ref in refs])
    if by_axes is not None:
        result = result.slice(*[a for a in result.axes if a not in by_axes])
    return element_action(_flatten, [result])


def _flatten(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    out: list[Any] = []
    for item in value:
        out.extend(_flatten(item))
    return out
