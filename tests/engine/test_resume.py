"""Checkpoints and resume: a run killed at any moment resumes without repeating completed work.

The kill -9 tests run `normcode-server plan run --run-dir` as a real process against the fake
LLM server and count the requests it received. The cut tests emulate a crash after every
single event of a finished run (the log is truncated there) and resume from that point.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest

from normcode_core.agents.types import LLMRequest, LLMResponse
from normcode_core.engine import execution as execution_module
from normcode_core.engine import load_plan
from normcode_core.engine.checkpoint import RunLog
from normcode_core.engine.execution import Execution

from .conftest import FIXTURES, FakeLLM, start_fake_llm
from .plans import copy_fixture, write_llm_loop_plan

sys.path.insert(0, str(FIXTURES))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # fixture code, not ours
    import fake_llm as fake

CLI = Path(sys.executable).parent / "normcode-server"


def fake_complete(model: str = "nc-fake-v1"):
    calls: list[str] = []

    async def complete(request: LLMRequest) -> LLMResponse:
        text, info = fake.reply_for(model, list(request.messages))
        calls.append(info["hash"])
        return LLMResponse(text=text, model=model)

    return complete, calls


def recorded_prompt_hashes(run_db: Path) -> list[str]:
    log = RunLog(run_db)
    try:
        events = log.events(types=("llm_call",))
    finally:
        log.close()
    return [fake.reply_for("nc-fake-v1", e.data["request"]["messages"])[1]["hash"] for e in events]


def run_cli(plan: Path, run_dir: Path, server: FakeLLM, out: Path, model: str = "nc-fake-v1") -> subprocess.Popen:
    return subprocess.Popen(
        [str(CLI), "plan", "run", str(plan), "--llm-base-url", server.base_url, "--model", model,
         "--run-dir", str(run_dir), "--out", str(out), "--input-answer", "Default response", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("kill_after", [1, 4, 7])
def test_kill_9_mid_plan_then_resume_repeats_no_completed_llm_call(tmp_path: Path, kill_after: int) -> None:
    server = start_fake_llm(tmp_path / "llm", latency_ms=150)
    try:
        plan = write_llm_loop_plan(tmp_path / "plan", 10)
        run_dir = tmp_path / "run"
        first = run_cli(plan, run_dir, server, tmp_path / "first.json")
        deadline = time.monotonic() + 60
        while len(server.requests()) < kill_after:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        recorded = recorded_prompt_hashes(run_dir / "run.db")
        assert len(recorded) >= kill_after - 1  # at most the one in flight was lost

        second = run_cli(plan, run_dir, server, tmp_path / "second.json")
        _stdout, stderr = second.communicate(timeout=120)
        assert second.returncode == 0, stderr.decode()
        result = json.loads((tmp_path / "second.json").read_text())
        assert result["status"] == "completed"
        counts = Counter(r["hash"] for r in server.requests())
        for digest in recorded:
            assert counts[digest] == 1, "a completed LLM call was requested again"
        assert sum(counts.values()) <= 10 + 1  # 10 steps; only an in-flight call may repeat
        assert len(counts) == 10, (counts, recorded, [r["prompt"][-80:] for r in server.requests()])
        assert result["llm_calls"] == 10
    finally:
        server.process.kill()
        server.process.wait()

    # The resumed run's values equal an uninterrupted run's.
    clean_plan = write_llm_loop_plan(tmp_path / "clean", 10)
    complete, _ = fake_complete()
    import asyncio

    clean = asyncio.run(Execution(load_plan(clean_plan), tmp_path / "clean-run", llm=complete).run())
    assert result["final_concepts"] == clean.final_concepts


def _event_count(run_db: Path) -> int:
    with sqlite3.connect(run_db) as db:
        return db.execute("SELECT MAX(seq) FROM events").fetchone()[0]


def _cut_after(run_db: Path, seq: int, keep_snapshot: bool) -> None:
    with sqlite3.connect(run_db) as db:
        db.execute("DELETE FROM events WHERE seq > ?", (seq,))
        if keep_snapshot:
            db.execute("DELETE FROM snapshots WHERE seq > ?", (seq,))
        else:
            db.execute("DELETE FROM snapshots")


@pytest.mark.parametrize("snapshots", [False, True], ids=["replay-from-start", "from-snapshots"])
async def test_crash_after_any_event_resumes_to_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshots: bool) -> None:
    if snapshots:
        monkeypatch.setattr(execution_module, "SNAPSHOT_MIN_BYTES", 0)
    plan_dir = write_llm_loop_plan(tmp_path / "plan", 4)
    complete, calls = fake_complete()
    reference_run = tmp_path / "reference"
    baseline = await Execution(load_plan(plan_dir), reference_run, llm=complete, checkpoint_frequency=1).run()
    assert baseline.status == "completed"
    baseline_calls = len(calls)
    total = _event_count(reference_run / "run.db")
    for seq in range(1, total + 1):
        run_dir = tmp_path / f"cut-{seq}"
        shutil.copytree(reference_run, run_dir)
        _cut_after(run_dir / "run.db", seq, keep_snapshot=snapshots)
        recorded = len(recorded_prompt_hashes(run_dir / "run.db"))
        before = len(calls)
        outcome = await Execution(load_plan(plan_dir), run_dir, llm=complete, checkpoint_frequency=1).run()
        assert outcome.status == "completed", (seq, outcome.error)
        assert outcome.final_concepts == baseline.final_concepts, seq
        assert outcome.cycles == baseline.cycles, seq
        assert len(calls) - before == baseline_calls - recorded, seq  # only unrecorded calls are made
        assert outcome.llm_calls == baseline.llm_calls


async def test_resuming_a_completed_run_calls_nothing(tmp_path: Path) -> None:
    plan_dir = copy_fixture("gold-investment-en", tmp_path / "plan")
    complete, calls = fake_complete("nc-fake-gold-bull-v1")
    first = await Execution(load_plan(plan_dir), tmp_path / "run", llm=complete).run()
    made = len(calls)
    again = await Execution(load_plan(plan_dir), tmp_path / "run", llm=complete).run()
    assert again.status == "completed"
    assert len(calls) == made
    assert again.final_concepts == first.final_concepts


async def test_run_db_from_another_plan_is_refused(tmp_path: Path) -> None:
    complete, _ = fake_complete()
    await Execution(load_plan(write_llm_loop_plan(tmp_path / "a", 2)), tmp_path / "run", llm=complete).run()
    with pytest.raises(RuntimeError, match="different plan"):
        await Execution(load_plan(write_llm_loop_plan(tmp_path / "b", 3)), tmp_path / "run", llm=complete).run()


async def test_waiting_for_input_then_answered_after_a_restart(tmp_path: Path) -> None:
    plan_dir = copy_fixture("paradigm-exp-5.3-ask", tmp_path / "plan")
    first = Execution(load_plan(plan_dir), tmp_path / "run")
    outcome = await first.run()
    assert outcome.status == "waiting_input"
    assert outcome.final_concepts[0]["tensor"] is None
    [question] = outcome.open_questions
    assert question["flow_index"] == "1"

    # A new Execution (as after a server restart) sees the question and takes the answer.
    second = Execution(load_plan(plan_dir), tmp_path / "run")
    assert [q["id"] for q in second.open_questions()] == [question["id"]]
    with pytest.raises(KeyError):
        second.answer("no-such-question", "x")
    second.answer(question["id"], "forty-two")
    assert second.open_questions() == []
    done = await second.run()
    assert done.status == "completed", done.error
    assert [s.rpartition("(")[2] for s in done.final_concepts[0]["tensor"]] == ["forty-two)"]
    log = RunLog(tmp_path / "run" / "run.db")
    try:
        types = [e.type for e in log.events()]
    finally:
        log.close()
    assert types.count("question_asked") == 1
    assert types.count("question_answered") == 1
    assert "run_waiting_input" in types and types[-1] == "run_completed"
    assert done.steps == 1


async def test_the_same_execution_continues_after_an_answer(tmp_path: Path) -> None:
    execution = Execution(load_plan(copy_fixture("paradigm-exp-5.4-ask-filepath", tmp_path / "plan")), tmp_path / "run")
    waiting = await execution.run()
    assert waiting.status == "waiting_input" and waiting.steps == 0
    execution.answer(waiting.open_questions[0]["id"], "data/in.txt")
    done = await execution.run()
    assert done.status == "completed" and done.steps == 1
    assert done.final_concepts[0]["tensor"][0].startswith("%{file_location}")
    assert done.final_concepts[0]["tensor"][0].endswith("(data/in.txt)")


def test_run_db_stays_small_per_step(tmp_path: Path, synthetic_plans: Path) -> None:
    import asyncio

    for name in ("chainflat-12", "loop-12", "fanin-12"):
        plan = load_plan(synthetic_plans / name)
        run_dir = tmp_path / name
        outcome = asyncio.run(Execution(plan, run_dir).run())
        assert outcome.status == "completed", outcome.error
        size = sum(p.stat().st_size for p in run_dir.iterdir() if p.name.startswith("run.db"))
        # SQLite's page granularity dominates tiny runs: compare the logged bytes per step too.
        with sqlite3.connect(run_dir / "run.db") as db:
            logged = db.execute("SELECT SUM(LENGTH(data)) FROM events").fetchone()[0]
        assert logged / outcome.steps < 1024, (name, logged / outcome.steps)
        assert size < 200_000, (name, size)
