"""The fixture plans step by step in-process: final values and the exact prompts (hashes)
against the upstream reference results, with the deterministic fake LLM answering."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import pytest

from normcode_core.agents.types import LLMRequest, LLMResponse
from normcode_core.engine import load_plan
from normcode_core.engine.execution import Execution

from .helpers import FIXTURE_PLANS, FIXTURES


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"fixtures_{name}", FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fixture code, not ours
        spec.loader.exec_module(module)
    return module


fake_llm = _load("fake_llm")
check = _load("check")

CASES = [
    (plan.name, scenario["id"])
    for plan in sorted(FIXTURE_PLANS.iterdir())
    if (plan / "expected.json").is_file()
    for scenario in json.loads((plan / "expected.json").read_text())["scenarios"]
]


@pytest.mark.parametrize(("plan_name", "rule"), CASES, ids=[f"{p}.{r}" for p, r in CASES])
async def test_fixture_plan(tmp_path: Path, plan_name: str, rule: str) -> None:
    package = tmp_path / "plan"
    shutil.copytree(FIXTURE_PLANS / plan_name, package)
    prompts: list[str] = []

    async def llm(request: LLMRequest) -> LLMResponse:
        messages = list(request.messages)
        prompts.append(fake_llm.normalize_prompt(messages))
        text, _info = fake_llm.reply_for(rule, messages)
        return LLMResponse(text=text, model=rule)

    execution = Execution(load_plan(package), tmp_path / "run", llm=llm, auto_answer="Default response", max_cycles=300)
    outcome = await execution.run()
    assert outcome.status == "completed", outcome.error

    expected = next(s for s in json.loads((package / "expected.json").read_text())["scenarios"] if s["id"] == rule)
    got = {c["name"]: c for c in outcome.final_concepts}
    for concept in expected["final_concepts"]:
        value = got[concept["name"]]
        assert value["axes"] == concept["axes"]
        assert list(value["shape"]) == concept["shape"]
        assert check.normalize(value["tensor"], str(package)) == concept["tensor_normalized"]
    assert sorted(hashlib.sha256(p.encode("utf-8")).hexdigest() for p in prompts) == sorted(expected["llm_prompt_hashes"])
    assert outcome.llm_calls == expected["llm_calls"]
