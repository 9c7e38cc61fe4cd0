"""Judgement assertions and the input rules they depend on (upstream semantics, quirks included)."""

from __future__ import annotations

from normcode_core.engine.reference import SKIP, Reference
from normcode_core.engine.sequences.agentic.assertion import assert_condition
from normcode_core.engine.sequences.agentic.legacy_values import readable
from normcode_core.engine.sequences.agentic.values import Packed, input_dict
from normcode_core.engine.signs import FALSE_SIGN, TRUE_SIGN

T, F = TRUE_SIGN, FALSE_SIGN


def ref(data, axes) -> Reference:
    return Reference.from_data(data, axes)


def test_no_assertion_passes_results_through() -> None:
    results = ref(["%a(1)"], ["_none_axis"])
    outcome = assert_condition(results, None)
    assert outcome.reference is results and outcome.condition_met and outcome.filter_axis is None


def test_for_each_gives_one_truth_value_per_element() -> None:
    results = ref(["%a1(True)", "%b2(False)"], ["signal"])
    outcome = assert_condition(results, {"quantifiers": {"signal": "for-each"}, "condition": True})
    assert outcome.reference.tensor == [T, F]
    assert outcome.reference.axes == ["signal"]
    assert outcome.condition_met  # met as soon as any element holds
    assert outcome.filter_axis == "signal"
    none_hold = assert_condition(ref(["%a(false)", "%b(false)"], ["signal"]), {"quantifiers": {"signal": "for-each"}, "condition": True})
    assert none_hold.reference.tensor == [F, F] and not none_hold.condition_met


def test_for_each_with_a_collapsing_criterion() -> None:
    results = ref([[T, T], [T, F], [F, F]], ["document", "paragraph"])
    every = assert_condition(results, {"quantifiers": {"document": "for-each", "paragraph": "all"}, "condition": True})
    assert every.reference.tensor == [T, F, F] and every.reference.axes == ["document"]
    some = assert_condition(results, {"quantifiers": {"document": "for-each", "paragraph": "some"}, "condition": True})
    assert some.reference.tensor == [T, T, F]
    none = assert_condition(results, {"quantifiers": {"document": "for-each", "paragraph": "none"}, "condition": True})
    assert none.reference.tensor == [F, F, T]


def test_criterion_on_an_outer_axis_transposes() -> None:
    results = ref([[T, T], [F, F]], ["status_type", "signal"])
    outcome = assert_condition(results, {"quantifiers": {"signal": "for-each", "status_type": "all"}, "condition": False})
    assert outcome.reference.axes == ["signal"]
    assert outcome.reference.tensor == [F, F]


def test_skipped_slices_hold_vacuously() -> None:
    """Gold's <signals are neutral>: its packed two-axis input reaches the judgement as skips,
    so "for each signal where ALL status_type are false" is true for every signal."""
    results = ref([[SKIP, SKIP], [SKIP, SKIP]], ["status_type", "signal"])
    outcome = assert_condition(results, {"quantifiers": {"signal": "for-each", "status_type": "all"}, "condition": False})
    assert outcome.reference.tensor == [T, T] and outcome.condition_met


def test_global_quantifiers_give_a_single_assertion_result() -> None:
    results = ref([T, T, F], ["item"])
    outcome = assert_condition(results, {"quantifiers": {"item": "all"}, "condition": True})
    assert outcome.reference.axes == ["assertion_result"]
    assert outcome.reference.tensor == [F] and not outcome.condition_met
    assert assert_condition(results, {"quantifiers": {"item": "some"}, "condition": True}).condition_met
    assert assert_condition(ref([], ["item"]), {"quantifiers": {"item": "all"}, "condition": True}).condition_met


def test_plain_condition_compares_exactly() -> None:
    outcome = assert_condition(ref(["yes", "no"], ["q"]), {"condition": "yes"})
    assert outcome.reference.tensor == [T, F] and outcome.reference.axes == ["q"]


def test_multi_axis_packing_turns_elements_into_skips() -> None:
    perceived = ref([["a", "b"], ["c", "d"]], ["status_type", "signal"])
    packed = perceived.with_data([Packed(element) for element in perceived.tensor])
    assert packed.tensor == [[SKIP, SKIP], [SKIP, SKIP]]
    single = ref(["a", "b"], ["signal"])
    assert [type(e) for e in single.with_data([Packed(e) for e in single.tensor]).tensor] == [Packed, Packed]


def test_input_dicts() -> None:
    assert input_dict([Packed(["x", "y"]), "z"]) == {"input_1": ["x", "y"], "input_2": "z"}
    assert input_dict([["x", "y"]]) == {"input_1": "x", "input_2": "y"}
    assert input_dict(["{%{script_location}: s.py}", "v"]) == {"script_location": "s.py", "input_1": "v"}
    # a packed instruction list stays an input (why 5.7's save_path never arrives)
    assert input_dict([Packed(["{%{save_path}: out.md}"])]) == {"input_1": ["{%{save_path}: out.md}"]}
    assert readable(["4", "2", "2"]) == "4, 2, and 2"
    assert readable(["a", "b"]) == "a, and b"
