"""Live run events: Server-Sent Events at GET /api/runs/{id}/stream and WebSocket /ws/runs/{id}.

Both replay the run's event log from where the client left off (SSE `Last-Event-ID`, or
`?last_event_id=`) and then follow it live; for a finished run they end once the log is replayed.
Each event's JSON carries upstream's `event` name beside ours (`type`), so upstream's clients
(which read `event`) work unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from normcode_core.errors import ApiError
from normcode_core.routes.runs import run_json
from normcode_core.runs.events import LoggedEvent, RunLogReader
from normcode_core.runs.manager import RunManager, ready_run_manager
from normcode_core.storage.base import FINISHED_STATES

POLL_S = 1.0  # how often to look for events another replica writes (local runs wake readers at once)
KEEPALIVE_S = 15.0
BATCH_S = 0.01
RETRY_MS = 2000


async def follow_run(runs: RunManager, run_id: str, after: int) -> AsyncIterator[list[LoggedEvent] | None]:
    """The run's events with seq > after, live, in batches (one per read of the log); None now and
    then while idle (keepalive). Ends once the run is finished and its whole log has been sent."""
    reader = RunLogReader(runs.run_dir(run_id) / "run.db")
    last = after
    idle_since = time.monotonic()
    try:
        while True:
            signal = runs.signal(run_id)
            seen = signal.version  # noted before reading, so no append is missed in between
            events = reader.read_logged(last)  # a read in WAL mode never waits for the writer: cheap inline
            if events:
                last = events[-1].seq
                idle_since = time.monotonic()
                yield events
                continue
            record = await runs.get(run_id)
            if record.status in FINISHED_STATES:
                while events := reader.read_logged(last):
                    last = events[-1].seq
                    yield events
                return
            if time.monotonic() - idle_since >= KEEPALIVE_S:
                idle_since = time.monotonic()
                yield None
            await signal.wait(seen, POLL_S)
            if signal.version != seen:
                await asyncio.sleep(BATCH_S)  # let a burst of events land, then send them together
    finally:
        reader.close()


def _start_after(raw: str | None) -> int:
    if raw is None or raw.strip() == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_last_event_id", "Last-Event-ID must be an event sequence number") from None
    if value < 0:
        raise ApiError(400, "invalid_last_event_id", "Last-Event-ID must not be negative")
    return value


def _connected(record: Any, runs: RunManager) -> dict[str, Any]:
    run = run_json(record, runs)
    return {"event": "connected", "type": "connected", "run_id": run["run_id"], "status": run["status"],
            "progress": run["progress"]}


async def stream_run(request: Request) -> StreamingResponse:
    """GET /api/runs/{id}/stream: SSE with `id:` (the event's seq) and `event:` (its type)."""
    runs = ready_run_manager(request.app.state)
    run_id = request.path_params["run_id"]
    record = await runs.get(run_id)
    after = _start_after(request.headers.get("last-event-id") or request.query_params.get("last_event_id"))

    async def body() -> AsyncIterator[str]:
        # No `id:` on the greeting, so it does not move the client's Last-Event-ID.
        yield f"retry: {RETRY_MS}\nevent: connected\ndata: {json.dumps(_connected(record, runs))}\n\n"
        async for batch in follow_run(runs, run_id, after):
            if batch is None:
                yield ": keepalive\n\n"
                continue
            yield "".join(f"id: {event.seq}\nevent: {event.type}\ndata: {event.payload_json(run_id)}\n\n" for event in batch)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def run_websocket(websocket: WebSocket) -> None:
    """WS /ws/runs/{id}: the same events as JSON messages; answers upstream's "ping" with "pong"."""
    run_id = websocket.path_params["run_id"]
    await websocket.accept()
    try:
        runs = ready_run_manager(websocket.app.state)
        record = await runs.get(run_id)
        after = _start_after(websocket.query_params.get("last_event_id"))
    except ApiError as exc:
        await websocket.send_json({"event": "error", "error": exc.error, "detail": exc.detail})
        await websocket.close(code=1008)
        return
    listener = asyncio.create_task(_answer_pings(websocket))
    try:
        await websocket.send_json(_connected(record, runs))
        async for batch in follow_run(runs, run_id, after):
            if listener.done():
                return  # the client went away
            if batch is None:
                await websocket.send_text("ping")
                continue
            for event in batch:
                await websocket.send_text(event.payload_json(run_id))
        await websocket.close(code=1000)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener


async def _answer_pings(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive_text()
            if message == "ping":
                await websocket.send_text("pong")


routes: list[BaseRoute] = [
    Route("/api/runs/{run_id}/stream", stream_run, methods=["GET"]),
    WebSocketRoute("/ws/runs/{run_id}", run_websocket),
]
