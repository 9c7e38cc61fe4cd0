"""Applying a step's function to its input combinations (upstream's TVA step).

The function is called once per input combination (concurrently: element order never
matters for the result, and sign ids depend only on the element's position). Each call's
result becomes a list along a new axis (`output_axis`, default "result"); a new axis of
length one is then collapsed away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from normcode_core.engine.reference import (
    NONE_AXIS,
    SKIP,
    Reference,
    element_action_async,
)
from normcode_core.engine.signs import SignIds
from normcode_core.engine.tools.perception import sign_ids


class StepError(Exception):
    """A step that cannot produce a value (fails the step with this message)."""


def element_ids(ids: SignIds, *position: Any) -> SignIds:
    """The id source for one element of one step."""
    return SignIds(f"{ids.seed}/{position!r}")


def first_function(functions: Reference) -> Callable[..., Any]:
    function = functions.get(**{functions.axes[0]: 0})
    if not callable(function):
        raise StepError("the step's function could not be built from its function concept")
    return function


async def call_without_inputs(function: Callable[..., Any], ids: SignIds) -> Reference:
    with sign_ids(element_ids(ids, "no-inputs")):
        result = await function({})
    return Reference([NONE_AXIS], (1,)).with_data([result])


async def apply_across(
    functions: Reference,
    inputs: Reference,
    *,
    new_axis: str,
    as_list: Callable[[Any], list[Any]],
    ids: SignIds,
) -> Reference:
    """Call the first function on every input; results form the new axis `new_axis`."""
    function = first_function(functions)

    async def call(candidate: Any, value: Any, position: dict[str, int]) -> Any:
        if not callable(candidate):
            raise StepError(f"element {position} of the function reference is not a function")
        actual = function if candidate is function else candidate
        with sign_ids(element_ids(ids, *sorted(position.items()))):
            result = await actual(value)
        listed = as_list(result) if actual is function else result
        if not isinstance(listed, list):
            raise StepError(f"the function at {position} must return a list")
        return SKIP if any(isinstance(r, str) and r == SKIP for r in listed) else listed

    applied = await element_action_async(call, [functions, inputs], index_awareness=True)
    return _with_new_axis(applied, new_axis)


def _with_new_axis(applied: Reference, new_axis: str) -> Reference:
    first: Any = applied.tensor
    for _ in applied.axes:
        if not first:
            break
        first = first[0]
    if isinstance(first, str) and first == SKIP:
        size = 1
    else:
        size = len(first) if first else 0
    return Reference([*applied.axes, new_axis], [*applied.shape, size]).with_data(applied.tensor).without_none_axis()


def collapse_new_axis(applied: Reference, new_axis: str) -> Reference:
    """Remove a new axis of length one, unwrapping its single element (composition steps)."""
    if new_axis not in applied.axes or applied.shape[applied.axes.index(new_axis)] != 1:
        return applied
    keep = [axis for axis in applied.axes if axis != new_axis]
    if not keep:
        scalar = applied.tensor
        while isinstance(scalar, list) and len(scalar) == 1:
            scalar = scalar[0]
        return Reference([NONE_AXIS], (1,)).with_data([scalar])
    sliced = applied.slice(*keep)

    def unwrap(data: Any, depth: int) -> Any:
        if depth >= len(keep):
            return data[0] if isinstance(data, list) and len(data) == 1 else data
        if isinstance(data, list):
            return [unwrap(item, depth + 1) for item in data]
        return data

    return Reference(list(sliced.axes), sliced.shape).with_data(unwrap(sliced.tensor, 0))


def slice_new_axis(applied: Reference, new_axis: str) -> Reference:
    """Remove a new axis of length one by slicing (legacy steps: elements stay one-item lists)."""
    if new_axis not in applied.axes or applied.shape[applied.axes.index(new_axis)] != 1:
        return applied
    return applied.slice(*[axis for axis in applied.axes if axis != new_axis])
