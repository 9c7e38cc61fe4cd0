"""The syntactic sequences on small plans run by the real runtime."""

from __future__ import annotations

from pathlib import Path

from normcode_core.engine import load_plan
from normcode_core.engine.execution import Execution

from .plans import concept, ground, inference, write_package


async def _run(tmp_path: Path, concepts: list[dict], inferences: list[dict]):
    execution = Execution(load_plan(write_package(tmp_path / "plan", concepts, inferences)), tmp_path / "run")
    outcome = await execution.run()
    assert outcome.status == "completed", outcome.error
    return execution, {c["name"]: c for c in outcome.final_concepts}


def _assign(flow: str, target: str, values: list[str], syntax: dict, **flags) -> dict:
    return inference(flow, "assigning", target, "$", values, {"syntax": syntax}, **flags)


FUNCTION = ground("$", ["$"], type="$.")


async def test_specification_takes_the_first_source_with_data(tmp_path: Path) -> None:
    concepts = [FUNCTION, ground("{a}", ["%(1)"]), concept("{skipped}"), concept("{out}", is_final_concept=True)]
    # {skipped} never gets a value; a list assign_source needs only one complete source
    _, finals = await _run(tmp_path, concepts, [
        _assign("1", "{out}", ["{skipped}", "{a}"], {"marker": ".", "assign_source": ["{skipped}", "{a}"]}),
    ])
    assert finals["{out}"]["tensor"] == ["%(1)"]


async def test_continuation_appends_and_abstraction_reifies_literals(tmp_path: Path) -> None:
    concepts = [
        FUNCTION,
        ground("{pairs}", [["12", "34"]]),
        concept("{pair}"),
        concept("{grown}", is_final_concept=True),
    ]
    concepts[1]["reference_axis_names"] = ["pair", "number"]
    _, finals = await _run(tmp_path, concepts, [
        _assign("1", "{grown}", ["{pair}", "{pairs}"], {"marker": "+", "assign_source": "{pair}", "assign_destination": "{pairs}", "by_axes": ["pair"]}),
        _assign("1.1", "{pair}", [], {"marker": "%", "face_value": '[["56", "78"]]', "axis_names": ["pair", "number"]}),
    ])
    assert finals["{grown}"]["tensor"] == [["12", "34"], ["56", "78"]]
    assert finals["{grown}"]["axes"] == ["pair", "number"]


async def test_derelation_selects_and_unpacks(tmp_path: Path) -> None:
    concepts = [FUNCTION, ground("{records}", [[{"k": "a"}, {"k": "b"}]]), concept("{keys}", is_final_concept=True)]
    _, finals = await _run(tmp_path, concepts, [
        _assign("1", "{keys}", ["{records}"], {"marker": "-", "assign_source": "{records}",
                                               "selector": {"key": "k", "unpack_before_selection": True}}),
    ])
    assert finals["{keys}"]["tensor"] == ["a", "b"]


async def test_identity_makes_two_names_one_concept(tmp_path: Path) -> None:
    concepts = [FUNCTION, ground("{a}", ["%(1)"]), concept("{alias}"), concept("{id}"), concept("{out}", is_final_concept=True)]
    execution, finals = await _run(tmp_path, concepts, [
        _assign("1", "{out}", ["{alias}"], {"marker": ".", "assign_source": "{alias}"}),
        _assign("1.1", "{id}", [], {"marker": "=", "canonical_concept": "{a}", "alias_concept": "{alias}"}),
    ])
    assert execution.state.concept_status("{alias}") == "complete"
    # Aliasing shares the status (as upstream's blackboard), not the value: {alias} has none.
    assert finals["{out}"]["tensor"] == [] and finals["{out}"]["axes"] == ["result"]


async def test_grouping_across_with_a_new_axis_and_in_with_labels(tmp_path: Path) -> None:
    concepts = [
        ground("&", ["&"], type="&[#]"),
        ground("{q}", ["%(q)"]),
        ground("{n}", ["%(n)"]),
        concept("{signal}", is_final_concept=True),
        concept("[labelled]", type="[]", is_final_concept=True),
    ]
    _, finals = await _run(tmp_path, concepts, [
        inference("1", "grouping", "{signal}", "&", ["{q}", "{n}"], {"syntax": {"marker": "across", "by_axes": [["x"], ["y"]], "create_axis": "signal"}}),
        inference("2", "grouping", "[labelled]", "&", ["{q}", "{n}"], {"syntax": {"marker": "in", "by_axes": [["_none_axis"], ["_none_axis"]]}}),
    ])
    assert finals["{signal}"]["axes"] == ["signal", "_none_axis"] and finals["{signal}"]["shape"] == [2, 1]
    assert finals["[labelled]"]["tensor"] == [[{"{q}": "%(q)"}, {"{n}": "%(n)"}]]


async def test_timing_if_waits_then_skips_dependents_on_condition_not_met(tmp_path: Path, monkeypatch) -> None:
    """A judgement stand-in: an `assigning` whose completion detail the test sets, read by @:'."""
    from normcode_core.engine import execution as execution_module
    from normcode_core.engine.state import CONDITION_NOT_MET

    concepts = [
        FUNCTION,
        ground("{a}", ["%(1)"]),
        concept("<cond>", type="<>"),
        ground("@:'(<cond>)", ["@"], type="@:'"),
        concept("$gate", type="$."),
        concept("{gated}", is_final_concept=True),
        concept("{result}", is_final_concept=True),
    ]
    inferences = [
        _assign("1", "{result}", ["{gated}"], {"marker": ".", "assign_source": "{gated}"}),
        _assign("1.1", "{gated}", ["{a}"], {"marker": ".", "assign_source": "{a}"}),
        inference("1.1.1", "timing", "$gate", "@:'(<cond>)", ["<cond>"], {"syntax": {"marker": "if", "condition": "<cond>"}}),
        _assign("2", "<cond>", ["{a}"], {"marker": ".", "assign_source": "{a}"}),
    ]
    inferences[1]["function_concept"] = "$gate"
    original = execution_module.Execution._commit

    def commit(self, i, result, replay):
        original(self, i, result, replay)
        if self.graph.items[i].flow_index == "2":
            self.state.item_details["2"] = CONDITION_NOT_MET

    monkeypatch.setattr(execution_module.Execution, "_commit", commit)
    execution, finals = await _run(tmp_path, concepts, inferences)
    assert execution.state.item_details["1.1"] == "skipped"
    assert finals["{gated}"]["tensor"] is None  # skipped: complete without a reference
    assert finals["{result}"]["tensor"] == []  # $. of nothing: the empty `result` reference
    assert finals["{result}"]["axes"] == ["result"]
