"""Runs on PostgreSQL storage: the API end to end, and two replicas sharing one queue through the
database (claims are row-locked, so each run executes exactly once) with cancels across replicas."""

from __future__ import annotations

import json
import time
from pathlib import Path

from api.conftest import FINISHED, ApiFactory, example_plan, fixture_plan, write_agents


def started_runs(lines: list[str]) -> list[str]:
    started = []
    for line in lines:
        if '"run_started"' in line and '"normcode.runs"' in line:
            started.append(json.loads(line)["run_id"])
    return started


def test_runs_on_postgresql_shared_by_two_replicas(
    api_factory: ApiFactory, data_dir: Path, fake_llm_factory, postgres_url: str
) -> None:
    llm = fake_llm_factory(latency_ms=150)
    slow = fake_llm_factory(latency_ms=1500)
    write_agents(data_dir, llm)
    write_agents(data_dir, slow, name="slow", add=True)
    shared = {"NORMCODE_STORAGE__URL": postgres_url, "NORMCODE_EXECUTION__MAX_CONCURRENT_RUNS": "1"}
    first = api_factory(data_dir, NORMCODE_EXECUTION__NODE_ID="replica-a", **shared)
    second = api_factory(data_dir, NORMCODE_EXECUTION__NODE_ID="replica-b", **shared)
    assert not (data_dir / "server.db").exists()  # really PostgreSQL

    first.deploy(example_plan())
    second.deploy(fixture_plan("add-combination"))
    assert {p["id"] for p in second.http.get("/api/plans").json()} == {"idea-to-tagline", "add-combination"}

    run_ids = [
        (first if i % 2 else second).start_run("idea-to-tagline", agent="fake", inputs={"{topic}": f"%(t{i})"})["run_id"]
        for i in range(8)
    ]
    for run_id in run_ids:
        run = first.wait_for(run_id, timeout=120)
        assert run["status"] == "completed", run
    by_first, by_second = started_runs(first.server.stdout), started_runs(second.server.stdout)
    assert sorted(by_first + by_second) == sorted(run_ids)  # each run executed exactly once
    assert by_first and by_second  # and both replicas took work
    assert llm.count() == 8 * 3

    result = second.http.get(f"/api/runs/{run_ids[0]}/result").json()
    assert result["final_concepts"][0]["name"] == "{tagline}"
    events = second.http.get("/api/runs", params={"status": "completed"})
    assert events.headers["x-total-count"] == "8"
    no_llm = second.wait_for(second.start_run("add-combination", agent="fake")["run_id"])
    assert no_llm["status"] == "completed", no_llm

    # Cancelling through a replica that does not execute the run: the owner stops it within a second.
    run = first.start_run("idea-to-tagline", agent="slow")
    deadline = time.monotonic() + 30
    while run["run_id"] not in started_runs(first.server.stdout) + started_runs(second.server.stdout):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    owner, other = (first, second) if run["run_id"] in started_runs(first.server.stdout) else (second, first)
    cancelled = other.http.post(f"/api/runs/{run['run_id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert other.wait_for(run["run_id"], FINISHED)["status"] == "cancelled"
    time.sleep(4)
    assert slow.count() <= 2  # the step in flight (1.5 s each), not the third one
    assert owner.run(run["run_id"])["status"] == "cancelled"
    assert any('"run_finished"' in line and run["run_id"] in line for line in owner.server.stdout)
