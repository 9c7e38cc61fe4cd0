"""Plan packages built for engine tests and benchmarks (stdlib only: benchmarks load this file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

FIXTURES = (Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures").resolve()
LLM_PARADIGM = "v_PromptLocation-h_Literal-c_GenerateThinkJson-o_Literal"
STEP_PROMPT = """# Synthetic Step

Transform the input value into a new value.

Input value: $input_1

Return a JSON object {"thinking": "...", "result": "<new value>"}.
"""


def concept(name: str, **fields: Any) -> dict[str, Any]:
    entry = {"concept_name": name, "type": fields.pop("type", "{}"), "is_ground_concept": False, "is_final_concept": False}
    entry.update(fields)
    return entry


def ground(name: str, values: list[Any], type: str = "{}") -> dict[str, Any]:
    return concept(name, type=type, is_ground_concept=True, reference_data=values, reference_axis_names=["_none_axis"])


def write_package(root: Path, concepts: list[dict], inferences: list[dict], files: dict[str, str] | None = None,
                  manifest: dict[str, Any] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({
        "name": root.name,
        "version": "1.0.0",
        "entry": {"concepts": "concept_repo.json", "inferences": "inference_repo.json"},
        **(manifest or {}),
    }))
    (root / "concept_repo.json").write_text(json.dumps(concepts, indent=1))
    (root / "inference_repo.json").write_text(json.dumps(inferences, indent=1))
    for rel, text in (files or {}).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def inference(flow_index: str, sequence: str, target: str, function: str | None, values: list[str],
              wi: dict[str, Any] | None = None, context: list[str] | None = None, **flags: Any) -> dict[str, Any]:
    return {
        "flow_info": {"flow_index": flow_index},
        "inference_sequence": sequence,
        "concept_to_infer": target,
        "function_concept": function,
        "value_concepts": values,
        "context_concepts": context or [],
        "working_interpretation": wi or {},
        **flags,
    }


def write_fanout_plan(root: Path, n: int) -> Path:
    """`n` independent LLM steps {y_k} = transform({x_k}) (flows 1.1 .. 1.n), grouped into {all} at 1."""
    function = "::(transform {1}<$({value})%>)"
    concepts = [ground(function, ["%{prompt_location}(provisions/prompts/step.md)"], type="::({})")]
    inferences = []
    names = []
    for k in range(1, n + 1):
        concepts.append(ground(f"{{x_{k}}}", [f"%({k})"]))
        concepts.append(concept(f"{{y_{k}}}", reference_axis_names=["_none_axis"]))
        names.append(f"{{y_{k}}}")
        inferences.append(inference(f"1.{k}", "imperative_in_composition", f"{{y_{k}}}", function, [f"{{x_{k}}}"],
                                    {"paradigm": LLM_PARADIGM, "value_order": {f"{{x_{k}}}": 1}}))
    concepts.append(concept("&[#](results)", type="&[#]", is_ground_concept=True))
    concepts.append(concept("{all}", is_final_concept=True))
    inferences.insert(0, inference("1", "grouping", "{all}", "&[#](results)", names, {"syntax": {"marker": "across"}}))
    paradigm = (FIXTURES / "synthetic" / "synthetic_paradigms" / f"{LLM_PARADIGM}.json").read_text()
    return write_package(root, concepts, inferences, {
        "provisions/prompts/step.md": STEP_PROMPT,
        f"provisions/paradigms/{LLM_PARADIGM}.json": paradigm,
    }, {"provisions": {"paradigms": "provisions/paradigms"}})


def copy_fixture(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / "plans" / name, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    return dest


def write_llm_loop_plan(root: Path, n: int) -> Path:
    """A loop over [items] = 1..n whose body is an LLM step: {answer} = transform({item})."""
    function = "::(transform {1}<$({value})%>)"
    loop_function = "*. %>([items]) %<({answer}) %:({item}) %@(1)"
    concepts = [
        concept("[answers]", type="[]", is_final_concept=True, reference_axis_names=["item"]),
        concept("[items]", type="[]", axis_name="item", is_ground_concept=True,
                reference_data=[f"%({k})" for k in range(1, n + 1)], reference_axis_names=["item"]),
        concept("{item}", reference_axis_names=["_none_axis"]),
        concept("{answer}", reference_axis_names=["_none_axis"]),
        concept(loop_function, type="({})", is_ground_concept=True),
        ground("$. %>({answer})", ["$. %>({answer})"], type="$."),
        ground(function, ["%{prompt_location}(provisions/prompts/step.md)"], type="::({})"),
    ]
    inferences = [
        inference("1", "looping", "[answers]", loop_function, ["[items]"], {"syntax": {
            "marker": "every", "loop_index": 1, "LoopBaseConcept": "[items]", "CurrentLoopBaseConcept": "{item}",
            "group_base": "item", "ConceptToInfer": ["{answer}"]}}, context=["{item}"]),
        inference("1.1", "assigning", loop_function, "$. %>({answer})", ["{answer}"],
                  {"syntax": {"marker": ".", "assign_source": "{answer}"}}),
        inference("1.1.2", "imperative_in_composition", "{answer}", function, ["{item}"],
                  {"paradigm": LLM_PARADIGM, "value_order": {"{item}": 1}}),
    ]
    paradigm = (FIXTURES / "synthetic" / "synthetic_paradigms" / f"{LLM_PARADIGM}.json").read_text()
    return write_package(root, concepts, inferences, {
        "provisions/prompts/step.md": STEP_PROMPT,
        f"provisions/paradigms/{LLM_PARADIGM}.json": paradigm,
    }, {"provisions": {"paradigms": "provisions/paradigms"}})
