"""No run is lost when the server stops: SIGTERM interrupts runs gracefully and the next start resumes
them; after kill -9 every run still finishes with the same result, and no LLM step that had
completed is requested again (requests counted at the fake LLM server)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

from api.conftest import (
    Api,
    ApiFactory,
    FakeLLM,
    example_plan,
    fixture_plan,
    write_agents,
)

REPLY_TOKEN = re.compile(r"fake-thinking-([0-9a-f]{8})")


def completed_llm_prompts(data_dir: Path, run_ids: list[str]) -> set[str]:
    """hash[:8] of the prompt of every LLM call recorded as completed in the runs' checkpoints."""
    done: set[str] = set()
    for run_id in run_ids:
        run_db = data_dir / "runs" / run_id / "run.db"
        if not run_db.exists():
            continue
        db = sqlite3.connect(run_db)  # the server is gone: a normal connection recovers the WAL
        try:
            for (data,) in db.execute("SELECT data FROM events WHERE type = 'llm_call'"):
                match = REPLY_TOKEN.search(json.loads(data)["response"]["text"])
                assert match, data
                done.add(match.group(1))
        finally:
            db.close()
    return done


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


def reference_results(api: Api, plans: list[str]) -> dict[str, list]:
    """Final concepts of an uninterrupted run of each plan on the same server."""
    results = {}
    for plan_id in plans:
        run = api.wait_for(api.start_run(plan_id, agent="fake")["run_id"], timeout=120)
        assert run["status"] == "completed", run
        results[plan_id] = api.http.get(f"/api/runs/{run['run_id']}/result").json()["final_concepts"]
    return results


def test_sigterm_interrupts_gracefully_and_the_next_start_resumes(
    api_factory: ApiFactory, data_dir: Path, fake_llm_factory
) -> None:
    llm = fake_llm_factory(latency_ms=400)
    write_agents(data_dir, llm)
    env = {"NORMCODE_EXECUTION__SHUTDOWN_GRACE_S": "3"}
    api = api_factory(data_dir, **env)
    api.deploy(fixture_plan("gold-investment-en"))
    api.deploy(example_plan())
    runs = [api.start_run("gold-investment-en", agent="fake")["run_id"], api.start_run("idea-to-tagline", agent="fake")["run_id"]]
    wait_for_requests(llm, 3)

    stopping = time.monotonic()
    assert api.server.stop(timeout=30) == 0  # SIGTERM
    assert time.monotonic() - stopping < 3 + 5
    assert any('"runs_stopped"' in line for line in api.server.stdout)
    assert statuses_in_storage(data_dir) == {run_id: "interrupted" for run_id in runs}
    done_before = completed_llm_prompts(data_dir, runs)
    requests_before = llm.count()
    assert done_before  # some steps had completed

    restarted = api_factory(data_dir, **env)  # waits for /ready: reconciliation is done
    for run_id in runs:
        assert restarted.wait_for(run_id, timeout=120)["status"] == "completed"
    asked_again = {r["hash"][:8] for r in llm.requests()[requests_before:]} & done_before
    assert asked_again == set()
    assert llm.count() <= 12 + 3 + 2  # every call once, plus at most the ones abandoned in flight
    expected = reference_results(restarted, ["gold-investment-en", "idea-to-tagline"])
    for run_id, plan_id in zip(runs, ["gold-investment-en", "idea-to-tagline"]):
        assert restarted.http.get(f"/api/runs/{run_id}/result").json()["final_concepts"] == expected[plan_id]


def test_kill_9_then_restart_repeats_no_completed_llm_step(
    api_factory: ApiFactory, data_dir: Path, fake_llm_factory
) -> None:
    llm = fake_llm_factory(latency_ms=250)
    write_agents(data_dir, llm)
    api = api_factory(data_dir)
    api.deploy(fixture_plan("gold-investment-en"))
    api.deploy(fixture_plan("derivation-iter8"))
    plans = ["gold-investment-en", "gold-investment-en", "derivation-iter8"]
    runs = [api.start_run(plan_id, agent="fake")["run_id"] for plan_id in plans]
    wait_for_requests(llm, 8)

    api.server.process.kill()  # SIGKILL: no shutdown code runs at all
    api.server.process.wait(timeout=10)
    time.sleep(0.6)  # let requests in flight at the fake LLM finish logging
    assert set(statuses_in_storage(data_dir).values()) <= {"running", "queued"}
    done_before = completed_llm_prompts(data_dir, runs)
    requests_before = llm.count()
    assert len(done_before) >= 3

    restarted = api_factory(data_dir)
    for run_id in runs:
        run = restarted.wait_for(run_id, timeout=180)
        assert run["status"] == "completed", run
    asked_again = {r["hash"][:8] for r in llm.requests()[requests_before:]} & done_before
    assert asked_again == set(), f"{len(asked_again)} completed LLM steps were requested again"
    expected = reference_results(restarted, ["gold-investment-en", "derivation-iter8"])
    for run_id, plan_id in zip(runs, plans):
        result = restarted.http.get(f"/api/runs/{run_id}/result").json()["final_concepts"]
        assert _normalized(result, data_dir) == _normalized(expected[plan_id], data_dir)


def _normalized(final_concepts: list, data_dir: Path) -> str:
    """Results hold absolute paths of the run's own artifacts (derivation): compare without run ids."""
    text = json.dumps(final_concepts, sort_keys=True)
    return re.sub(re.escape(str(data_dir / "runs")) + r"/[0-9a-f-]{36}", "<RUN_DIR>", text)
