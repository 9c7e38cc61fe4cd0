"""Judgement assertions (upstream's TIA step): the truth mask of a judgement's results.

`assertion_condition = {"quantifiers": {axis: q}, "condition": c}`. Quantifiers are `for-each`
(keep that axis: one truth value per element) or collapsing ones, `all` / `some` / `none` /
`exists`, applied to the slices under each for-each element (or to the whole tensor when
there is no for-each axis). A value matches the condition when it equals it or, for the truth
markers, when its text contains a true/false form (`%xyz(True)` matches true). Skip values
count as vacuous: `all` and `none` of nothing hold. The judgement's condition is met when any
element is true; that is what `@:'`/`@:!` timings read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from normcode_core.engine.reference import SKIP, Reference
from normcode_core.engine.signs import FALSE_SIGN, TRUE_SIGN

COLLAPSING = ("all", "some", "none", "exists")
VACUOUS = {"all": True, "some": False, "none": True, "exists": False}


@dataclass
class Assertion:
    reference: Reference
    condition_met: bool
    filter_axis: str | None = None


def normalize_condition(condition: Any) -> Any:
    if condition is True or condition == "true":
        return TRUE_SIGN
    if condition is False or condition == "false":
        return FALSE_SIGN
    return condition


def matches(value: Any, condition: Any) -> bool:
    if value == condition:
        return True
    if isinstance(value, str) and isinstance(condition, str):
        if condition in value:
            return True
        if condition == TRUE_SIGN:
            return "(True)" in value or "(true)" in value or "true)" in value
        if condition == FALSE_SIGN:
            return "(False)" in value or "(false)" in value or "false)" in value
    return False


def _is_skip(value: Any) -> bool:
    return isinstance(value, str) and value == SKIP


def quantify(data: Any, quantifier: str, condition: Any) -> bool:
    if _is_skip(data):
        return VACUOUS.get(quantifier, False)
    if not isinstance(data, list):
        if quantifier in ("all", "some"):
            return matches(data, condition)
        if quantifier == "none":
            return not matches(data, condition)
        return quantifier == "exists"
    if not data:
        return VACUOUS.get(quantifier, False)
    if quantifier in ("all", "none"):
        return all(quantify(item, quantifier, condition) for item in data)
    if quantifier in ("some", "exists"):
        return any(quantify(item, quantifier, condition) for item in data)
    return False


def _truth(value: Any, condition: Any) -> str:
    if _is_skip(value):
        return SKIP
    return TRUE_SIGN if matches(value, condition) else FALSE_SIGN


def _mask_below(data: Any, condition: Any) -> Any:
    if _is_skip(data):
        return SKIP
    if isinstance(data, list):
        return [_mask_below(item, condition) for item in data]
    return _truth(data, condition)


def _collapse(data: Any, filter_depth: int, criterion: str | None, condition: Any, depth: int = 0) -> Any:
    if _is_skip(data):
        return SKIP
    if not isinstance(data, list):
        return _truth(data, condition)
    if depth == filter_depth:
        if criterion is None:
            return [_collapse(item, filter_depth, criterion, condition, depth + 1) for item in data]
        return [TRUE_SIGN if quantify(item, criterion, condition) else FALSE_SIGN for item in data]
    return [_collapse(item, filter_depth, criterion, condition, depth + 1) for item in data]


def _contains_true(data: Any) -> bool:
    if data == TRUE_SIGN:
        return True
    return isinstance(data, list) and any(_contains_true(item) for item in data)


def _exact_mask(data: Any, condition: Any) -> Any:
    if _is_skip(data):
        return SKIP
    if isinstance(data, list):
        return [_exact_mask(item, condition) for item in data]
    return TRUE_SIGN if data == condition else FALSE_SIGN


def assert_condition(results: Reference, assertion: dict[str, Any] | None) -> Assertion:
    if not assertion:
        return Assertion(results, True)
    quantifiers = assertion.get("quantifiers") or {}
    condition = normalize_condition(assertion.get("condition", True))
    for_each = {axis: results.axes.index(axis) for axis, q in quantifiers.items() if q == "for-each" and axis in results.axes}
    criteria = {axis: q for axis, q in quantifiers.items() if q in COLLAPSING}

    if not for_each:
        if criteria:
            met = all(quantify(results.tensor, q, condition) for q in criteria.values())
            return Assertion(Reference.from_data([TRUE_SIGN if met else FALSE_SIGN], ["assertion_result"]), met)
        mask = _exact_mask(results.tensor, condition)
        return Assertion(Reference(list(results.axes), results.shape).with_data(mask), _contains_true(mask))

    filter_axis, filter_index = min(for_each.items(), key=lambda item: item[1])
    working = results
    if any(axis in results.axes and results.axes.index(axis) < filter_index for axis in criteria):
        working = results.transpose([filter_axis] + [a for a in results.axes if a != filter_axis])
        filter_index = 0
    inner = sorted(
        (working.axes.index(axis), q) for axis, q in criteria.items() if axis in working.axes and working.axes.index(axis) > filter_index
    )
    criterion = inner[0][1] if inner else None
    mask = _collapse(working.tensor, filter_index, criterion, condition)
    if criterion is not None:
        reference = Reference([filter_axis], (working.shape[filter_index],)).with_data(mask)
    else:
        reference = Reference(list(working.axes), working.shape).with_data(mask)
    return Assertion(reference, _contains_true(mask), filter_axis)
