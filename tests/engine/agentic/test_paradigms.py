"""Paradigms: loading from the plan, native binding of affordances (no plan code runs in the
server), compositions, and single composition steps end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from normcode_core.engine.paradigms import ParadigmError, ParadigmLibrary, compose
from normcode_core.engine.paradigms.composition import CompositionError
from normcode_core.engine.sequences.agentic.composition import run_imperative

from .helpers import FIXTURE_PLANS, single_step_plan, step_context

PASS_THROUGH = FIXTURE_PLANS / "gold-investment-en" / "provisions" / "paradigms" / "h_Data-c_PassThrough-o_Normal.json"


def paradigm(tools: list[tuple[str, str, str]], steps: list[dict]) -> dict:
    by_tool: dict[str, list] = {}
    for tool, name, code in tools:
        by_tool.setdefault(tool, []).append({"affordance_name": name, "call_code": code})
    return {
        "env_spec": {"tools": [{"tool_name": t, "affordances": a} for t, a in by_tool.items()]},
        "sequence_spec": {"steps": steps},
    }


def meta(key: str) -> dict:
    return {"__type__": "MetaValue", "key": key}


def test_library_loads_from_the_plan_and_reports_problems(tmp_path: Path) -> None:
    directory = tmp_path / "paradigms"
    directory.mkdir()
    (directory / "ok.json").write_text(PASS_THROUGH.read_text())
    (directory / "broken.json").write_text(json.dumps({"env_spec": {}}))
    library = ParadigmLibrary(directory)
    loaded = library.load("ok")
    assert [s.affordance for s in loaded.steps] == ["formatter_tool.get", "formatter_tool.wrap", "composition_tool.compose"]
    assert library.load("ok") is loaded  # parsed once
    with pytest.raises(ParadigmError, match="not found"):
        library.load("absent")
    with pytest.raises(ParadigmError, match="malformed"):
        library.load("broken")
    with pytest.raises(ParadigmError, match="invalid paradigm name"):
        library.load("../ok")


async def test_pass_through_paradigm_wraps_its_input(tmp_path: Path) -> None:
    plan = single_step_plan(tmp_path / "pkg", paradigm=json.loads(PASS_THROUGH.read_text()))
    result = await run_imperative(step_context(plan))
    assert result.reference.axes == ["_none_axis"]
    [value] = result.reference.tensor
    assert value.startswith("%") and value.endswith("(x)") and len(value) == len("%abc(x)")
    again = await run_imperative(step_context(plan))
    assert again.reference.tensor == [value]  # ids are deterministic


async def test_call_code_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = paradigm(
        [("formatter_tool", "get", f"import os; os.system('touch {marker}'); result = tool.get")],
        [{"step_index": 1, "affordance": "formatter_tool.get", "params": {}, "result_key": "instruction_fn"}],
    )
    plan = single_step_plan(tmp_path / "pkg", paradigm=evil)
    with pytest.raises(ParadigmError, match="no native implementation"):
        await run_imperative(step_context(plan))
    assert not marker.exists()


async def test_unknown_tools_and_private_state_are_refused(tmp_path: Path) -> None:
    unknown = paradigm(
        [("os", "system", "result = tool.system")],
        [{"step_index": 1, "affordance": "os.system", "params": {}, "result_key": "instruction_fn"}],
    )
    plan = single_step_plan(tmp_path / "a", paradigm=unknown)
    with pytest.raises(ParadigmError, match="not supported"):
        await run_imperative(step_context(plan))
    private = paradigm(
        [("perception_router", "strip_sign", "result = tool.strip_sign(params['token'])")],
        [{"step_index": 1, "affordance": "perception_router.strip_sign", "params": {"token": meta("states.body._call")}, "result_key": "x"}],
    )
    plan = single_step_plan(tmp_path / "b", paradigm=private)
    with pytest.raises(ParadigmError, match="does not name step state"):
        await run_imperative(step_context(plan))


async def test_literal_keywords_of_a_call_are_honoured(tmp_path: Path) -> None:
    asks: list[dict] = []

    async def ask(question: dict) -> str:
        asks.append(question)
        return "a.txt"

    spec = paradigm(
        [
            ("user_input", "create_interaction", "result = tool.create_interaction(interaction_type='multi_file_input', prompt_key='prompt_text')"),
            ("formatter_tool", "get", "result = tool.get"),
            ("composition_tool", "compose", "result = tool.compose(plan=params['plan'], return_key=params.get('return_key'))"),
        ],
        [
            {"step_index": 1, "affordance": "user_input.create_interaction", "params": {}, "result_key": "ask_fn"},
            {"step_index": 2, "affordance": "formatter_tool.get", "params": {}, "result_key": "get_fn"},
            {
                "step_index": 3,
                "affordance": "composition_tool.compose",
                "params": {
                    "plan": [
                        {"output_key": "q", "function": meta("get_fn"), "params": {"dictionary": "__initial_input__"}, "literal_params": {"key": "input_1"}},
                        {"output_key": "answer", "function": meta("ask_fn"), "params": {"prompt_text": "q"}},
                    ],
                    "return_key": "answer",
                },
                "result_key": "instruction_fn",
            },
        ],
    )
    plan = single_step_plan(tmp_path / "pkg", paradigm=spec)
    result = await run_imperative(step_context(plan, ask=ask))
    assert result.reference.tensor == ["a.txt"]
    assert asks == [{"prompt": "x", "kind": "files"}]


async def test_composition_conditions_and_errors() -> None:
    calls: list[str] = []

    def record(value: str) -> str:
        calls.append(value)
        return value.upper()

    plan = [
        {"output_key": "flag", "function": lambda d: d["go"], "params": {"__positional__": "__initial_input__"}},
        {"output_key": "yes", "function": record, "params": {"__positional__": "flag"}, "condition": {"key": "flag", "operator": "is_true"}},
        {"output_key": "no", "function": record, "literal_params": {"value": "skipped"}, "condition": {"key": "flag", "operator": "is_false"}},
        {"output_key": "constant", "function": 42},
    ]
    assert await compose(plan, "yes")({"go": "on"}) == "ON"
    assert calls == ["on"]
    assert await compose(plan)({"go": ""}) == 42
    assert calls == ["on", "skipped"]
    with pytest.raises(CompositionError, match="return_key 'no'"):
        await compose(plan, "no")({"go": "on"})
    with pytest.raises(TypeError):
        await compose(plan)("not a dict")
    with pytest.raises(CompositionError, match="Key 'missing' not found"):
        await compose([{"output_key": "a", "function": record, "params": {"value": "missing"}}])({})


def test_only_pure_llm_steps_may_run_ahead() -> None:
    from normcode_core.engine import load_plan
    from normcode_core.engine.sequences import is_concurrent_safe

    gold = load_plan(FIXTURE_PLANS / "gold-investment-en")
    by_flow = {i.flow_index: i for i in gold.inferences}
    assert is_concurrent_safe(by_flow["1.6.3"], gold)  # sentiment extraction: prompt + LLM only
    assert is_concurrent_safe(by_flow["1.7"], gold)  # a judgement over LLM answers
    assert not is_concurrent_safe(by_flow["1.6.2"], gold)  # runs a script
    assert not is_concurrent_safe(by_flow["1.6"], gold)  # grouping declares nothing
    derivation = load_plan(FIXTURE_PLANS / "derivation-iter8")
    by_flow = {i.flow_index: i for i in derivation.inferences}
    # {extraction data} is read twice in the plan: the goal step must wait for its turn
    assert not is_concurrent_safe(by_flow["1.18.3.4.4"], derivation)
    # inside the classification loop
    assert not is_concurrent_safe(by_flow["1.16.3.5.1.2.3"], derivation)
    ask = load_plan(FIXTURE_PLANS / "paradigm-exp-5.3-ask")
    assert not is_concurrent_safe(ask.inferences[0], ask)
