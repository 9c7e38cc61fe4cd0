"""run.db: batched appends, durable events, the newest snapshot only, readers alongside."""

from __future__ import annotations

from pathlib import Path

from normcode_core.engine.checkpoint import RunLog, read_events


def test_events_are_batched_unless_durable_and_readable_by_others(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    log = RunLog(db)
    try:
        log.append("step_completed", {"i": 0})
        assert read_events(db) == []  # still in the batch
        log.append("llm_call", {"digest": "d"}, durable=True)
        assert [e.type for e in read_events(db)] == ["step_completed", "llm_call"]
        assert [e.seq for e in read_events(db, after=1)] == [2]
        log.set_meta("plan_fingerprint", "abc")
        assert log.get_meta("plan_fingerprint") == "abc"
    finally:
        log.close()
    reopened = RunLog(db)
    try:
        assert reopened.last_seq == 2 and reopened.get_meta("plan_fingerprint") == "abc"
        assert reopened.append("run_started", {}).seq == 3
    finally:
        reopened.close()


def test_only_the_newest_snapshot_is_kept(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "run.db")
    try:
        log.append("a", {})
        log.write_snapshot({"n": 1})
        log.append("b", {})
        size = log.write_snapshot({"n": 2, "pad": "x" * 1000})
        assert size > 1000
        assert log.latest_snapshot() == (2, {"n": 2, "pad": "x" * 1000})
        assert log.bytes_since_snapshot == 0
        assert log._db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 1
    finally:
        log.close()
