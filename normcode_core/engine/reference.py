"""References: the values of concepts, as nested-list tensors with named axes.

A `Reference` holds `data` (nested Python lists, one level per axis), `axes` (unique names)
and `shape`. Missing elements are the skip marker `SKIP` ("@#SKIP#@"). The semantics follow
upstream NormCode's reference system closely (padding of ragged data, `_none_axis` as a
temporary one-element container that disappears when combined with real axes, skip
propagation through cross products), because plan results depend on those details.

Deliberate difference: a function applied element-wise that raises propagates the error
(upstream's production mode silently turned the element into SKIP).
"""

from __future__ import annotations

import asyncio
import copy as _copy
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

SKIP = "@#SKIP#@"
NONE_AXIS = "_none_axis"


def _is_skip(value: Any) -> bool:
    # Compare only strings: comparing arbitrary objects (numpy-like, dicts) with == is avoided.
    return isinstance(value, str) and value == SKIP


def _nested(shape: Sequence[int], fill: Any) -> Any:
    if not shape:
        return fill
    return [_nested(shape[1:], fill) for _ in range(shape[0])]


def ragged_shape(data: Any) -> tuple[int, ...]:
    """Shape of possibly ragged nested lists: the maximum length seen at each depth."""
    if not isinstance(data, list):
        return ()
    dims = [len(data)]
    sub_shapes = [ragged_shape(item) for item in data if isinstance(item, list)]
    if sub_shapes:
        depth = max(len(s) for s in sub_shapes)
        for level in range(depth):
            dims.append(max((s[level] for s in sub_shapes if level < len(s)), default=0))
    return tuple(dims)


def _pad(data: Any, shape: Sequence[int]) -> Any:
    """Pad ragged data to `shape` with SKIP (a non-list where a level is expected becomes all SKIP)."""
    if not shape:
        return data
    size = shape[0]
    if not isinstance(data, list):
        return [SKIP] * size
    rest = shape[1:]
    return [_pad(data[i], rest) if i < len(data) else _pad(SKIP, rest) for i in range(size)]


def _rank(data: Any) -> int:
    rank = 0
    while isinstance(data, list):
        rank += 1
        if not data:
            break
        data = data[0]
    return rank


class Reference:
    """A tensor with named axes. Operations return new References unless named `set`."""

    __slots__ = ("axes", "data", "shape", "skip_value")

    def __init__(
        self,
        axes: Sequence[str],
        shape: Sequence[int],
        initial_value: Any = None,
        skip_value: str = SKIP,
    ) -> None:
        axes = list(axes)
        if len(axes) != len(set(axes)):
            raise ValueError("Axes must be unique")
        if len(axes) != len(shape):
            raise ValueError("Axes and shape must have the same length")
        self.axes: list[str] = axes
        self.shape: tuple[int, ...] = tuple(shape)
        self.skip_value = skip_value
        self.data: Any = _nested(self.shape, initial_value)

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_data(cls, data: Any, axis_names: Sequence[str] | None = None) -> Reference:
        """Discover the shape of nested lists; `axis_names` may name fewer axes than the data has."""
        if not isinstance(data, list):
            raise TypeError("Data must be a nested list structure")
        shape = ragged_shape(data)
        if axis_names is None:
            axis_names = [f"axis_{i}" for i in range(len(shape))]
        else:
            axis_names = list(axis_names)
            if len(axis_names) > len(shape):
                raise ValueError(
                    f"Number of axis names ({len(axis_names)}) cannot be greater than data rank ({len(shape)})"
                )
            shape = shape[: len(axis_names)]
        return cls(axis_names, shape).with_data(data)

    @classmethod
    def single(cls, value: Any, axis: str = NONE_AXIS) -> Reference:
        """A one-element reference on one axis (upstream's default singleton shape)."""
        return cls([axis], (1,)).with_data([value])

    def with_data(self, data: Any) -> Reference:
        """Replace the data in place (padded to this shape) and return self."""
        self.data = _pad(data, self.shape)
        return self

    def copy(self) -> Reference:
        new = Reference.__new__(Reference)
        new.axes = list(self.axes)
        new.shape = self.shape
        new.skip_value = self.skip_value
        new.data = copy_data(self.data)
        return new

    # ---------------------------------------------------------------- tensor access

    @property
    def tensor(self) -> Any:
        return self.data

    @tensor.setter
    def tensor(self, value: Any) -> None:
        if not isinstance(value, list):
            raise TypeError("Tensor must be a nested list structure")
        rank = _rank(value)
        if rank != len(self.axes):
            raise ValueError(f"Tensor rank mismatch. Got {rank}, expected {len(self.axes)} (number of axes)")
        self.shape = ragged_shape(value)
        self.data = _pad(value, self.shape)

    def get_tensor(self, ignore_skip: bool = False) -> Any:
        return _without_skips(self.data) if ignore_skip else self.data

    def leaves(self, data: Any = None) -> Iterator[Any]:
        """Every non-list, non-SKIP element, depth first."""
        yield from _leaves(self.data if data is None else data)

    def get(self, **indices: int) -> Any:
        """Element or sub-tensor at the given axis indices (missing axes are taken whole)."""
        for name in indices:
            if name not in self.axes:
                raise KeyError(f"Axis '{name}' not found in {self.axes}")
        path = [indices.get(axis, slice(None)) for axis in self.axes]
        return _get(self.data, path)

    def set(self, value: Any, **indices: int) -> None:
        for name in indices:
            if name not in self.axes:
                raise KeyError(f"Axis '{name}' not found in {self.axes}")
        path = [indices.get(axis, slice(None)) for axis in self.axes]
        _set(self.data, path, value)

    # ---------------------------------------------------------------- axis operations

    def slice(self, *selected_axes: str) -> Reference:
        """Keep only `selected_axes` (in that order); elements become sub-tensors of the rest.

        With no axes, the whole tensor becomes the single element of a `_none_axis` reference.
        A sub-tensor holding any SKIP becomes SKIP.
        """
        if not selected_axes:
            return Reference([NONE_AXIS], (1,)).with_data([self.data])
        for axis in selected_axes:
            if axis not in self.axes:
                raise KeyError(f"Axis '{axis}' not found in {self.axes}")
        if len(selected_axes) != len(set(selected_axes)):
            raise ValueError("Duplicate axes in selection")
        new_shape = tuple(self.shape[self.axes.index(a)] for a in selected_axes)

        def build(level: int, picked: dict[str, int]) -> Any:
            if level == len(selected_axes):
                sub = self.get(**picked)
                if _is_skip(sub):
                    return SKIP
                if isinstance(sub, list) and any(_is_skip(e) for e in sub):
                    return SKIP
                return sub
            axis = selected_axes[level]
            return [build(level + 1, {**picked, axis: i}) for i in range(new_shape[level])]

        return Reference(list(selected_axes), new_shape).with_data(build(0, {}))

    def shape_view(self, view: Sequence[str] | None = None) -> Reference:
        selected = list(view) if view else list(self.axes)
        for axis in selected:
            if axis not in self.axes:
                raise ValueError(f"Axis '{axis}' not found in reference axes")
        return self.slice(*selected)

    def transpose(self, new_axis_order: Sequence[str]) -> Reference:
        order = list(new_axis_order)
        if set(order) != set(self.axes) or len(order) != len(self.axes):
            raise ValueError(f"new_axis_order {order} must contain exactly the same axes as {self.axes}")
        if order == self.axes:
            return self.copy()
        perm = [self.axes.index(a) for a in order]
        new_shape = tuple(self.shape[p] for p in perm)
        new_data = _nested(new_shape, None)
        for old_index, value in _indexed_leaves(self.data, len(self.shape)):
            new_index = tuple(old_index[p] for p in perm)
            if not new_index:
                new_data = value
                continue
            target = new_data
            for i in new_index[:-1]:
                target = target[i]
            target[new_index[-1]] = value
        new = Reference(order, new_shape, skip_value=self.skip_value)
        new.data = new_data
        return new

    def without_none_axis(self) -> Reference:
        """Drop `_none_axis` when other axes exist (it is only a temporary container)."""
        if NONE_AXIS not in self.axes or len(self.axes) <= 1:
            return self
        position = self.axes.index(NONE_AXIS)
        axes = [a for a in self.axes if a != NONE_AXIS]
        shape = tuple(d for i, d in enumerate(self.shape) if i != position)
        return Reference(axes, shape, skip_value=self.skip_value).with_data(_take_first_at(self.data, position))

    def append(self, other: Reference, by_axis: str | None = None) -> Reference:
        """Append `other`'s elements along `by_axis` (inferred from unmatched axes when omitted).

        Appending along an outer axis adds new slices built from `other`'s leaves. Upstream
        raises `Shape mismatch` when the non-SKIP leaves do not fill whole slices (e.g. a
        number pair with one number missing); here the leaves are then taken with their SKIP
        placeholders when that fills whole slices (positions kept), else padded with SKIP:
        "add this item to the collection", which is what such plans mean.
        """
        if by_axis is None:
            by_axis = self._infer_append_axis(other)
        if by_axis not in self.axes:
            raise ValueError(f"Axis '{by_axis}' not found in {self.axes}")
        new = self.copy()
        position = new.axes.index(by_axis)

        if position < len(new.axes) - 1:
            slice_shape = new.shape[position + 1 :]
            slice_size = math.prod(slice_shape)
            other_leaves = list(other.leaves())
            if slice_size == 0:
                if other_leaves:
                    raise ValueError(f"Shape mismatch: cannot append data to zero-sized slice shape {slice_shape}")
                new_slices: list[Any] = []
            else:
                if len(other_leaves) % slice_size:
                    with_skips = list(_all_leaves(other.data))
                    if len(with_skips) % slice_size == 0:
                        other_leaves = with_skips
                count = -(-len(other_leaves) // slice_size)
                it = iter(other_leaves)
                new_slices = [_fill_from(it, slice_shape) for _ in range(count)]
            _extend_at_depth(new.data, position, new_slices)
            shape = list(new.shape)
            shape[position] += len(new_slices)
            new.shape = tuple(shape)
            return new

        elementwise = False
        if len(self.axes) > 1:
            prefix = self.axes[:-1]
            if set(prefix) <= set(other.axes) and all(
                self.shape[self.axes.index(a)] == other.shape[other.axes.index(a)] for a in prefix
            ):
                elementwise = True

        def extend(mine: Any, theirs: Any, depth: int) -> Any:
            if depth == position:
                return mine + (list(_leaves(theirs)) if elementwise else theirs)
            if elementwise:
                if len(mine) != len(theirs):
                    raise ValueError(
                        f"Shape mismatch at axis '{new.axes[depth]}': {len(mine)} vs {len(theirs)}"
                    )
                return [extend(m, t, depth + 1) for m, t in zip(mine, theirs)]
            return [extend(m, theirs, depth + 1) for m in mine]

        new.data = extend(new.data, other.data if elementwise else list(other.leaves()), 0)
        if new.data:
            new.shape = ragged_shape(new.data)
        return new

    def _infer_append_axis(self, other: Reference) -> str:
        if not self.axes:
            raise ValueError("Cannot infer axis for append when reference has no axes.")
        remaining = list(other.axes)
        unmatched: list[str] = []
        for axis in self.axes:
            if axis in remaining:
                remaining.remove(axis)
            else:
                unmatched.append(axis)
        if len(unmatched) == 1:
            return unmatched[0]
        if 0 < len(remaining) < len(unmatched):
            return unmatched[len(unmatched) - len(remaining)]
        return self.axes[-1]

    # ---------------------------------------------------------------- serialization

    def to_json(self) -> dict[str, Any]:
        return {"axes": list(self.axes), "shape": list(self.shape), "data": self.data}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Reference:
        ref = cls(payload["axes"], payload["shape"])
        ref.data = payload["data"]
        return ref

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reference):
            return NotImplemented
        return self.axes == other.axes and self.shape == other.shape and self.data == other.data

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Reference(axes={self.axes}, shape={self.shape}, data={self.data!r})"


# -------------------------------------------------------------------- helpers


def copy_data(data: Any) -> Any:
    """Deep copy of nested lists/dicts (much faster than copy.deepcopy for tensor data)."""
    if isinstance(data, list):
        return [copy_data(item) for item in data]
    if isinstance(data, dict):
        return {key: copy_data(value) for key, value in data.items()}
    if isinstance(data, (str, int, float, bool, type(None), tuple)):
        return data
    return _copy.deepcopy(data)


def _without_skips(data: Any) -> Any:
    if not isinstance(data, list):
        return data
    out = []
    for item in data:
        if _is_skip(item):
            continue
        if isinstance(item, list):
            cleaned = _without_skips(item)
            if cleaned:
                out.append(cleaned)
        else:
            out.append(item)
    return out


def _leaves(data: Any) -> Iterator[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _leaves(item)
    elif not _is_skip(data):
        yield data


def _all_leaves(data: Any) -> Iterator[Any]:
    """Every non-list element including SKIP placeholders."""
    if isinstance(data, list):
        for item in data:
            yield from _all_leaves(item)
    else:
        yield data


def _indexed_leaves(data: Any, depth: int, prefix: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], Any]]:
    if len(prefix) == depth or not isinstance(data, list):
        yield prefix, data
        return
    for i, item in enumerate(data):
        yield from _indexed_leaves(item, depth, prefix + (i,))


def _get(data: Any, path: list[Any]) -> Any:
    if not path:
        return data
    head, rest = path[0], path[1:]
    if isinstance(head, slice):
        return [SKIP if _is_skip(item) else _get(item, rest) for item in data]
    if head < len(data) and not _is_skip(data[head]):
        return _get(data[head], rest)
    return SKIP


def _set(data: list[Any], path: list[Any], value: Any) -> None:
    if not path:
        if isinstance(value, list):
            raise ValueError("Cannot set a list as a leaf value")
        data[:] = value
        return
    head, rest = path[0], path[1:]
    positions = range(*head.indices(len(data))) if isinstance(head, slice) else [head]
    for i in positions:
        if i >= len(data):
            data.extend([SKIP] * (i - len(data) + 1))
        if rest:
            if _is_skip(data[i]):
                data[i] = []
            _set(data[i], rest, value)
        else:
            data[i] = value


def _take_first_at(data: Any, position: int) -> Any:
    """Remove one level at `position` by keeping its first element."""
    if position == 0:
        return data[0] if isinstance(data, list) and data else data
    if not isinstance(data, list):
        return data
    return [_take_first_at(item, position - 1) if isinstance(item, list) else item for item in data]


def _fill_from(it: Iterator[Any], shape: Sequence[int]) -> Any:
    if not shape:
        return next(it, SKIP)
    return [_fill_from(it, shape[1:]) for _ in range(shape[0])]


def _extend_at_depth(data: list[Any], depth: int, new_items: list[Any]) -> None:
    if depth == 0:
        data.extend(_copy.deepcopy(new_items))
        return
    for item in data:
        if isinstance(item, list):
            _extend_at_depth(item, depth - 1, new_items)


def _combined_axes(references: Sequence[Reference]) -> tuple[list[str], dict[str, int]]:
    order: list[str] = []
    sizes: dict[str, int] = {}
    for ref in references:
        for axis, size in zip(ref.axes, ref.shape):
            if axis not in sizes:
                order.append(axis)
                sizes[axis] = size
            elif sizes[axis] != size:
                raise ValueError(f"Shape mismatch for axis '{axis}': {size} vs {sizes[axis]}")
    return order, sizes


def _positions(axes: list[str], sizes: dict[str, int]) -> Any:
    """Nested lists of {axis: index} dicts with the given axes (a single {} for no axes)."""

    def build(level: int, picked: dict[str, int]) -> Any:
        if level == len(axes):
            return picked
        axis = axes[level]
        return [build(level + 1, {**picked, axis: i}) for i in range(sizes[axis])]

    return build(0, {})


def _map_positions(tree: Any, depth: int, fn: Callable[[dict[str, int]], Any]) -> Any:
    if depth == 0:
        return fn(tree)
    return [_map_positions(sub, depth - 1, fn) for sub in tree]


def _map_grid(axes: list[str], sizes: dict[str, int], fn: Callable[[dict[str, int]], Any]) -> Any:
    """`fn` of every position of the grid, as nested lists (one level per axis)."""
    if all(sizes[a] == 1 for a in axes):  # the common one-element case: no position tree
        value = fn({a: 0 for a in axes})
        for _ in axes:
            value = [value]
        return value
    return _map_positions(_positions(axes, sizes), len(axes), fn)


def _elements_at(references: Sequence[Reference], position: dict[str, int]) -> list[Any]:
    out = []
    for ref in references:
        element = ref.get(**{a: position[a] for a in ref.axes if a in position})
        out.append(SKIP if element is None else element)
    return out


# -------------------------------------------------------------------- combinators


def cross_product(references: Sequence[Reference]) -> Reference:
    """Every combination of elements: each element is the list of the references' elements."""
    if not references:
        raise ValueError("At least one reference must be provided")
    axes, sizes = _combined_axes(references)

    def combine(position: dict[str, int]) -> Any:
        elements = [ref.get(**{a: position[a] for a in ref.axes}) for ref in references]
        return SKIP if any(_is_skip(e) for e in elements) else elements

    data = _map_grid(axes, sizes, combine)
    return Reference(axes, [sizes[a] for a in axes]).with_data(data).without_none_axis()


def join(references: Sequence[Reference], new_axis_name: str) -> Reference:
    """Stack same-shaped references along a new leading axis."""
    if not references:
        raise ValueError("At least one reference must be provided for join operation")
    first = references[0]
    aligned = [first]
    for i, ref in enumerate(references[1:], 1):
        if ref.axes != first.axes:
            if set(ref.axes) != set(first.axes):
                raise ValueError(f"Axis mismatch at index {i}. Expected {first.axes}, got {ref.axes}")
            ref = ref.slice(*first.axes)
        if ref.shape != first.shape:
            raise ValueError(f"Shape mismatch at index {i}. Expected {first.shape}, got {ref.shape}")
        aligned.append(ref)
    return Reference([new_axis_name, *first.axes], (len(aligned), *first.shape)).with_data(
        [ref.data for ref in aligned]
    )


def element_action(
    fn: Callable[..., Any], references: Sequence[Reference], index_awareness: bool = False
) -> Reference:
    """Apply `fn` to aligned elements (axes are unioned); SKIP in any input gives SKIP."""
    if not references:
        raise ValueError("At least one reference must be provided")
    axes, sizes = _combined_axes(references)

    def apply(position: dict[str, int]) -> Any:
        elements = _elements_at(references, position)
        if any(_is_skip(e) for e in elements):
            return SKIP
        return fn(*elements, position) if index_awareness else fn(*elements)

    data = _map_grid(axes, sizes, apply)
    return Reference(axes, [sizes[a] for a in axes]).with_data(data).without_none_axis()


async def element_action_async(
    fn: Callable[..., Awaitable[Any]], references: Sequence[Reference], index_awareness: bool = False
) -> Reference:
    """`element_action` for coroutine functions: all elements are evaluated concurrently."""
    if not references:
        raise ValueError("At least one reference must be provided")
    axes, sizes = _combined_axes(references)
    positions = _positions(axes, sizes)
    flat: list[dict[str, int]] = []
    _map_positions(positions, len(axes), flat.append)

    async def apply(position: dict[str, int]) -> Any:
        elements = _elements_at(references, position)
        if any(_is_skip(e) for e in elements):
            return SKIP
        return await (fn(*elements, position) if index_awareness else fn(*elements))

    results = iter(await asyncio.gather(*(apply(p) for p in flat)))
    data = _map_positions(positions, len(axes), lambda _p: next(results))
    return Reference(axes, [sizes[a] for a in axes]).with_data(data).without_none_axis()


def _cross_action_result(
    a: Reference, b: Reference, new_axis_name: str, axes: list[str], sizes: dict[str, int], data: Any
) -> Reference:
    first = data
    for _ in axes:
        if not first:
            break
        first = first[0]
    if _is_skip(first):
        last = 1
    else:
        last = len(first) if first else 0
    shape = [sizes[x] for x in axes] + [last]
    return Reference([*axes, new_axis_name], shape).with_data(data).without_none_axis()


def cross_action(a: Reference, b: Reference, new_axis_name: str) -> Reference:
    """Apply the functions in `a` to the values in `b`; each call returns a list (a new axis)."""
    axes, sizes = _combined_axes([a, b])

    def apply(position: dict[str, int]) -> Any:
        func = a.get(**{x: position[x] for x in a.axes})
        value = b.get(**{x: position[x] for x in b.axes})
        if _is_skip(func) or _is_skip(value):
            return SKIP
        if not callable(func):
            raise TypeError(f"Element at {position} in A is not a callable function")
        result = func(value)
        return _check_action_result(result, position)

    data = _map_positions(_positions(axes, sizes), len(axes), apply)
    return _cross_action_result(a, b, new_axis_name, axes, sizes, data)


async def cross_action_async(a: Reference, b: Reference, new_axis_name: str) -> Reference:
    """`cross_action` where `a` holds coroutine functions; all calls run concurrently."""
    axes, sizes = _combined_axes([a, b])
    positions = _positions(axes, sizes)
    flat: list[dict[str, int]] = []
    _map_positions(positions, len(axes), flat.append)

    async def apply(position: dict[str, int]) -> Any:
        func = a.get(**{x: position[x] for x in a.axes})
        value = b.get(**{x: position[x] for x in b.axes})
        if _is_skip(func) or _is_skip(value):
            return SKIP
        if not callable(func):
            raise TypeError(f"Element at {position} in A is not a callable function")
        return _check_action_result(await func(value), position)

    results = iter(await asyncio.gather(*(apply(p) for p in flat)))
    data = _map_positions(positions, len(axes), lambda _p: next(results))
    return _cross_action_result(a, b, new_axis_name, axes, sizes, data)


def _check_action_result(result: Any, position: dict[str, int]) -> Any:
    if not isinstance(result, list):
        raise TypeError(f"Function at {position} must return a list")
    if any(_is_skip(r) for r in result):
        return SKIP
    return result
