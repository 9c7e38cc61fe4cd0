"""A run's events as clients see them: read from its run.db, woken by the live run when it appends.

The event log in `runs/<run_id>/run.db` is the single source (the engine writes it); the live
run in this process only signals "there is something new", so a stream works the same for a run
executing here, on another replica, or finished long ago.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from normcode_core.engine.checkpoint import Event

# Upstream's deployment server named its stream events differently; its clients read `event`.
UPSTREAM_EVENT_NAMES = {
    "run_started": "run:started",
    "step_started": "inference:started",
    "step_completed": "inference:completed",
    "step_failed": "inference:failed",
    "step_skipped": "inference:skipped",
    "run_completed": "run:completed",
    "run_failed": "run:failed",
    "run_cancelled": "execution:stopped",
}
MAX_EVENTS_PER_READ = 1000


@dataclass(frozen=True)
class LoggedEvent:
    """One row of the event log with its data still as the JSON text the engine wrote."""

    seq: int
    ts: float
    type: str
    data_json: str

    def payload_json(self, run_id: str) -> str:
        """The JSON sent for this event on the SSE stream and the WebSocket:
        {event (upstream's name), type, seq, ts, run_id, data}. Built around the stored data text,
        which is never parsed and re-encoded (LLM events carry whole prompts)."""
        head = json.dumps(
            {
                "event": UPSTREAM_EVENT_NAMES.get(self.type, self.type),
                "type": self.type,
                "seq": self.seq,
                "ts": self.ts,
                "run_id": run_id,
            },
            ensure_ascii=False,
        )
        return f'{head[:-1]}, "data": {self.data_json}}}'


def read_run_events(
    run_db: Path, after: int = 0, *, types: tuple[str, ...] | None = None, limit: int | None = MAX_EVENTS_PER_READ
) -> list[Event]:
    """Events with seq > after, oldest first, at most `limit` (empty while the run has no log yet)."""
    reader = RunLogReader(run_db)
    try:
        return reader.read(after, types=types, limit=limit)
    finally:
        reader.close()


class RunLogReader:
    """Reads one run's event log through one read-only connection, kept open between reads (a
    stream reads many times). The engine keeps writing the same file meanwhile (WAL)."""

    def __init__(self, run_db: Path) -> None:
        self.run_db = run_db
        self._db: sqlite3.Connection | None = None

    def read(self, after: int = 0, *, types: tuple[str, ...] | None = None, limit: int | None = MAX_EVENTS_PER_READ) -> list[Event]:
        return [
            Event(row.seq, row.ts, row.type, json.loads(row.data_json))
            for row in self.read_logged(after, types=types, limit=limit)
        ]

    def read_logged(
        self, after: int = 0, *, types: tuple[str, ...] | None = None, limit: int | None = MAX_EVENTS_PER_READ
    ) -> list[LoggedEvent]:
        query = "SELECT seq, ts, type, data FROM events WHERE seq > ?"
        params: list[Any] = [after]
        if types:
            query += f" AND type IN ({','.join('?' * len(types))})"
            params += list(types)
        query += " ORDER BY seq"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        try:
            if self._db is None:
                if not self.run_db.is_file():
                    return []
                self._db = sqlite3.connect(f"file:{self.run_db}?mode=ro", uri=True, timeout=5, check_same_thread=False)
            rows = self._db.execute(query, params).fetchall()
        except sqlite3.OperationalError:
            self.close()  # the engine is creating the file right now (no table yet): try again later
            return []
        return [LoggedEvent(int(seq), float(ts), kind, data) for seq, ts, kind, data in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class EventSignal:
    """Wakes readers of one run when its live execution appends events (from any thread).

    `version` counts changes; a reader notes it, reads the log, then waits for a newer version.
    The server loop is only woken when someone waits, so a run nobody watches costs nothing."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.version = 0
        self._loop = loop
        self._waiters = 0
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """Something changed (call from the loop the readers wait on, or from any thread when it was given)."""
        self.version += 1
        if not self._waiters:
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake)
        else:
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seen_version: int, timeout: float) -> None:
        """Return once the version differs from `seen_version`, or after `timeout` seconds."""
        self._waiters += 1
        try:
            if self.version != seen_version:
                return
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters -= 1
