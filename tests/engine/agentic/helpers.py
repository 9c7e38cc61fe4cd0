"""Real plans and step contexts for agent-step tests (no runtime needed for a single step)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from normcode_core.agents.types import LLMRequest, LLMResponse
from normcode_core.engine.plan import Plan, load_plan
from normcode_core.engine.reference import Reference
from normcode_core.engine.signs import SignIds
from normcode_core.engine.state import RunState
from normcode_core.engine.step import ConceptValue, StepContext

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURES = (REPO_ROOT / ".." / "shared" / "fixtures").resolve()
FIXTURE_PLANS = FIXTURES / "plans"


def concept(name: str, **fields: Any) -> dict[str, Any]:
    return {"concept_name": name, "type": fields.pop("type", "{}"), **fields}


def write_plan(root: Path, concepts: list[dict], inferences: list[dict], files: dict[str, str] | None = None) -> Plan:
    """A plan package on disk, loaded (and so validated) by the engine's loader."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(
        json.dumps({"name": root.name, "version": "1", "entry": {"concepts": "concept_repo.json", "inferences": "inference_repo.json"}})
    )
    (root / "concept_repo.json").write_text(json.dumps(concepts))
    (root / "inference_repo.json").write_text(json.dumps(inferences))
    for rel, text in (files or {}).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return load_plan(root)


def single_step_plan(root: Path, *, paradigm: dict | None = None, files: dict[str, str] | None = None) -> Plan:
    """`{out}` = one imperative_in_composition step over `{in}`, function `::(f)`."""
    files = dict(files or {})
    if paradigm is not None:
        files["provisions/paradigms/p.json"] = json.dumps(paradigm)
    return write_plan(
        root,
        [
            concept("{in}", is_ground_concept=True, reference_data=["%(x)"], reference_axis_names=["_none_axis"]),
            concept("::(f)", type="::({})", is_ground_concept=True, reference_data=["f"], reference_axis_names=["_none_axis"]),
            concept("{out}", is_final_concept=True),
        ],
        [
            {
                "flow_info": {"flow_index": "1"},
                "inference_sequence": "imperative_in_composition",
                "concept_to_infer": "{out}",
                "function_concept": "::(f)",
                "value_concepts": ["{in}"],
                "context_concepts": [],
                "working_interpretation": {"paradigm": "p", "value_order": {"{in}": 1}},
            }
        ],
        files,
    )


async def _no_llm(request: LLMRequest) -> LLMResponse:
    raise AssertionError(f"unexpected LLM call: {request}")


async def _no_question(question: dict[str, Any]) -> str:
    raise AssertionError(f"unexpected question: {question}")


def step_context(
    plan: Plan,
    *,
    flow_index: str = "1",
    references: dict[str, Reference] | None = None,
    llm: Callable[[LLMRequest], Awaitable[LLMResponse]] = _no_llm,
    ask: Callable[[dict[str, Any]], Awaitable[str]] = _no_question,
    workspace: Path | None = None,
    base_dir_for_paths: str | None = None,
    scripts: Any = None,
) -> StepContext:
    inference = next(i for i in plan.inferences if i.flow_index == flow_index)
    references = references or {}

    def value(name: str) -> ConceptValue:
        known = plan.concepts[name]
        reference = references.get(name)
        if reference is None and known.reference_data is not None:
            axes = list(known.reference_axis_names or ["_none_axis"])
            reference = Reference.from_data(known.reference_data, axes)
        return ConceptValue(concept=known, reference=reference)

    workspace = workspace or plan.root
    return StepContext(
        plan=plan,
        inference=inference,
        execution=1,
        target=value(inference.concept_to_infer),
        function=value(inference.function_concept) if inference.function_concept else None,
        values=[value(n) for n in inference.value_concepts],
        context=[value(n) for n in inference.context_concepts],
        state=RunState(),
        ids=SignIds("test/" + flow_index),
        llm=llm,
        ask=ask,
        emit=lambda _type, _data: None,
        scripts_provider=lambda: scripts,
        workspace=workspace,
        base_dir_for_paths=base_dir_for_paths or str(workspace),
    )
