"""References: named-axis tensors with upstream's padding, skip and `_none_axis` rules."""

from __future__ import annotations

import pytest

from normcode_core.engine.reference import (
    NONE_AXIS,
    SKIP,
    Reference,
    cross_action,
    cross_action_async,
    cross_product,
    element_action,
    element_action_async,
    join,
)


def test_from_data_discovers_ragged_shape_and_pads_with_skip() -> None:
    ref = Reference.from_data([[1, 2, 3], [4]], ["row", "col"])
    assert ref.shape == (2, 3)
    assert ref.tensor == [[1, 2, 3], [4, SKIP, SKIP]]
    assert Reference.from_data([1, 2]).axes == ["axis_0"]


def test_from_data_with_fewer_axis_names_keeps_inner_lists_as_elements() -> None:
    ref = Reference.from_data([[["a", "b"]], [["c"]]], ["outer"])
    assert ref.axes == ["outer"] and ref.shape == (2,)
    assert ref.get(outer=1) == [["c"]]


def test_too_many_axis_names_and_duplicate_axes_are_rejected() -> None:
    with pytest.raises(ValueError, match="cannot be greater"):
        Reference.from_data([1], ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        Reference(["a", "a"], (1, 1))


def test_get_set_and_skip_propagation() -> None:
    ref = Reference(["x", "y"], (2, 2))
    ref.set("v", x=0, y=1)
    ref.set(SKIP, x=1)
    assert ref.get(x=0, y=1) == "v"
    assert ref.get(x=1, y=0) == SKIP
    with pytest.raises(KeyError):
        ref.get(z=0)


def test_slice_reorders_and_collapses_with_none_axis_for_no_axes() -> None:
    ref = Reference.from_data([[1, 2], [3, 4]], ["a", "b"])
    assert ref.slice("b").tensor == [[1, 3], [2, 4]]
    whole = ref.slice()
    assert whole.axes == [NONE_AXIS] and whole.tensor == [[[1, 2], [3, 4]]]
    with_skip = Reference.from_data([[1, SKIP]], ["a", "b"])
    assert with_skip.slice("a").tensor == [SKIP]


def test_transpose_moves_elements() -> None:
    ref = Reference.from_data([[1, 2, 3], [4, 5, 6]], ["r", "c"])
    t = ref.transpose(["c", "r"])
    assert t.shape == (3, 2) and t.tensor == [[1, 4], [2, 5], [3, 6]]


def test_cross_product_unions_axes_and_drops_none_axis_when_others_exist() -> None:
    a = Reference.single("x")
    b = Reference.from_data([1, 2], ["n"])
    result = cross_product([a, b])
    assert result.axes == ["n"]
    assert result.tensor == [["x", 1], ["x", 2]]
    with pytest.raises(ValueError, match="Shape mismatch"):
        cross_product([b, Reference.from_data([1, 2, 3], ["n"])])


def test_element_action_aligns_shared_axes_and_skips() -> None:
    a = Reference.from_data([1, 2], ["n"])
    b = Reference.from_data([[10, 20], [30, SKIP]], ["n", "m"])
    result = element_action(lambda x, y: x + y, [a, b])
    assert result.axes == ["n", "m"]
    assert result.tensor == [[11, 21], [32, SKIP]]


def test_element_action_errors_propagate_instead_of_becoming_skip() -> None:
    with pytest.raises(ZeroDivisionError):
        element_action(lambda x: 1 / x, [Reference.from_data([0], ["n"])])


async def test_async_actions_match_sync_ones() -> None:
    a = Reference.from_data([1, 2, 3], ["n"])

    async def double(x):
        return x * 2

    assert (await element_action_async(double, [a])).tensor == element_action(lambda x: x * 2, [a]).tensor
    functions = Reference.from_data([lambda v: [v, v]], ["f"])

    async def pair(v):
        return [v, -v]

    sync = cross_action(functions, a, "out")
    assert sync.axes == ["f", "n", "out"] and sync.tensor[0][1] == [2, 2]
    asynchronous = await cross_action_async(Reference.from_data([pair], ["f"]), a, "out")
    assert asynchronous.tensor[0][2] == [3, -3]


def test_join_stacks_same_shaped_references_realigning_axes() -> None:
    a = Reference.from_data([[1, 2]], ["p", "q"])
    b = Reference.from_data([[3], [4]], ["q", "p"])
    joined = join([a, b], "k")
    assert joined.axes == ["k", "p", "q"]
    assert joined.tensor == [[[1, 2]], [[3, 4]]]


def test_append_patterns() -> None:
    target = Reference.from_data([[1, 2], [3, 4]], ["B", "A"])
    assert target.append(Reference.from_data([5, 6], ["C"]), by_axis="B").tensor == [[1, 2], [3, 4], [5, 6]]
    assert target.append(Reference.from_data([[5], [6]], ["B", "C"]), by_axis="A").tensor == [[1, 2, 5], [3, 4, 6]]
    assert target.append(Reference.from_data([5, 6], ["C"]), by_axis="A").tensor == [[1, 2, 5, 6], [3, 4, 5, 6]]
    # by_axis inferred: the one axis of the target the source lacks
    deep = Reference.from_data([[[1, 2], [3, 4]], [[11, 12], [13, 14]]], ["D", "B", "A"])
    assert deep.append(Reference.from_data([[[5], [6]], [[15], [16]]], ["D", "B", "C"])).tensor[1] == [[11, 12, 15], [13, 14, 16]]


def test_append_of_a_partial_item_adds_one_padded_slice_where_upstream_crashed() -> None:
    """Upstream: `Shape mismatch: cannot reshape data of length 1 into slices of shape (2,)`."""
    pairs = Reference.from_data([["12", "34"]], ["pair", "number"])
    partial = Reference.from_data([["1", SKIP]], ["pair", "number"])
    grown = pairs.append(partial, by_axis="pair")
    assert grown.shape == (2, 2)
    assert grown.tensor == [["12", "34"], ["1", SKIP]]
    lone = pairs.append(Reference.from_data([["7"]], ["x", "y"]), by_axis="pair")
    assert lone.tensor == [["12", "34"], ["7", SKIP]]


def test_json_round_trip_and_copy_independence() -> None:
    ref = Reference.from_data([[{"k": [1, 2]}, "b"]], ["x", "y"])
    again = Reference.from_json(ref.to_json())
    assert again == ref
    clone = ref.copy()
    clone.tensor[0][0]["k"].append(3)
    assert ref.tensor[0][0]["k"] == [1, 2]
