"""The older sequences without upstream fixtures, and how script failures end a run."""

from __future__ import annotations

import json
from pathlib import Path

from normcode_core.agents.types import LLMRequest, LLMResponse
from normcode_core.engine.execution import Execution

from .helpers import FIXTURE_PLANS, concept, write_plan

SCRIPT_PARADIGM = "v_ScriptLocation-h_Literal-c_Execute-o_Literal"


def step(flow: str, sequence: str, target: str, function: str, values: list[str], interpretation: dict) -> dict:
    return {
        "flow_info": {"flow_index": flow},
        "inference_sequence": sequence,
        "concept_to_infer": target,
        "function_concept": function,
        "value_concepts": values,
        "context_concepts": [],
        "working_interpretation": interpretation,
    }


class ScriptedLLM:
    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    async def __call__(self, request: LLMRequest) -> LLMResponse:
        self.prompts.append(request.messages[-1]["content"])
        return LLMResponse(text=self.replies.pop(0), model="scripted")


def final(outcome, name: str) -> dict:
    return next(c for c in outcome.final_concepts if c["name"] == name)


async def test_imperative_python_generates_a_missing_script_once(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "pkg",
        [
            concept("{n}", is_ground_concept=True, reference_data=["%(20)"], reference_axis_names=["n"]),
            concept("{script}", is_ground_concept=True, reference_data=["%{generated_script_path}(provisions/gen/double.py)"], reference_axis_names=["script"]),
            concept("{prompt}", is_ground_concept=True, reference_data=["%{prompt_location}(provisions/prompts/write.md)"], reference_axis_names=["prompt"]),
            concept("::(double {1})", type="::({})", is_ground_concept=True, reference_data=["::(double {1})"]),
            concept("{doubled}", is_final_concept=True),
        ],
        [step("1", "imperative_python", "{doubled}", "::(double {1})", ["{n}", "{script}", "{prompt}"], {"value_order": {"{n}": 1, "{script}": 2, "{prompt}": 3}})],
        {"provisions/prompts/write.md": "Write code doubling $input_1"},
    )
    llm = ScriptedLLM("```python\nresult = str(int(input_1) * 2)\n```")
    outcome = await Execution(plan, tmp_path / "run", llm=llm).run()
    assert outcome.status == "completed", outcome.error
    value = final(outcome, "{doubled}")
    assert value["axes"] == ["n", "script", "prompt"] and value["shape"] == [1, 1, 1]
    assert value["tensor"][0][0][0].endswith("(40)")
    assert llm.prompts == ["Write code doubling 20"]
    assert (plan.root / "provisions/gen/double.py").read_text() == "result = str(int(input_1) * 2)"


async def test_judgement_python_reports_whether_the_condition_holds(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "pkg",
        [
            concept("{n}", is_ground_concept=True, reference_data=["%(7)"]),
            concept("{script}", is_ground_concept=True, reference_data=["%{script_location}(provisions/odd.py)"]),
            concept("<odd>", type="<>", is_final_concept=True),
            concept("::(is odd)", type="::({})", is_ground_concept=True, reference_data=["::(is odd)"]),
        ],
        [step("1", "judgement_python", "<odd>", "::(is odd)", ["{n}", "{script}"], {"value_order": {"{n}": 1, "{script}": 2}, "condition": True})],
        {"provisions/odd.py": "result = int(input_1) % 2 == 1\n"},
    )
    outcome = await Execution(plan, tmp_path / "run").run()
    assert outcome.status == "completed", outcome.error
    value = final(outcome, "<odd>")
    assert value["axes"] == ["condition_met"]
    assert value["tensor"][0].endswith("($(T)%)")


async def test_judgement_direct_fills_the_prompt_it_is_given(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "pkg",
        [
            concept("{question}", is_ground_concept=True, reference_data=["%{prompt}(provisions/ask.md)"]),
            concept("{topic}", is_ground_concept=True, reference_data=["%(cats)"]),
            concept("<nice>", type="<>", is_final_concept=True),
            concept("::(judge)", type="::({})", is_ground_concept=True, reference_data=["::(judge)"]),
        ],
        [step("1", "judgement_direct", "<nice>", "::(judge)", ["{question}", "{topic}"], {"value_order": {"{question}": 1, "{topic}": 2}, "condition": "yes"})],
        {"provisions/ask.md": "Are $input_1 nice? Say yes or no."},
    )
    llm = ScriptedLLM("yes")
    outcome = await Execution(plan, tmp_path / "run", llm=llm).run()
    assert outcome.status == "completed", outcome.error
    assert llm.prompts == ["Are cats nice? Say yes or no."]
    assert final(outcome, "<nice>")["tensor"][0].endswith("($(T)%)")


async def test_plain_imperative_translates_then_answers_per_input(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "pkg",
        [
            concept("{word}", is_ground_concept=True, reference_data=["%(a)", "%(b)"], reference_axis_names=["word"]),
            concept("::(shout {1}<$({word})%>)", type="::({})", is_ground_concept=True, reference_data=["::(shout {1}<$({word})%>)"]),
            concept("{loud}", is_final_concept=True),
        ],
        [step("1", "imperative", "{loud}", "::(shout {1}<$({word})%>)", ["{word}"], {"value_order": {"{word}": 1}})],
    )
    llm = ScriptedLLM("Shout $input_1.", "A!", "B!")
    outcome = await Execution(plan, tmp_path / "run", llm=llm, max_parallel=1).run()
    assert outcome.status == "completed", outcome.error
    assert "::(shout {1}<$({word})%>)" in llm.prompts[0]
    instruction = "Shout {}.\n\nInputs:\ninput_1: {}\n\nAnswer with the result only."
    assert sorted(llm.prompts[1:]) == [instruction.format("a", "a"), instruction.format("b", "b")]
    value = final(outcome, "{loud}")
    # the function concept's axis stays in front, as upstream
    assert value["axes"] == ["axis_0", "word"] and value["shape"] == [1, 2]
    assert [v[v.index("(") :] for v in value["tensor"][0]] == ["(A!)", "(B!)"]


def _script_step_plan(root: Path, script: str) -> object:
    paradigm = (FIXTURE_PLANS / "derivation-iter8" / "provisions" / "paradigms" / f"{SCRIPT_PARADIGM}.json").read_text()
    return write_plan(
        root,
        [
            concept("{in}", is_ground_concept=True, reference_data=["%(1)"]),
            concept("::(run)", type="::({})", is_ground_concept=True, reference_data=["%{script_location}(provisions/s.py)"]),
            concept("{out}", is_final_concept=True),
        ],
        [step("1", "imperative_in_composition", "{out}", "::(run)", ["{in}"], {"paradigm": SCRIPT_PARADIGM, "value_order": {"{in}": 1}})],
        {"provisions/s.py": script, f"provisions/paradigms/{SCRIPT_PARADIGM}.json": paradigm},
    )


async def test_a_raising_function_script_becomes_an_error_value(tmp_path: Path) -> None:
    plan = _script_step_plan(tmp_path / "pkg", "def main(input_1=None):\n    raise ValueError('bad input ' + str(input_1))\n")
    outcome = await Execution(plan, tmp_path / "run").run()
    assert outcome.status == "completed"
    assert final(outcome, "{out}")["tensor"][0].endswith("({'status': 'error', 'message': 'bad input 1'})")


async def test_a_looping_script_fails_the_step_and_the_run(tmp_path: Path) -> None:
    plan = _script_step_plan(tmp_path / "pkg", "def main(input_1=None):\n    while True:\n        pass\n")
    outcome = await Execution(plan, tmp_path / "run", script_timeout_s=1).run()
    assert outcome.status == "failed"
    assert outcome.flow_index == "1"
    assert "did not finish within 1 s" in outcome.error


async def test_a_script_exiting_the_interpreter_fails_the_run(tmp_path: Path) -> None:
    plan = _script_step_plan(tmp_path / "pkg", "import os\ndef main(input_1=None):\n    os._exit(9)\n")
    outcome = await Execution(plan, tmp_path / "run").run()
    assert outcome.status == "failed" and "killed its worker (exit status 9)" in outcome.error


async def test_a_missing_paradigm_fails_with_its_name(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "pkg",
        [
            concept("{in}", is_ground_concept=True, reference_data=["%(1)"]),
            concept("::(f)", type="::({})", is_ground_concept=True, reference_data=["f"]),
            concept("{out}", is_final_concept=True),
        ],
        [step("1", "imperative_in_composition", "{out}", "::(f)", ["{in}"], {"paradigm": "nowhere", "value_order": {"{in}": 1}})],
        {"provisions/paradigms/other.json": json.dumps({})},
    )
    outcome = await Execution(plan, tmp_path / "run").run()
    assert outcome.status == "failed" and "paradigm 'nowhere' not found" in outcome.error
