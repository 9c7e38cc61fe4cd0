"""Runs share nothing: different plans at once in one process, and server-style runs whose
files go to their own artifacts directory over a read-only package."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

from normcode_core.engine import load_plan
from normcode_core.engine.execution import Execution

from .conftest import FakeLLM
from .plans import copy_fixture
from .test_fixtures import normalize


def _expected(package: Path, rule: str) -> dict:
    return next(s for s in json.loads((package / "expected.json").read_text())["scenarios"] if s["id"] == rule)


def _assert_matches(outcome, package: Path, rule: str, plan_dir: str) -> None:
    assert outcome.status == "completed", outcome.error
    expected = _expected(package, rule)
    finals = {c["name"]: c for c in outcome.final_concepts}
    for want in expected["final_concepts"]:
        got = finals[want["name"]]
        assert (got["axes"], got["shape"]) == (want["axes"], want["shape"])
        assert normalize(got["tensor"], plan_dir) == want["tensor_normalized"]
    assert outcome.llm_calls == expected["llm_calls"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def test_different_plans_run_concurrently_without_leaking(tmp_path: Path, fake_llm: FakeLLM, agents: Any) -> None:
    cases = [
        ("derivation-iter8", "nc-fake-v1"),
        ("gold-investment-en", "nc-fake-gold-bear-v1"),
        ("gold-investment-en", "nc-fake-gold-bull-v1"),
        ("add-combination", "nc-fake-v1"),
    ]
    runs = []
    for k, (name, rule) in enumerate(cases):
        package = copy_fixture(name, tmp_path / f"plan-{k}")
        agent = agents(fake_llm.base_url, rule)
        runs.append((package, rule, Execution(load_plan(package), tmp_path / f"run-{k}", llm=agent.complete)))
    before = {str(package): _tree(package) for package, _, _ in runs}
    outcomes = await asyncio.gather(*(execution.run() for _, _, execution in runs))
    for (package, rule, _), outcome in zip(runs, outcomes):
        _assert_matches(outcome, package, rule, str(package))
        written = {rel for rel, data in _tree(package).items() if before[str(package)].get(rel) != data}
        assert written == set(_expected(package, rule)["files_written"]), (package.name, written)
    assert len(fake_llm.requests()) == sum(_expected(p, r)["llm_calls"] for p, r, _ in runs)


async def test_server_style_run_writes_only_to_its_artifacts_over_a_read_only_package(tmp_path: Path, fake_llm: FakeLLM, agents: Any) -> None:
    package = copy_fixture("derivation-iter8", tmp_path / "package")
    original = _tree(package)
    for path in [package, *package.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        outcomes = []
        for k in range(2):  # two runs of the same package, at once
            artifacts = tmp_path / f"runs/run-{k}/artifacts"
            artifacts.mkdir(parents=True)
            agent = agents(fake_llm.base_url, "nc-fake-v1")
            outcomes.append((artifacts, Execution(load_plan(package), artifacts.parent, llm=agent.complete, workspace=artifacts)))
        results = await asyncio.gather(*(execution.run() for _, execution in outcomes))
        for (artifacts, _), outcome in zip(outcomes, results):
            _assert_matches(outcome, package, "nc-fake-v1", str(artifacts))
            written = {str(p.relative_to(artifacts)): p.read_bytes() for p in artifacts.rglob("*") if p.is_file()}
            changed = {rel for rel, data in written.items() if original.get(rel) != data}
            assert changed == set(_expected(package, "nc-fake-v1")["files_written"])
        assert _tree(package) == original
    finally:
        for path in [package, *package.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert os.access(package, os.W_OK)
