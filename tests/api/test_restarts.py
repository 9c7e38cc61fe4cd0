"""No run is lost when the server stops: SIGTERM interrupts runs gracefully and the next start resumes
them; after kill -9 every run still finishes with the same result, and no LLM step that had
completed is requested again (requests counted at the fake LLM server).

Each run uses its own fake-LLM model, so a request is identified by (model, prompt hash) even when
two runs of one plan send the same prompts."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

from api.conftest import Api, ApiFactory, FakeLLM, fixture_plan, write_agents

REPLY_TOKEN = re.compile(r"fake-thinking-([0-9a-f]{8})")
# agent name -> fake LLM model (rule set); the gold rule sets answer its prompts differently
AGENTS = {"fake": "nc-fake-v1", "bull": "nc-fake-gold-bull-v1", "bear": "nc-fake-gold-bear-v1"}


def write_fake_agents(data_dir: Path, llm: FakeLLM) -> None:
    for index, (name, model) in enumerate(AGENTS.items()):
        write_agents(data_dir, llm, model=model, name=name, add=index > 0)


def completed_llm_calls(data_dir: Path, run_ids: list[str]) -> set[tuple[str, str]]:
    """(model, prompt hash[:8]) of every LLM call recorded as completed in the runs' checkpoints."""
    done: set[tuple[str, str]] = set()
    for run_id in run_ids:
        run_db = data_dir / "runs" / run_id / "run.db"
        if not run_db.exists():
            continue
        db = sqlite3.connect(run_db)  # the server is gone: a normal connection recovers the WAL
        try:
            for (data,) in db.execute("SELECT data FROM events WHERE type = 'llm_call'"):
                response = json.loads(data)["response"]
                match = REPLY_TOKEN.search(response["text"])
                assert match, data
                done.add((response["model"], match.group(1)))
        finally:
            db.close()
    return done


def requested_after(llm: FakeLLM, first: int) -> set[tuple[str, str]]:
    return {(request["model"], request["hash"][:8]) for request in llm.requests()[first:]}


def statuses_in_storage(data_dir: Path) -> dict[str, str]:
    db = sqlite3.connect(data_dir / "server.db")
    try:
        return dict(db.execute("SELECT run_id, status FROM runs"))
    finally:
        db.close()


def wait_for_requests(llm: FakeLLM, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while llm.count() < count:
        assert time.monotonic() < deadline, f"only {llm.count()} LLM requests after {timeout}s"
        time.sleep(0.01)


def reference_result(api: Api, plan_id: str, agent: str) -> list:
    """Final concepts of an uninterrupted run of the plan with the agent, on the same server."""
    run = api.wait_for(api.start_run(plan_id, agent=agent)["run_id"], timeout=120)
    assert run["status"] == "completed", run
    return api.http.get(f"/api/runs/{run['run_id']}/result").json()["final_concepts"]


def test_sigterm_interrupts_gracefully_and_the_next_start_resumes(
    api_factory: ApiFactory, data_dir: Path, fake_llm_factory
) -> None:
    llm = fake_llm_factory(latency_ms=400)
    write_fake_agents(data_dir, llm)
    env = {"NORMCODE_EXECUTION__SHUTDOWN_GRACE_S": "3"}
    api = api_factory(data_dir, **env)
    api.deploy(fixture_plan("gold-investment-en"))
    agents = ["fake", "bull"]
    runs = [api.start_run("gold-investment-en", agent=agent)["run_id"] for agent in agents]
    wait_for_requests(llm, 3)  # neither run can be done: each needs 10 to 12

    stopping = time.monotonic()
    assert api.server.stop(timeout=30) == 0  # SIGTERM
    assert time.monotonic() - stopping < 3 + 5
    assert any('"runs_stopped"' in line for line in api.server.stdout)
    assert statuses_in_storage(data_dir) == {run_id: "interrupted" for run_id in runs}
    done_before = completed_llm_calls(data_dir, runs)
    requests_before = llm.count()
    assert done_before  # some steps had completed

    restarted = api_factory(data_dir, **env)  # waits for /ready: reconciliation is done
    for run_id in runs:
        assert restarted.wait_for(run_id, timeout=120)["status"] == "completed"
    assert requested_after(llm, requests_before) & done_before == set()
    assert len(done_before) == requests_before  # calls in flight at the stop finished and were recorded
    assert llm.count() == 12 + 10  # every call once
    for run_id, agent in zip(runs, agents):
        result = restarted.http.get(f"/api/runs/{run_id}/result").json()["final_concepts"]
        assert result == reference_result(restarted, "gold-investment-en", agent)


def test_kill_9_then_restart_repeats_no_completed_llm_step(
    api_factory: ApiFactory, data_dir: Path, fake_llm_factory
) -> None:
    llm = fake_llm_factory(latency_ms=400)
    write_fake_agents(data_dir, llm)
    api = api_factory(data_dir)
    api.deploy(fixture_plan("gold-investment-en"))
    api.deploy(fixture_plan("derivation-iter8"))
    cases = [("gold-investment-en", "bull"), ("gold-investment-en", "bear"), ("derivation-iter8", "fake")]
    runs = [api.start_run(plan_id, agent=agent)["run_id"] for plan_id, agent in cases]
    wait_for_requests(llm, 6)

    runner = api.server.process.pid
    workers = [int(pid) for pid in Path(f"/proc/{runner}/task/{runner}/children").read_text().split()]
    assert workers  # bare hypercorn serves from a spawned worker process
    api.server.process.kill()  # SIGKILL: no shutdown code runs at all
    api.server.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text() for pid in workers):
        assert time.monotonic() < deadline, "hypercorn's worker outlived its killed runner"
        time.sleep(0.05)
    time.sleep(0.6)  # let requests in flight at the fake LLM finish logging
    unfinished = [run_id for run_id, status in statuses_in_storage(data_dir).items() if status in ("running", "queued")]
    assert len(unfinished) >= 2  # killed in the middle of runs
    done_before = completed_llm_calls(data_dir, runs)
    requests_before = llm.count()
    assert len(done_before) >= 3

    restarted = api_factory(data_dir)
    for run_id in runs:
        run = restarted.wait_for(run_id, timeout=180)
        assert run["status"] == "completed", run
    asked_again = requested_after(llm, requests_before) & done_before
    assert asked_again == set(), f"{len(asked_again)} completed LLM steps were requested again"
    for run_id, (plan_id, agent) in zip(runs, cases):
        result = restarted.http.get(f"/api/runs/{run_id}/result").json()["final_concepts"]
        assert _normalized(result, data_dir) == _normalized(reference_result(restarted, plan_id, agent), data_dir)


def _normalized(final_concepts: list, data_dir: Path) -> str:
    """Results hold absolute paths of the run's own artifacts (derivation): compare without run ids."""
    text = json.dumps(final_concepts, sort_keys=True)
    return re.sub(re.escape(str(data_dir / "runs")) + r"/[0-9a-f-]{36}", "<RUN_DIR>", text)
