"""run.db: one SQLite file per run holding an append-only event log and state snapshots.

Events are `(seq, ts, type, data-json)` rows. Step completions carry what is needed to
re-apply the step (agent results; syntactic steps are re-derived on replay), LLM calls carry
the request digest and the response, so a resumed run finds every completed call here instead
of asking the model again. Snapshots (`snapshots` table, zlib-compressed JSON) let a resume
start from a recent state instead of replaying from the beginning; they are written at most
every `checkpoint_frequency` steps and only when the log since the last one outweighs it, so
the file grows linearly with the run.

WAL mode, `synchronous=NORMAL`, commits batched: LLM responses and human answers are committed
immediately (they are the expensive things to lose), other events at least every few
milliseconds and whenever the run waits.
"""

from __future__ import annotations

import json
import sqlite3
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

COMMIT_INTERVAL_S = 0.02
COMMIT_BATCH = 512


@dataclass(frozen=True)
class Event:
    seq: int
    ts: float
    type: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "type": self.type, "data": self.data}


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=repr)


class RunLog:
    """The event log and snapshots of one run (one connection, used from one thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._buffer: list[tuple[int, float, str, str]] = []
        self._meta: dict[str, str] = {}
        self._last_commit = time.monotonic()
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        self.last_seq: int = int(row[0])
        self.bytes_since_snapshot = 0

    # ------------------------------------------------------------------ writing

    def append(self, type: str, data: dict[str, Any], durable: bool = False) -> Event:
        """Add an event; it is written with the next batch, or now when `durable`."""
        text = _dumps(data)
        ts = time.time()
        self.last_seq += 1
        self._buffer.append((self.last_seq, ts, type, text))
        self.bytes_since_snapshot += len(text) + 24
        if durable or len(self._buffer) >= COMMIT_BATCH or time.monotonic() - self._last_commit > COMMIT_INTERVAL_S:
            self.flush()
        return Event(self.last_seq, ts, type, data)

    def flush(self) -> None:
        """Write buffered events (and metadata) in one transaction."""
        if self._buffer or self._meta:
            self._db.execute("BEGIN")
            try:
                if self._buffer:
                    self._db.executemany("INSERT INTO events (seq, ts, type, data) VALUES (?, ?, ?, ?)", self._buffer)
                if self._meta:
                    self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(self._meta.items()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._buffer.clear()
            self._meta.clear()
        self._last_commit = time.monotonic()

    def write_snapshot(self, state: dict[str, Any]) -> int:
        """Store a snapshot covering every event so far; returns its uncompressed size."""
        self.flush()
        text = _dumps(state).encode("utf-8")
        blob = zlib.compress(text, 1)
        self._db.execute("BEGIN")
        # Only the newest snapshot is ever needed: keep the file small.
        self._db.execute("DELETE FROM snapshots")
        self._db.execute("INSERT INTO snapshots (seq, ts, data) VALUES (?, ?, ?)", (self.last_seq, time.time(), blob))
        self._db.execute("COMMIT")
        self.bytes_since_snapshot = 0
        return len(text)

    def set_meta(self, key: str, value: Any) -> None:
        self._meta[key] = _dumps(value)

    # ------------------------------------------------------------------ reading

    def get_meta(self, key: str) -> Any:
        if key in self._meta:
            return json.loads(self._meta[key])
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def latest_snapshot(self) -> tuple[int, dict[str, Any]] | None:
        row = self._db.execute("SELECT seq, data FROM snapshots ORDER BY seq DESC LIMIT 1").fetchone()
        if not row:
            return None
        return int(row[0]), json.loads(zlib.decompress(row[1]).decode("utf-8"))

    def events(self, after: int = 0, types: tuple[str, ...] | None = None) -> list[Event]:
        self.flush()
        if types:
            marks = ",".join("?" * len(types))
            rows = self._db.execute(
                f"SELECT seq, ts, type, data FROM events WHERE seq > ? AND type IN ({marks}) ORDER BY seq",
                (after, *types),
            )
        else:
            rows = self._db.execute("SELECT seq, ts, type, data FROM events WHERE seq > ? ORDER BY seq", (after,))
        return [Event(int(s), float(ts), t, json.loads(d)) for s, ts, t, d in rows]

    def count(self, type: str) -> int:
        self.flush()
        return int(self._db.execute("SELECT COUNT(*) FROM events WHERE type = ?", (type,)).fetchone()[0])

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._db.close()


def read_events(path: str | Path, after: int = 0) -> list[Event]:
    """Events of a run.db (for readers such as the runs API), without keeping it open."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT seq, ts, type, data FROM events WHERE seq > ? ORDER BY seq", (after,))
        return [Event(int(s), float(ts), t, json.loads(d)) for s, ts, t, d in rows]
    finally:
        db.close()
