"""Scheduling: upstream's cycle model and values on generated plans, concurrency that does not
change results, and runs that end `failed` (never "completed" with empty results)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from normcode_core.agents.types import LLMRequest, LLMResponse
from normcode_core.engine import load_plan
from normcode_core.engine.execution import Execution
from normcode_core.engine.scheduler import Graph

from .conftest import FakeLLM
from .plans import (
    concept,
    ground,
    inference,
    write_fanout_plan,
    write_llm_loop_plan,
    write_package,
)

# cycles of upstream's model (UPSTREAM_BEHAVIOUR.md §8): nested chain N, flat chain 2, fan-in 3, loop 2N+1
CYCLES = {"chain": lambda n: n, "chainflat": lambda n: 2, "fanin": lambda n: 3, "loop": lambda n: 2 * n + 1}


@pytest.mark.parametrize("family", sorted(CYCLES))
@pytest.mark.parametrize("n", [5, 12])
async def test_generated_plans_give_the_known_value_in_upstreams_cycle_count(synthetic_plans: Path, tmp_path: Path, family: str, n: int) -> None:
    package = synthetic_plans / f"{family}-{n}"
    expected = json.loads((package / "expected_value.json").read_text())
    outcome = await Execution(load_plan(package), tmp_path / "run").run()
    assert outcome.status == "completed", outcome.error
    [final] = [c for c in outcome.final_concepts if c["name"] == expected["final_concept"]]
    values = [int(v[v.index("(") + 1 : -1]) for v in _leaves(final["tensor"])]
    want = expected["expected_value"]
    assert values == (want if isinstance(want, list) else [want])
    assert outcome.cycles == CYCLES[family](n)


def _leaves(data):
    if isinstance(data, list):
        for item in data:
            yield from _leaves(item)
    else:
        yield data


def test_graph_subtrees_parents_and_dependents(tmp_path: Path) -> None:
    flows = ["1", "1.1", "1.1.1", "1.2", "1.10", "2", "2.3.1"]
    concepts = [concept(f"{{c{fi}}}") for fi in flows] + [ground("$. %>(x)", ["x"], type="$.")]
    inferences = [
        inference(fi, "assigning", f"{{c{fi}}}", "$. %>(x)", [f"{{c{flows[k + 1]}}}"] if k + 1 < len(flows) else [], {"syntax": {"marker": "."}})
        for k, fi in enumerate(flows)
    ]
    graph = Graph.build(load_plan(write_package(tmp_path / "plan", concepts, inferences)))
    rank = graph.rank
    assert [graph.items[i].flow_index for i in graph.descendants(rank["1"])] == ["1.1", "1.1.1", "1.2", "1.10"]
    assert graph.parent[rank["2.3.1"]] == rank["2"]  # nearest existing ancestor
    assert graph.children[rank["1"]] == [rank["1.1"], rank["1.2"], rank["1.10"]]
    assert graph.dependents[rank["1.1"]] == [rank["1"]]


async def test_independent_llm_steps_run_concurrently_with_identical_results(tmp_path: Path, slow_fake_llm: FakeLLM, agents: Any) -> None:
    agent = agents(slow_fake_llm.base_url, "nc-fake-v1", max_concurrency=32)
    in_flight = peak = 0

    async def counting(request: LLMRequest) -> LLMResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await agent.complete(request)
        finally:
            in_flight -= 1

    outcomes = {}
    # (wall times are measured by benchmarks/engine.py, not asserted here)
    for parallel in (1, 32):
        peak = 0
        plan = load_plan(write_fanout_plan(tmp_path / f"plan-{parallel}", 20))
        outcome = await Execution(plan, tmp_path / f"run-{parallel}", llm=counting, max_parallel=parallel).run()
        outcomes[parallel] = (outcome, peak)
        assert outcome.status == "completed", outcome.error
    sequential, concurrent = outcomes[1], outcomes[32]
    assert sequential[1] == 1
    assert concurrent[1] == 20  # every step was in flight at once
    assert concurrent[0].final_concepts == sequential[0].final_concepts  # results (ids included) do not depend on it
    assert concurrent[0].llm_calls == sequential[0].llm_calls == 20


async def test_loop_iterations_get_their_own_ids_and_llm_calls(tmp_path: Path) -> None:
    calls: list[str] = []

    async def constant(request: LLMRequest) -> LLMResponse:
        calls.append(request.messages[-1]["content"])
        return LLMResponse(text='{"thinking": "t", "result": "same"}', model="m")

    outcome = await Execution(load_plan(write_llm_loop_plan(tmp_path / "plan", 3)), tmp_path / "run", llm=constant).run()
    assert outcome.status == "completed", outcome.error
    values = outcome.final_concepts[0]["tensor"]
    assert len(calls) == 3 and len(values) == 3
    assert len({v[:4] for v in values}) == 3  # distinct sign ids per iteration


def _simple_plan(root: Path, inferences: list[dict], extra: list[dict] | None = None) -> Path:
    concepts = [
        ground("{a}", ["%(1)"]),
        concept("{b}", is_final_concept=True),
        concept("{never}"),
        ground("$. %>({a})", ["$. %>({a})"], type="$."),
        *(extra or []),
    ]
    return write_package(root, concepts, inferences)


async def test_a_step_that_raises_fails_the_run_with_flow_index_and_error(tmp_path: Path) -> None:
    plan = _simple_plan(tmp_path / "plan", [inference("1", "assigning", "{b}", "$. %>({a})", ["{a}"], {"syntax": {}})])
    outcome = await Execution(load_plan(plan), tmp_path / "run").run()
    assert outcome.status == "failed"
    assert outcome.flow_index == "1"
    assert "assigning needs syntax.marker" in outcome.error


async def test_deadlock_fails_the_run_naming_the_stuck_steps(tmp_path: Path) -> None:
    plan = _simple_plan(tmp_path / "plan", [
        inference("1", "assigning", "{b}", "$. %>({a})", ["{a}", "{never}"], {"syntax": {"marker": ".", "assign_source": "{a}"}}),
    ])
    outcome = await Execution(load_plan(plan), tmp_path / "run").run()
    assert outcome.status == "failed"
    assert "deadlock" in outcome.error and "1" in outcome.error
    assert outcome.final_concepts == [{"name": "{b}", "tensor": None, "axes": None, "shape": None}]


async def test_running_out_of_cycles_fails_the_run(synthetic_plans: Path, tmp_path: Path) -> None:
    outcome = await Execution(load_plan(synthetic_plans / "loop-12"), tmp_path / "run", max_cycles=10).run()
    assert outcome.status == "failed"
    assert "max_cycles=10" in outcome.error
    assert outcome.cycles == 10


async def test_missing_agent_fails_with_a_clear_error(tmp_path: Path) -> None:
    outcome = await Execution(load_plan(write_fanout_plan(tmp_path / "plan", 2)), tmp_path / "run").run()
    assert outcome.status == "failed"
    assert "no LLM agent" in outcome.error or "none is configured" in outcome.error


@pytest.mark.parametrize("how", ["cancel", "stop"])
async def test_cancel_or_stop_ends_the_run_cancelled_and_it_can_resume(tmp_path: Path, slow_fake_llm: FakeLLM, agents: Any, how: str) -> None:
    agent = agents(slow_fake_llm.base_url, "nc-fake-v1")
    plan = load_plan(write_llm_loop_plan(tmp_path / "plan", 6))
    execution = Execution(plan, tmp_path / "run", llm=agent.complete)
    task = asyncio.create_task(execution.run())
    while len(slow_fake_llm.requests()) < 2:
        await asyncio.sleep(0.01)
    getattr(execution, how)()
    outcome = await task
    assert outcome.status == "cancelled"
    if how == "stop":  # the step in flight finished first
        assert len(slow_fake_llm.requests()) == outcome.llm_calls
    resumed = await execution.run()
    assert resumed.status == "completed"
    assert len({r["hash"] for r in slow_fake_llm.requests()}) == 6
    assert len(slow_fake_llm.requests()) <= 7  # only a call abandoned in flight is repeated


async def test_a_stop_lets_steps_started_ahead_finish_so_resume_repeats_no_call(tmp_path: Path) -> None:
    requests: list[str] = []

    async def model(request: LLMRequest) -> LLMResponse:
        requests.append(request.messages[-1]["content"])
        # The step whose turn it is answers first; the ones started ahead are still in flight then.
        await asyncio.sleep(0.05 if len(requests) == 1 else 0.3)
        return LLMResponse(text='{"thinking": "t", "result": "r"}', model="m")

    plan = load_plan(write_fanout_plan(tmp_path / "plan", 8))
    execution = Execution(plan, tmp_path / "run", llm=model, max_parallel=4)
    task = asyncio.create_task(execution.run())
    while not requests:
        await asyncio.sleep(0.005)
    execution.stop()
    outcome = await task
    assert outcome.status == "cancelled"
    assert len(requests) == 4  # the step whose turn it was, and three started ahead of it
    assert outcome.llm_calls == 4  # each one finished and was recorded
    resumed = await execution.run()
    assert resumed.status == "completed"
    assert len(requests) == 8 and len(set(requests)) == 8  # nothing asked twice
