"""The runs API over real HTTP: lifecycle, results, listing, events (SSE and WebSocket), errors,
idempotency, the concurrency limit, cancel, resume and fork, human input and artifacts."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from api.conftest import (
    FINISHED,
    Api,
    ApiFactory,
    FakeLLM,
    example_plan,
    fixture_plan,
    write_agents,
)


def read_sse(api: Api, run_id: str, last_event_id: int | None = None, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every SSE message until the server ends the stream: [{id, event, data}]."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    messages: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with api.http.stream("GET", f"/api/runs/{run_id}/stream", headers=headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "data" in current:
                    messages.append(current)
                current = {}
            elif line.startswith((":", "retry:")):
                continue
            else:
                field, _, value = line.partition(": ")
                current[field] = json.loads(value) if field == "data" else value
    return messages


def events_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if "id" in m]


def test_run_lifecycle_result_listing_and_streams(api: Api, data_dir: Path) -> None:
    api.deploy(example_plan())
    run = api.start_run("idea-to-tagline", inputs={"{topic}": "%(houseplants)"}, agent="demo")
    assert run["status"] in ("queued", "running") and run["plan_version"] == "1"
    assert run["progress"] == {"completed_count": 0, "total_count": 3, "cycle_count": 0, "current_inference": None} or run["status"] == "running"
    done = api.wait_for(run["run_id"])
    assert done["status"] == "completed", done
    assert done["progress"]["completed_count"] == done["progress"]["total_count"] == 3
    assert done["usage"]["llm_calls"] == 3 and done["usage"]["input_tokens"] > 0
    assert done["completed_at"] and done["started_at"] and done["plan_hash"]

    result = api.http.get(f"/api/runs/{run['run_id']}/result").json()
    assert result["status"] == "completed" and result["run_id"] == run["run_id"]
    [tagline] = result["final_concepts"]
    assert tagline["name"] == "{tagline}" and tagline["has_value"] is True
    assert len(tagline["axes"]) == 1 and tagline["shape"] == [1]
    assert json.loads(tagline["value"]) == tagline["tensor"]
    assert "demo-answer-" in tagline["tensor"][0]
    # Different input, different answer; the same input, the same answer (deterministic demo agent).
    other = api.wait_for(api.start_run("idea-to-tagline", agent="demo")["run_id"])
    other_result = api.http.get(f"/api/runs/{other['run_id']}/result").json()
    assert other_result["final_concepts"][0]["tensor"] != tagline["tensor"]

    # Listing: newest first, filters, pagination with the total in a header.
    listed = api.http.get("/api/runs", params={"plan_id": "idea-to-tagline"})
    assert [r["run_id"] for r in listed.json()] == [other["run_id"], run["run_id"]]
    assert listed.headers["x-total-count"] == "2"
    page = api.http.get("/api/runs", params={"limit": 1, "offset": 1})
    assert [r["run_id"] for r in page.json()] == [run["run_id"]] and page.headers["x-total-count"] == "2"
    assert api.http.get("/api/runs", params={"status": "failed"}).json() == []
    assert api.http.get("/api/runs", params={"plan_id": "other"}).json() == []

    # SSE: a finished run replays its whole log, then the stream ends.
    messages = read_sse(api, run["run_id"])
    assert messages[0]["event"] == "connected" and "id" not in messages[0]
    events = events_of(messages)
    seqs = [int(m["id"]) for m in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    types = [m["event"] for m in events]
    assert types[0] == "run_started" and types[-1] == "run_completed"
    assert types.count("step_completed") == 3 and types.count("llm_call") == 3
    assert all(m["data"]["type"] == m["event"] and m["data"]["seq"] == int(m["id"]) for m in events)
    assert events[-1]["data"]["event"] == "run:completed"  # upstream's name, for its clients

    # Last-Event-ID resumes exactly after the given event.
    middle = seqs[len(seqs) // 2]
    resumed = events_of(read_sse(api, run["run_id"], last_event_id=middle))
    assert [int(m["id"]) for m in resumed] == [s for s in seqs if s > middle]
    assert resumed == [m for m in events if int(m["id"]) > middle]
    assert events_of(read_sse(api, run["run_id"], last_event_id=seqs[-1])) == []

    # The WebSocket carries the same events.
    ws_url = api.server.url.replace("http://", "ws://") + f"/ws/runs/{run['run_id']}"
    with connect(ws_url, open_timeout=10) as websocket:
        received = []
        while True:
            try:
                message = websocket.recv(timeout=10)
            except Exception:  # noqa: BLE001 - closed by the server after the replay
                break
            received.append(json.loads(message))
    assert received[0]["event"] == "connected"
    assert [m["seq"] for m in received[1:]] == seqs
    assert received[1:] == [m["data"] for m in events]

    assert api.http.get(f"/api/runs/{run['run_id']}/artifacts").json() == {"run_id": run["run_id"], "artifacts": []}


def test_live_stream_follows_a_running_run(api_factory: ApiFactory, data_dir: Path, fake_llm_factory) -> None:
    llm: FakeLLM = fake_llm_factory(latency_ms=150)
    write_agents(data_dir, llm)
    api = api_factory(data_dir)
    api.deploy(fixture_plan("gold-investment-en"))
    run = api.start_run("gold-investment-en", agent="fake")
    started = time.monotonic()
    messages = read_sse(api, run["run_id"])  # connects while the run is queued or running
    events = events_of(messages)
    assert events[-1]["event"] == "run_completed", [m["event"] for m in events]
    assert time.monotonic() - started > 0.5  # it really followed the run live
    assert sum(1 for m in events if m["event"] == "llm_call") == 12 == llm.count()
    assert api.run(run["run_id"])["status"] == "completed"


def test_client_mistakes(api: Api) -> None:
    api.deploy(example_plan())
    finished = api.wait_for(api.start_run("idea-to-tagline", agent="demo")["run_id"])
    run_id = finished["run_id"]
    cases: list[tuple[httpx.Response, int, str]] = [
        (api.http.post("/api/runs", content=b"{not json"), 400, "invalid_json"),
        (api.http.post("/api/runs", json=[1, 2]), 400, "invalid_json"),
        (api.http.post("/api/runs", json={}), 422, "invalid_field"),
        (api.http.post("/api/runs", json={"plan_id": "missing"}), 404, "plan_not_found"),
        (api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "version": "7"}), 404, "plan_not_found"),
        (api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "inputs": {"{nope}": 1}}), 422, "invalid_inputs"),
        (api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "inputs": [1]}), 422, "invalid_inputs"),
        (api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "agent": "nobody"}), 422, "unknown_agent"),
        (api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "agent": "gpt-4o"}), 422, "agent_unavailable"),
        (api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "max_cycles": 0}), 422, "invalid_max_cycles"),
        (api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "max_cycles": "9"}), 422, "invalid_max_cycles"),
        (api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "run_id": "../x"}), 422, "invalid_run_id"),
        (api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "run_id": run_id}), 409, "run_exists"),
        (api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "agent": "demo", "llm_model": "x"}), 422, "conflicting_fields"),
        (api.http.get("/api/runs/nope"), 404, "run_not_found"),
        (api.http.get("/api/runs/%2e%2e"), 404, "run_not_found"),
        (api.http.get("/api/runs/nope/result"), 404, "run_not_found"),
        (api.http.get("/api/runs/nope/stream"), 404, "run_not_found"),
        (api.http.get(f"/api/runs/{run_id}/stream", headers={"Last-Event-ID": "abc"}), 400, "invalid_last_event_id"),
        (api.http.get("/api/runs", params={"status": "sleeping"}), 422, "invalid_status"),
        (api.http.get("/api/runs", params={"limit": "lots"}), 422, "invalid_query"),
        (api.http.get("/api/runs", params={"limit": 0}), 422, "invalid_query"),
        (api.http.post(f"/api/runs/{run_id}/stop"), 409, "run_finished"),
        (api.http.post(f"/api/runs/{run_id}/resume"), 409, "not_resumable"),
        (api.http.post(f"/api/runs/{run_id}/resume", json={"fork": "maybe"}), 422, "invalid_field"),
        (api.http.post(f"/api/runs/{run_id}/inputs/q1", json={"answer": "x"}), 409, "run_finished"),
        (api.http.post(f"/api/runs/{run_id}/inputs/q1", json={"answer": 5}), 422, "invalid_answer"),
        (api.http.post(f"/api/runs/{run_id}/inputs/q1", content=b""), 400, "missing_body"),
        (api.http.get(f"/api/runs/{run_id}/artifacts/%2e%2e/run.db"), 404, "artifact_not_found"),
        (api.http.get(f"/api/runs/{run_id}/artifacts/%2e%2e%2f%2e%2e%2fserver.db"), 404, "artifact_not_found"),
        (api.http.get(f"/api/runs/{run_id}/artifacts/nothing.txt"), 404, "artifact_not_found"),
        (api.http.delete(f"/api/runs/{run_id}"), 405, "method_not_allowed"),
    ]
    for response, status, error in cases:
        assert response.status_code == status, (response.request.url, response.text)
        body = response.json()
        assert set(body) == {"error", "detail"} and body["error"] == error, (response.request.url, body)
    failed = api.start_run("idea-to-tagline", agent="demo", max_cycles=1)
    assert api.wait_for(failed["run_id"])["status"] == "failed"
    not_done = api.http.get(f"/api/runs/{failed['run_id']}/result")
    assert not_done.status_code == 409 and "failed" in not_done.json()["detail"]


def test_upstream_request_names_and_idempotency(api: Api) -> None:
    api.deploy(example_plan())
    upstream = api.start_run("idea-to-tagline", llm_model="demo", ground_inputs={"{topic}": "%(tea)"}, run_id="my-run-1")
    assert upstream["run_id"] == "my-run-1" and upstream["agent"] == "demo" and upstream["inputs"] == {"{topic}": "%(tea)"}

    headers = {"Idempotency-Key": "order-42"}
    first = api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "agent": "demo"}, headers=headers)
    second = api.http.post("/api/runs", json={"plan_id": "idea-to-tagline", "agent": "demo"}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["run_id"] == second.json()["run_id"]
    assert second.headers.get("idempotent-replayed") == "true"
    conflict = api.http.post("/api/runs", json={"plan_id": "other-plan"}, headers=headers)
    assert conflict.status_code == 409 and conflict.json()["error"] == "idempotency_key_reused"

    # Concurrent retries with one key still make one run.
    results: list[str] = []

    def post() -> None:
        response = httpx.post(api.server.url + "/api/runs", json={"plan_id": "idea-to-tagline", "agent": "demo"},
                              headers={"Idempotency-Key": "burst"}, timeout=30)
        results.append(response.json()["run_id"])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    total = int(api.http.get("/api/runs").headers["x-total-count"])
    assert total == 3


def test_concurrency_limit_and_fifo(api_factory: ApiFactory, data_dir: Path, fake_llm_factory) -> None:
    llm = fake_llm_factory(latency_ms=200)
    write_agents(data_dir, llm)
    api = api_factory(data_dir, NORMCODE_EXECUTION__MAX_CONCURRENT_RUNS="2")
    api.deploy(example_plan())
    run_ids = [api.start_run("idea-to-tagline", agent="fake", inputs={"{topic}": f"%(topic {i})"})["run_id"] for i in range(6)]
    most_running = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        running = api.http.get("/api/runs", params={"status": "running"}).json()  # one consistent read
        most_running = max(most_running, len(running))
        assert len(running) <= 2, running
        if all(api.run(run_id)["status"] in FINISHED for run_id in run_ids):
            break
        time.sleep(0.05)
    assert most_running == 2
    runs = [api.run(run_id) for run_id in run_ids]
    assert all(r["status"] == "completed" for r in runs)
    started = [r["started_at"] for r in runs]
    assert started == sorted(started)  # first queued, first started
    assert llm.count() == 18


def test_cancel_stops_before_the_next_step(api_factory: ApiFactory, data_dir: Path, fake_llm_factory) -> None:
    llm = fake_llm_factory(latency_ms=400)
    write_agents(data_dir, llm)
    api = api_factory(data_dir, NORMCODE_EXECUTION__MAX_CONCURRENT_RUNS="1")
    api.deploy(example_plan())
    running = api.start_run("idea-to-tagline", agent="fake")
    queued = api.start_run("idea-to-tagline", agent="fake")
    deadline = time.monotonic() + 30
    while llm.count() < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancelled = api.http.post(f"/api/runs/{queued['run_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"  # never started
    stopped = api.http.post(f"/api/runs/{running['run_id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["cancel_requested"] is True
    assert api.wait_for(running["run_id"])["status"] == "cancelled"
    time.sleep(1.0)
    assert llm.count() <= 2  # the step in flight at most; nothing after the cancel
    events = [m["event"] for m in events_of(read_sse(api, running["run_id"]))]
    assert events[-1] == "run_cancelled" and events.count("step_completed") <= 1
    # A cancelled run can continue from its checkpoint.
    resumed = api.http.post(f"/api/runs/{running['run_id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] in ("queued", "running")
    assert api.wait_for(running["run_id"])["status"] == "completed"


def test_resume_and_fork_after_a_failure(api_factory: ApiFactory, data_dir: Path, fake_llm_factory) -> None:
    llm = fake_llm_factory(latency_ms=300)
    write_agents(data_dir, llm)
    api = api_factory(data_dir)
    api.deploy(example_plan())
    run = api.start_run("idea-to-tagline", agent="fake")
    deadline = time.monotonic() + 30
    while api.run(run["run_id"])["usage"]["llm_calls"] < 1:  # the first reply is in the run's log
        assert time.monotonic() < deadline
        time.sleep(0.01)
    llm.stop()  # the provider goes away: the next step fails, and so does the run
    failed = api.wait_for(run["run_id"])
    assert failed["status"] == "failed" and failed["error"], failed
    first_prompt = llm.requests()[0]["hash"]

    llm = fake_llm_factory(port=llm.port)  # the provider is back
    fork = api.http.post(f"/api/runs/{run['run_id']}/resume", params={"fork": "true"})
    assert fork.status_code == 200, fork.text
    forked = fork.json()
    assert forked["is_fork"] is True and forked["run_id"] != run["run_id"]
    assert forked["parent_run_id"] == run["run_id"] and forked["resumed_from"] == {"run_id": run["run_id"]}
    assert api.wait_for(forked["run_id"])["status"] == "completed"
    assert api.run(run["run_id"])["status"] == "failed"  # the fork leaves its parent alone

    resumed = api.http.post(f"/api/runs/{run['run_id']}/resume", json={"fork": False})
    assert resumed.status_code == 200 and resumed.json()["run_id"] == run["run_id"]
    assert api.wait_for(run["run_id"])["status"] == "completed"
    hashes = [r["hash"] for r in llm.requests()]
    assert len(hashes) == 4 and first_prompt not in hashes  # the completed first step was never asked again
    results = [api.http.get(f"/api/runs/{r}/result").json()["final_concepts"] for r in (run["run_id"], forked["run_id"])]
    assert results[0] == results[1]


def test_human_input(api_factory: ApiFactory, data_dir: Path) -> None:
    api = api_factory(data_dir)
    api.deploy(fixture_plan("paradigm-exp-5.3-ask"))
    run = api.start_run("paradigm-exp-5.3-ask", agent="demo")
    deadline = time.monotonic() + 30
    questions: list[dict[str, Any]] = []
    while not questions:
        assert time.monotonic() < deadline, api.run(run["run_id"])
        listed = api.http.get(f"/api/runs/{run['run_id']}/inputs").json()
        questions = listed["questions"]
        time.sleep(0.05)
    assert api.wait_for(run["run_id"], ("waiting_input",), timeout=10)["status"] == "waiting_input"
    assert api.run(run["run_id"])["status"] == "waiting_input"  # it holds no execution slot meanwhile
    # A question survives a restart of the server.
    assert api.server.stop() == 0
    api = api_factory(data_dir)
    assert api.run(run["run_id"])["status"] == "waiting_input"
    questions = api.http.get(f"/api/runs/{run['run_id']}/inputs").json()["questions"]
    [question] = questions
    assert "enter any text" in question["question"]["prompt"]
    # The WebSocket of a run that waits stays open, replays the log and answers upstream's "ping".
    ws_url = api.server.url.replace("http://", "ws://") + f"/ws/runs/{run['run_id']}"
    with connect(ws_url, open_timeout=10) as websocket:
        greeting = json.loads(websocket.recv(timeout=10))
        assert greeting["event"] == "connected" and greeting["status"] == "waiting_input"
        replayed = [json.loads(websocket.recv(timeout=10)) for _ in range(3)]
        assert replayed[0]["type"] == "run_started" and "question_asked" in [m["type"] for m in replayed]
        assert [m["seq"] for m in replayed] == sorted(m["seq"] for m in replayed)
        websocket.send("ping")
        while (message := websocket.recv(timeout=10)) != "pong":
            assert json.loads(message)["run_id"] == run["run_id"]  # the rest of the replay
    with connect(api.server.url.replace("http://", "ws://") + "/ws/runs/no-such-run", open_timeout=10) as websocket:
        assert json.loads(websocket.recv(timeout=10))["error"] == "run_not_found"
    unknown = api.http.post(f"/api/runs/{run['run_id']}/inputs/not-a-question", json={"answer": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "question_not_found"
    answered = api.http.post(question["answer_path"], json={"answer": "Default response"})
    assert answered.status_code == 200, answered.text
    assert api.wait_for(run["run_id"])["status"] == "completed"
    assert api.http.get(f"/api/runs/{run['run_id']}/inputs").json()["questions"] == []
    result = api.http.get(f"/api/runs/{run['run_id']}/result").json()
    expected = json.loads((fixture_plan("paradigm-exp-5.3-ask") / "expected.json").read_text())["scenarios"][0]
    [concept] = [c for c in result["final_concepts"] if c["name"] == expected["final_concepts"][0]["name"]]
    assert concept["axes"] == expected["final_concepts"][0]["axes"]
    assert "Default response" in json.dumps(concept["tensor"])


def test_artifacts_are_listed_and_downloadable(api_factory: ApiFactory, data_dir: Path, fake_llm_factory) -> None:
    llm = fake_llm_factory()
    write_agents(data_dir, llm)
    api = api_factory(data_dir)
    api.deploy(fixture_plan("derivation-iter8"))
    run = api.wait_for(api.start_run("derivation-iter8", agent="fake")["run_id"], timeout=120)
    assert run["status"] == "completed", run
    artifacts = api.http.get(f"/api/runs/{run['run_id']}/artifacts").json()["artifacts"]
    paths = {a["path"] for a in artifacts}
    assert "provisions/ncds_output.ncds" in paths and "provisions/progress.txt" in paths
    for artifact in artifacts:
        download = api.http.get(f"/api/runs/{run['run_id']}/artifacts/{artifact['path']}")
        assert download.status_code == 200 and len(download.content) == artifact["size"]
        on_disk = data_dir / "runs" / run["run_id"] / "artifacts" / artifact["path"]
        assert download.content == on_disk.read_bytes()
    # The deployed plan is untouched: plans write into the run's artifacts only.
    source = fixture_plan("derivation-iter8") / "provisions"
    deployed = data_dir / "plans" / "derivation-iter8" / "1" / "provisions"
    for name in ("ncds_output.ncds", "progress.txt", "2_extraction.json"):
        assert (deployed / name).read_bytes() == (source / name).read_bytes()
    assert llm.count() == 13


def test_plan_delete_refused_while_runs_are_active(api_factory: ApiFactory, data_dir: Path, fake_llm_factory) -> None:
    llm = fake_llm_factory(latency_ms=500)
    write_agents(data_dir, llm)
    api = api_factory(data_dir)
    api.deploy(example_plan())
    run = api.start_run("idea-to-tagline", agent="fake")
    refused = api.http.delete("/api/plans/idea-to-tagline")
    assert refused.status_code == 409 and refused.json()["error"] == "plan_in_use"
    assert api.wait_for(run["run_id"])["status"] == "completed"
    assert api.http.delete("/api/plans/idea-to-tagline").status_code == 200
    # The finished run keeps its history and result, but cannot continue without its plan.
    assert api.run(run["run_id"])["plan_id"] == "idea-to-tagline"
    assert api.http.get(f"/api/runs/{run['run_id']}/result").status_code == 200
    gone = api.http.post(f"/api/runs/{run['run_id']}/resume", params={"fork": "true"})
    assert gone.status_code == 409 and gone.json()["error"] == "plan_gone"
