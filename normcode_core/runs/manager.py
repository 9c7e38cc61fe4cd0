"""RunManager: the queue, states, concurrency limit and lifecycle of runs in this server process.

Runs are rows in storage; a run's checkpoint and files live in `<runs_dir>/<run_id>/` (run.db,
artifacts/, result.json). Work is shared through storage only: a process claims the oldest
queued run (`claim_next_queued`), holds it under a lease it renews, and every state change is
a compare-and-set (`update_run_if`), so several replicas on one PostgreSQL can serve the same
queue, and a replica that dies leaves runs another one picks up once their lease has expired.

States: queued -> running -> completed | failed | cancelled | waiting_input | interrupted.
`waiting_input` holds no execution slot; answering requeues it. `interrupted` (shutdown, crash)
resumes from its checkpoint on the next start when `execution.resume_on_start` is set.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from normcode_core.engine.checkpoint import Event, RunLog
from normcode_core.engine.plan import Plan, PlanInvalid, load_plan
from normcode_core.engine.sandbox.spares import SPARES
from normcode_core.errors import ApiError
from normcode_core.logging import get_logger
from normcode_core.plans.package import PackageLimits, PackageRejected
from normcode_core.plans.registry import PlanNotFound, PlanRegistry
from normcode_core.runs.engine_thread import EngineThread
from normcode_core.runs.events import EventSignal, read_run_events
from normcode_core.storage.base import (
    FINISHED_STATES,
    IdempotencyKeyExists,
    RunRecord,
    Storage,
    utcnow,
)

logger = get_logger("normcode.runs")

SAFE_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ACTIVE_STATES = ("queued", "running", "waiting_input")
RESUMABLE_STATES = ("interrupted", "failed", "cancelled")
LEASE_S = 15.0
DISPATCH_POLL_S = 1.0
WATCH_S = 1.0
PLAN_CACHE_SIZE = 32
RECORD_TTL_S = 0.5
LATEST_TTL_S = 1.0
RECENT_RECORDS = 10_000
MAX_CYCLES_LIMIT = 1_000_000
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "plans"
RESULT_FILE = "result.json"
QUESTION_EVENTS = ("question_asked", "question_answered")


@dataclass
class RunRequest:
    plan_id: str
    version: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    agent: str | None = None
    max_cycles: int | None = None
    run_id: str | None = None
    idempotency_key: str | None = None


@dataclass
class LiveRun:
    """What this process knows about a run it is executing."""

    run_id: str
    signal: EventSignal = field(default_factory=EventSignal)
    execution: Any = None  # lives on the engine thread: call into it only through that thread
    engine: EngineThread | None = None
    task: asyncio.Task[None] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=lambda: {"llm_calls": 0, "input_tokens": 0, "output_tokens": 0})
    cancel_requested: bool = False
    interrupt_requested: bool = False
    completed: set[str] = field(default_factory=set)  # flow indices, for progress.completed_count

    def on_event(self, event: Event) -> None:
        """Keep upstream's `progress` and the token usage current (the engine calls this per event)."""
        data = event.data or {}
        progress = self.progress
        if event.type == "step_started":
            progress["current_inference"] = data.get("flow_index")
        elif event.type == "step_completed" and data.get("status", "completed") == "completed" or event.type == "step_skipped":
            self.completed.add(str(data.get("flow_index")))
            progress["completed_count"] = len(self.completed)
        if isinstance(data.get("cycle"), int):
            progress["cycle_count"] = max(progress.get("cycle_count", 0), data["cycle"])
        if event.type == "llm_call":
            response = data.get("response") if isinstance(data.get("response"), dict) else {}
            self.usage["llm_calls"] += 1
            self.usage["input_tokens"] += int(response.get("input_tokens") or 0)
            self.usage["output_tokens"] += int(response.get("output_tokens") or 0)
        self.signal.notify()

    def call_execution(self, function: Any) -> None:
        """Call `function(execution)` on the engine thread (fire and forget)."""
        execution, engine = self.execution, self.engine
        if execution is not None and engine is not None:
            engine.call_soon(function, execution)

    def executing(self) -> bool:
        return self.task is not None and not self.task.done()


class RunManager:
    def __init__(self, settings: Any, storage: Storage, agents: Any, plugin_manager: Any = None) -> None:
        self.settings = settings
        self.storage = storage
        self.agents = agents
        self.plugin_manager = plugin_manager
        self.runs_dir = Path(settings.storage.runs_dir).resolve()
        self.plans = PlanRegistry(
            Path(settings.storage.plans_dir), storage, PackageLimits.from_settings(settings), self._validate_plan
        )
        self.node_id = str(settings.get("execution.node_id") or socket.gethostname())
        # Unique per process incarnation: "<node>/<pid>/<boot>" (see _is_orphaned).
        self.owner = f"{self.node_id}/{os.getpid()}/{uuid.uuid4().hex[:12]}"
        self.max_concurrent = int(settings.execution.max_concurrent_runs)
        self.resume_on_start = bool(settings.get("execution.resume_on_start", True))
        self.reconciled = False
        self.accepting = False
        self._live: dict[str, LiveRun] = {}
        self._signals: dict[str, EventSignal] = {}
        self._recent: OrderedDict[str, tuple[float, RunRecord]] = OrderedDict()
        self._plans: OrderedDict[tuple[str, str], tuple[Plan, str]] = OrderedDict()
        self._plans_lock = threading.Lock()
        self._latest: dict[str, tuple[float, str]] = {}
        self._wake = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self.engine = EngineThread()
        self._server_loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Clean up, deploy the examples into an empty server, requeue what an earlier process left
        behind, then start taking runs (and only then report reconciled, which /ready waits for)."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._server_loop = asyncio.get_running_loop()
        self.engine.start()
        # Spares are started on the engine thread: workers die with the thread that started them.
        await self.engine.call(SPARES.configure, int(self.settings.get("execution.spare_script_workers", 1)))
        await asyncio.to_thread(self.plans.sweep)
        if self.settings.get("plans.deploy_examples", True):
            await asyncio.to_thread(self._deploy_examples)
        await asyncio.to_thread(self._reconcile, True)
        self.accepting = True
        self.reconciled = True
        self._background = [
            asyncio.create_task(self._dispatch_loop(), name="normcode-run-dispatch"),
            asyncio.create_task(self._lease_loop(), name="normcode-run-leases"),
        ]
        logger.info("runs_ready", owner=self.owner, max_concurrent_runs=self.max_concurrent)

    async def shutdown(self, grace_s: float) -> None:
        """Stop taking runs; let running steps reach a checkpoint for up to `grace_s`; whatever is
        still running then is stopped and marked `interrupted` (resumed on the next start)."""
        self.accepting = False
        for task in self._background:
            task.cancel()
        running = self._executing()
        for live in running:
            live.interrupt_requested = True
            live.call_execution(_stop_after_current_step)
        tasks = [live.task for live in running if live.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=max(grace_s, 0.0))
            for live in running:
                if live.task in pending:
                    live.call_execution(_cancel)  # abandon the step in flight; it is redone on resume
            if pending:
                _done, pending = await asyncio.wait(pending, timeout=2.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for live in running:
            await asyncio.to_thread(self._mark_interrupted, live.run_id, "the server stopped before the run finished")
            self._live.pop(live.run_id, None)
        await self.engine.call(SPARES.close)
        await asyncio.to_thread(self.engine.stop)
        logger.info("runs_stopped", interrupted=len(running))

    def active_count(self) -> int:
        """Runs executing in this process right now."""
        return len(self._executing())

    # -- creating runs --------------------------------------------------------------------------
    async def create_run(self, request: RunRequest) -> tuple[RunRecord, bool]:
        """Queue a new run: (record, created). With a known idempotency key, the earlier run."""
        self._require_accepting()
        if request.idempotency_key:
            existing = await asyncio.to_thread(self.storage.find_run_by_idempotency_key, request.idempotency_key)
            if existing is not None:
                return self._same_request(existing, request), False
        try:
            record = self._remember(await asyncio.to_thread(self._insert_run, request))
        except IdempotencyKeyExists as exc:
            return self._same_request(exc.existing, request), False
        self._wake.set()
        logger.debug("run_queued", run_id=record.run_id, plan_id=record.plan_id, version=record.plan_version)
        return record, True

    def _insert_run(self, request: RunRequest) -> RunRecord:
        return self.storage.create_run(self._new_record(request))

    def _new_record(self, request: RunRequest) -> RunRecord:
        if request.run_id is not None:
            if not SAFE_RUN_ID.match(request.run_id):
                raise ApiError(422, "invalid_run_id", "run_id must be 1-64 letters, digits, '_' or '-'")
            if self.storage.get_run(request.run_id) is not None:
                raise ApiError(409, "run_exists", f"a run with id {request.run_id!r} already exists")
        try:
            version = request.version or self._latest_version(request.plan_id)
            plan, content_hash = self._deployed(request.plan_id, version)
        except PlanNotFound as exc:
            raise ApiError(404, "plan_not_found", str(exc)) from None
        manifest = plan.manifest
        agent = self._choose_agent(request.agent, manifest)
        max_cycles = request.max_cycles
        if max_cycles is None:
            max_cycles = _manifest_max_cycles(manifest) or int(self.settings.execution.default_max_cycles)
        if not isinstance(max_cycles, int) or isinstance(max_cycles, bool) or not 0 < max_cycles <= MAX_CYCLES_LIMIT:
            raise ApiError(422, "invalid_max_cycles", f"max_cycles must be an integer from 1 to {MAX_CYCLES_LIMIT}")
        check_inputs(plan, request.inputs)
        return RunRecord(
            run_id=request.run_id or str(uuid.uuid4()),
            plan_id=request.plan_id,
            plan_version=version,
            plan_hash=content_hash,
            status="queued",
            agent=agent,
            inputs_json=json.dumps(request.inputs, ensure_ascii=False),
            max_cycles=max_cycles,
            progress_json=json.dumps(_initial_progress(plan)),
            idempotency_key=request.idempotency_key,
        )

    def _choose_agent(self, requested: str | None, manifest: dict[str, Any]) -> str:
        """The run's agent: the request's, else the plan's default if configured, else the server's."""
        configured = set(self.agents.names()) if self.agents is not None else set()
        if requested is not None:
            if requested not in configured:
                known = ", ".join(sorted(configured)) or "none"
                raise ApiError(422, "unknown_agent", f"no agent {requested!r} is configured (configured: {known})")
            name = requested
        else:
            plan_default = manifest.get("default_agent") or (manifest.get("execution") or {}).get("default_llm")
            name = plan_default if plan_default in configured else self.settings.default_agent
        if self.agents is None:
            raise ApiError(503, "agents_unavailable", "the agent registry is not loaded")
        reason = self.agents.unavailable_reason(self.agents.config(name)) if name in configured else "not configured"
        if reason:
            raise ApiError(422, "agent_unavailable", f"agent {name!r} cannot be used: {reason}")
        return name

    def _same_request(self, existing: RunRecord, request: RunRequest) -> RunRecord:
        if existing.plan_id != request.plan_id or (request.version and existing.plan_version != request.version):
            raise ApiError(
                409,
                "idempotency_key_reused",
                f"Idempotency-Key was already used for run {existing.run_id} of plan {existing.plan_id!r}",
            )
        return existing

    # -- controlling runs -----------------------------------------------------------------------
    async def cancel(self, run_id: str) -> RunRecord:
        """Cancel a run. A running one stops before its next step starts."""
        record = await self.get(run_id)
        if record.status in FINISHED_STATES:
            raise ApiError(409, "run_finished", f"run {run_id} is already {record.status}")
        live = self._live.get(run_id)
        if live is not None and live.executing():
            live.cancel_requested = True
            live.call_execution(_cancel)
            return record
        finished = {"status": "cancelled", "finished_at": utcnow(), "owner": None, "lease_until": None}
        updated = await self._transition(
            run_id, {"status": ("queued", "waiting_input", "interrupted")}, **finished
        )
        if updated is None and record.status == "running":
            # Executing on another replica: it sees the state change at its next lease renewal.
            updated = await self._transition(
                run_id, {"status": "running"}, status="cancelled", finished_at=utcnow()
            )
        if updated is None:
            return await self.cancel(run_id)  # it changed state meanwhile: decide again
        if record.status != "running":
            # No execution will write the end of this run's log: do it here, so streams end properly.
            await asyncio.to_thread(self._log_cancelled, run_id)
        self._forget(run_id)
        return updated

    def _log_cancelled(self, run_id: str) -> None:
        run_db = self.run_dir(run_id) / "run.db"
        if not run_db.exists():
            return  # queued and never started: there is no log to end
        log = RunLog(run_db)
        try:
            log.append("run_cancelled", {"status": "cancelled"}, durable=True)
        finally:
            log.close()

    async def resume(self, run_id: str, *, fork: bool = False, agent: str | None = None) -> RunRecord:
        """Continue a stopped run from its checkpoint, or (fork) start a new run from a copy of it."""
        self._require_accepting()
        record = await self.get(run_id)
        if agent is not None:
            self._choose_agent(agent, {})
        await self._require_plan(record)
        if fork:
            return await asyncio.to_thread(self._fork, record, agent)
        if record.status not in RESUMABLE_STATES:
            hint = " (use fork to start a new run from it)" if record.status == "completed" else ""
            raise ApiError(409, "not_resumable", f"run {run_id} is {record.status}; only {', '.join(RESUMABLE_STATES)} runs resume{hint}")
        if record.owner and record.lease_until is not None and record.lease_until > utcnow():
            # Cancelled through another replica, whose execution has not stopped yet.
            raise ApiError(409, "run_stopping", f"run {run_id} is still stopping; retry in a moment")
        fields: dict[str, Any] = {"status": "queued", "error": None, "finished_at": None, "owner": None, "lease_until": None}
        if agent is not None:
            fields["agent"] = agent
        updated = await self._transition(run_id, {"status": record.status, "owner": record.owner}, **fields)
        if updated is None:
            raise ApiError(409, "run_changed", f"run {run_id} changed state meanwhile; try again")
        self._wake.set()
        return updated

    def _fork(self, record: RunRecord, agent: str | None) -> RunRecord:
        new_id = str(uuid.uuid4())
        source, target = self.run_dir(record.run_id), self.run_dir(new_id)
        target.mkdir(parents=True)
        if (source / "run.db").is_file():
            _copy_sqlite(source / "run.db", target / "run.db")
        if (source / "artifacts").is_dir():
            shutil.copytree(source / "artifacts", target / "artifacts", symlinks=True)
        fork = RunRecord(
            run_id=new_id,
            plan_id=record.plan_id,
            plan_version=record.plan_version,
            plan_hash=record.plan_hash,
            status="queued",
            agent=agent or record.agent,
            inputs_json=record.inputs_json,
            max_cycles=record.max_cycles,
            progress_json=record.progress_json,
            parent_run_id=record.run_id,
        )
        created = self.storage.create_run(fork)
        self._wake.set()
        return created

    def open_questions(self, run_id: str) -> list[dict[str, Any]]:
        """Questions the run waits on: asked in its event log and not answered yet."""
        asked: dict[str, dict[str, Any]] = {}
        for event in read_run_events(self.run_dir(run_id) / "run.db", types=QUESTION_EVENTS, limit=None):
            qid = str(event.data.get("id", ""))
            if event.type == "question_asked":
                asked[qid] = {
                    "id": qid,
                    "question_id": qid,
                    "flow_index": event.data.get("flow_index"),
                    "question": event.data.get("question"),
                    "asked_at": datetime.fromtimestamp(event.ts, UTC).isoformat(),
                    # Ids hold '#': in a URL they must be percent-encoded, as here.
                    "answer_path": f"/api/runs/{run_id}/inputs/{quote(qid, safe='')}",
                }
            else:
                asked.pop(qid, None)
        return list(asked.values())

    async def answer(self, run_id: str, question_id: str, text: str) -> RunRecord:
        """Answer an open question; a run waiting for input goes back to the queue."""
        record = await self.get(run_id)
        if record.status in FINISHED_STATES:
            raise ApiError(409, "run_finished", f"run {run_id} is already {record.status}")
        questions = {q["id"] for q in await asyncio.to_thread(self.open_questions, run_id)}
        if question_id not in questions:
            raise ApiError(404, "question_not_found", f"run {run_id} has no open question {question_id!r}")
        live = self._live.get(run_id)
        if live is not None and live.executing() and live.execution is not None:
            # The waiting step continues right away.
            await self.engine.call(live.execution.answer, question_id, text)
            return record
        if record.status == "running":
            raise ApiError(409, "run_busy", f"run {run_id} is executing on another server; retry shortly")
        await self._require_plan(record)
        await self.engine.call(self._record_answer, record, question_id, text)
        if record.status != "waiting_input":
            return record
        updated = await self._transition(
            run_id, {"status": "waiting_input"}, status="queued", owner=None, lease_until=None
        )
        self._wake.set()
        return updated or await self.get(run_id)

    async def _require_plan(self, record: RunRecord) -> None:
        """The exact plan version the run ran must still be deployed for it to continue."""
        try:
            await asyncio.to_thread(self._deployed, record.plan_id, record.plan_version)
        except PlanNotFound as exc:
            raise ApiError(409, "plan_gone", f"run {record.run_id} cannot continue: {exc}") from None

    def _record_answer(self, record: RunRecord, question_id: str, text: str) -> None:
        """Write the answer into the run's log (no execution holds it): the next execution reads it."""
        from normcode_core.engine.execution import Execution

        plan = self.load_plan(record.plan_id, record.plan_version)
        try:
            Execution(plan, self.run_dir(record.run_id)).answer(question_id, text)
        except sqlite3.OperationalError:
            raise ApiError(409, "run_busy", f"run {record.run_id} is being resumed; retry shortly") from None

    # -- reading runs ---------------------------------------------------------------------------
    async def get(self, run_id: str) -> RunRecord:
        """A run as stored. Changes this process makes are seen at once; changes made by another
        replica within RECORD_TTL_S (reads are cached that long, so polling clients stay cheap)."""
        cached = self._recent.get(run_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        record = await asyncio.to_thread(self.storage.get_run, run_id) if SAFE_RUN_ID.match(run_id) else None
        if record is None:
            raise ApiError(404, "run_not_found", f"no run {run_id!r}")
        return self._remember(record)

    async def _transition(self, run_id: str, expected: dict[str, Any], **fields: Any) -> RunRecord | None:
        """Compare-and-set on the stored run (see Storage.update_run_if), keeping the read cache right."""
        updated = await asyncio.to_thread(self.storage.update_run_if, run_id, expected, **fields)
        if updated is None:
            self._recent.pop(run_id, None)
            return None
        return self._remember(updated)

    def _remember(self, record: RunRecord) -> RunRecord:
        self._recent.pop(record.run_id, None)
        self._recent[record.run_id] = (time.monotonic() + RECORD_TTL_S, record)
        while len(self._recent) > RECENT_RECORDS:
            self._recent.popitem(last=False)
        return record

    def live_progress(self, run_id: str) -> tuple[dict[str, Any], dict[str, int]] | None:
        live = self._live.get(run_id)
        if live is None:
            return None
        return dict(live.progress), dict(live.usage)

    def run_dir(self, run_id: str) -> Path:
        if not SAFE_RUN_ID.match(run_id):
            raise ApiError(404, "run_not_found", f"no run {run_id!r}")
        return self.runs_dir / run_id

    def signal(self, run_id: str) -> EventSignal:
        """Wakes stream readers of this run when this process appends to its log or changes it."""
        live = self._live.get(run_id)
        if live is not None:
            return live.signal
        signal = self._signals.get(run_id)
        if signal is None:
            signal = self._signals[run_id] = EventSignal(self._server_loop)
        return signal

    def read_result(self, run_id: str) -> dict[str, Any] | None:
        path = self.run_dir(run_id) / RESULT_FILE
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def load_plan(self, plan_id: str, version: str) -> Plan:
        """The engine's Plan for a deployed version (cached: deployed versions never change)."""
        return self._deployed(plan_id, version)[0]

    def _deployed(self, plan_id: str, version: str) -> tuple[Plan, str]:
        """(Plan, content hash) of a deployed version."""
        key = (plan_id, version)
        with self._plans_lock:  # used from worker threads and the engine thread
            entry = self._plans.get(key)
            if entry is not None:
                self._plans.move_to_end(key)
                return entry
        record = self.plans.version(plan_id, version)
        try:
            plan = self.engine.call_blocking(load_plan, self.plans.version_dir(plan_id, version))
        except PlanInvalid as exc:
            raise PlanNotFound(f"plan {plan_id!r} version {version!r} no longer loads: {exc}") from exc
        with self._plans_lock:
            self._plans[key] = entry = (plan, record.content_hash)
            while len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return entry

    def _latest_version(self, plan_id: str) -> str:
        """The plan's newest version (looked up at most once per LATEST_TTL_S: a deploy through
        another replica is seen that much later; deploys through this one at once)."""
        cached = self._latest.get(plan_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        version = self.plans.version(plan_id).version
        self._latest[plan_id] = (time.monotonic() + LATEST_TTL_S, version)
        return version

    def plan_changed(self, plan_id: str) -> None:
        """A plan was deployed or deleted through this process: drop what is cached about it."""
        self._latest.pop(plan_id, None)
        with self._plans_lock:
            for key in [key for key in self._plans if key[0] == plan_id]:
                del self._plans[key]

    # -- executing ------------------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        while self.accepting:
            self._wake.clear()
            while self.accepting and self.active_count() < self.max_concurrent:
                try:
                    record = await asyncio.to_thread(self.storage.claim_next_queued, self.owner, LEASE_S)
                except Exception as exc:  # noqa: BLE001 - storage down: retry on the next round
                    logger.error("run_claim_failed", error=str(exc))
                    break
                if record is None:
                    break
                self._launch(self._remember(record))
            try:
                await asyncio.wait_for(self._wake.wait(), DISPATCH_POLL_S)
            except TimeoutError:
                pass

    def _launch(self, record: RunRecord) -> None:
        live = LiveRun(record.run_id, signal=self._signals.pop(record.run_id, None) or EventSignal(self._server_loop))
        live.engine = self.engine
        self._live[record.run_id] = live
        live.task = asyncio.create_task(self._execute(record, live), name=f"normcode-run-{record.run_id}")

    async def _execute(self, record: RunRecord, live: LiveRun) -> None:
        run_id = record.run_id
        outcome_fields: dict[str, Any]
        try:
            outcome_fields = await self.engine.run(self._run_engine(record, live))
        except asyncio.CancelledError:
            live.execution = None
            raise  # shutdown marks it interrupted
        except PlanNotFound as exc:
            outcome_fields = {"status": "failed", "error": str(exc)}
        except Exception as exc:
            logger.error("run_crashed", run_id=run_id, exc_info=exc)
            outcome_fields = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        status = outcome_fields["status"]
        fields: dict[str, Any] = {
            "owner": None,
            "lease_until": None,
            "progress_json": live.progress,
            "usage_json": live.usage,
            **outcome_fields,
        }
        if status in FINISHED_STATES:
            fields["finished_at"] = utcnow()
        updated = await self._transition(run_id, {"status": "running", "owner": self.owner}, **fields)
        if updated is None:
            # Its state was changed elsewhere (cancelled through another replica): just let it go.
            await self._transition(run_id, {"owner": self.owner}, owner=None, lease_until=None)
        self._forget(run_id)
        self._wake.set()
        logger.info("run_finished" if status in FINISHED_STATES else "run_paused", run_id=run_id,
                    status=status if updated is not None else "taken over", error=fields.get("error"))

    async def _run_engine(self, record: RunRecord, live: LiveRun) -> dict[str, Any]:
        from normcode_core.engine.execution import Execution

        run_id = record.run_id
        plan, content_hash = await asyncio.to_thread(self._deployed, record.plan_id, record.plan_version)
        if content_hash != record.plan_hash:
            return {"status": "failed", "error": f"plan {record.plan_id!r} version {record.plan_version} changed since the run was created"}
        agent = self.agents.get(record.agent)
        run_dir = self.run_dir(run_id)
        workspace = run_dir / "artifacts"
        workspace.mkdir(parents=True, exist_ok=True)
        if (run_dir / "run.db").exists():  # resuming: progress so far comes from the log
            live.progress, live.usage = await asyncio.to_thread(_progress_from_log, run_dir / "run.db", plan)
        else:
            live.progress = _initial_progress(plan)
        execution = Execution(
            plan,
            run_dir,
            llm=agent.complete,
            inputs=json.loads(record.inputs_json or "{}"),
            max_cycles=record.max_cycles,
            max_parallel=int(self.settings.execution.max_parallel_steps),
            checkpoint_frequency=int(self.settings.execution.checkpoint_frequency),
            workspace=workspace,
            on_event=live.on_event,
            run_id=run_id,
            script_timeout_s=float(self.settings.execution.script_timeout_s),
            script_memory_mb=int(self.settings.execution.script_memory_mb),
        )
        live.execution = execution
        if live.cancel_requested or live.interrupt_requested:
            execution.cancel()  # asked while the run was being set up: it stops before its first step
        logger.info("run_started", run_id=run_id, plan_id=record.plan_id, agent=record.agent)
        outcome = await execution.run()
        usage = getattr(outcome, "usage", None)
        if isinstance(usage, dict):
            live.usage.update({k: int(v) for k, v in usage.items() if isinstance(v, (int, float))})
        if getattr(outcome, "llm_calls", None) is not None:
            live.usage["llm_calls"] = int(outcome.llm_calls)
        status = outcome.status
        if status == "completed":
            self._write_result(record, outcome, live)  # small; blocking is fine on the engine thread
            return {"status": "completed", "error": None}
        if status == "cancelled":
            if live.interrupt_requested and not live.cancel_requested:
                return {"status": "interrupted", "error": "the server stopped before the run finished"}
            return {"status": "cancelled", "error": None}
        if status == "waiting_input":
            return {"status": "waiting_input", "error": None}
        return {"status": "failed", "error": str(getattr(outcome, "error", None) or "the run failed")}

    def _write_result(self, record: RunRecord, outcome: Any, live: LiveRun) -> None:
        result = {
            "run_id": record.run_id,
            "plan_id": record.plan_id,
            "plan_version": record.plan_version,
            "plan_hash": record.plan_hash,
            "status": "completed",
            "final_concepts": [_final_concept(concept) for concept in outcome.final_concepts],
            "llm_calls": live.usage.get("llm_calls", 0),
            "usage": live.usage,
        }
        path = self.run_dir(record.run_id) / RESULT_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, path)  # readers see the whole result or none

    async def _lease_loop(self) -> None:
        """Every second, stop runs cancelled elsewhere; every LEASE_S/3, renew the leases of runs
        executing here (with their progress) and pick up runs whose owner died."""
        ticks = 0
        while True:
            await asyncio.sleep(WATCH_S)
            ticks += 1
            try:
                await self._stop_runs_changed_elsewhere()
                if ticks * WATCH_S >= LEASE_S / 3:
                    ticks = 0
                    await self._renew_leases()
                    await asyncio.to_thread(self._reconcile, False)
            except Exception as exc:  # noqa: BLE001 - storage hiccup: try again next round
                logger.error("lease_renewal_failed", error=str(exc))

    def _executing(self) -> list[LiveRun]:
        return [live for live in self._live.values() if live.executing()]

    async def _stop_runs_changed_elsewhere(self) -> None:
        for live in self._executing():
            record = await asyncio.to_thread(self.storage.get_run, live.run_id)
            if record is None or record.status != "running" or record.owner != self.owner:
                # Cancelled through another replica (or taken over): stop now.
                live.cancel_requested = True
                live.call_execution(_cancel)

    async def _renew_leases(self) -> None:
        for live in self._executing():
            renewed = await self._transition(
                live.run_id,
                {"status": "running", "owner": self.owner},
                lease_until=utcnow() + timedelta(seconds=LEASE_S),
                progress_json=live.progress,
                usage_json=live.usage,
            )
            if renewed is None:
                live.cancel_requested = True
                live.call_execution(_cancel)

    def _reconcile(self, starting: bool) -> None:
        """Requeue (or, without resume_on_start, mark interrupted) runs no live process executes:
        runs of a dead process (an earlier incarnation of this one, or another process on this node
        that is gone), runs whose owner's lease expired, and (on start) runs a shutdown interrupted."""
        now = utcnow()
        resume = self.resume_on_start
        target = {"status": "queued"} if resume else {"status": "interrupted", "error": "the server stopped before the run finished"}
        for record in self._runs_in("running"):
            if record.owner == self.owner or not self._is_orphaned(record, now):
                continue
            self.storage.update_run_if(
                record.run_id,
                {"status": "running", "owner": record.owner, "lease_until": record.lease_until},
                owner=None,
                lease_until=None,
                **target,
            )
        if starting and resume:
            for record in self._runs_in("interrupted"):
                self.storage.update_run_if(record.run_id, {"status": "interrupted"}, status="queued", owner=None, lease_until=None)

    def _is_orphaned(self, record: RunRecord, now: datetime) -> bool:
        if record.lease_until is None or record.lease_until < now or not record.owner:
            return True
        parts = record.owner.rsplit("/", 2)
        if len(parts) != 3 or parts[0] != self.node_id or not parts[1].isdigit():
            return False  # another node: only its lease tells
        pid = int(parts[1])
        if pid == os.getpid():
            return True  # an earlier incarnation of this process (same pid after a restart)
        return not _process_alive(pid)

    def _runs_in(self, status: str) -> list[RunRecord]:
        records: list[RunRecord] = []
        while True:
            batch = self.storage.list_runs(status=status, limit=500, offset=len(records))
            records += batch
            if len(batch) < 500:
                return records

    def _mark_interrupted(self, run_id: str, reason: str) -> None:
        self.storage.update_run_if(
            run_id, {"status": "running", "owner": self.owner},
            status="interrupted", error=reason, owner=None, lease_until=None,
        )

    def _validate_plan(self, root: Path) -> list[object]:
        """The engine's problems with an unpacked package (called on a worker thread by the registry)."""
        from normcode_core.engine.plan import validate_plan

        return list(self.engine.call_blocking(validate_plan, root))

    def _deploy_examples(self) -> None:
        """Deploy examples/plans/* into a server that has no plan yet (`plans.deploy_examples`)."""
        if not self.plans.is_empty() or not EXAMPLES_DIR.is_dir():
            return
        for directory in sorted(p for p in EXAMPLES_DIR.iterdir() if (p / "manifest.json").is_file()):
            try:
                deployed = self.plans.deploy_directory(directory)
            except PackageRejected as exc:  # a broken example must not keep the server from starting
                logger.error("example_rejected", example=directory.name, problems=exc.problems)
                continue
            logger.info("example_deployed", plan_id=deployed.plan_id, version=deployed.version)

    def _require_accepting(self) -> None:
        if not self.accepting:
            raise ApiError(503, "not_accepting_runs", "the server is starting or shutting down; retry shortly",
                           headers={"Retry-After": "2"})

    def _forget(self, run_id: str) -> None:
        """This process no longer executes the run: wake its readers so they look at its new state."""
        live = self._live.pop(run_id, None)
        if live is not None:
            live.execution = None
            live.signal.notify()
        signal = self._signals.pop(run_id, None)
        if signal is not None:
            signal.notify()


# -- helpers ----------------------------------------------------------------------------------------
def ready_run_manager(app_state: Any) -> RunManager:
    """The app's run manager once it has started (503 while the server is still starting)."""
    runs = getattr(app_state, "runs", None)
    if runs is None or not runs.reconciled:
        raise ApiError(503, "not_ready", "the server is starting; retry shortly", headers={"Retry-After": "2"})
    return runs


def check_inputs(plan: Plan, inputs: dict[str, Any]) -> None:
    """Inputs must name the plan's declared inputs (or ground concepts); required ones must be set."""
    if not isinstance(inputs, dict):
        raise ApiError(422, "invalid_inputs", "inputs must be an object keyed by concept name")
    declared = plan.manifest.get("inputs") if isinstance(plan.manifest.get("inputs"), dict) else {}
    ground = {name for name, concept in plan.concepts.items() if concept.is_ground}
    allowed = set(declared) | ground
    problems = [f"{name!r} is not an input of plan {plan.name!r}" for name in inputs if name not in allowed]
    for name, spec in declared.items():
        concept = plan.concepts.get(name)
        has_value = concept is not None and concept.reference_data is not None
        required = isinstance(spec, dict) and spec.get("required") is True
        if required and name not in inputs and not has_value and name not in plan.inputs:
            problems.append(f"required input {name!r} is missing")
    if problems:
        known = ", ".join(sorted(allowed)) or "none"
        raise ApiError(422, "invalid_inputs", {"problems": problems, "inputs": sorted(allowed), "summary": f"plan inputs: {known}"})


def _manifest_max_cycles(manifest: dict[str, Any]) -> int | None:
    value = (manifest.get("execution") or {}).get("max_cycles") if isinstance(manifest.get("execution"), dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _initial_progress(plan: Plan) -> dict[str, Any]:
    return {"completed_count": 0, "total_count": len(plan.inferences), "cycle_count": 0, "current_inference": None}


def _progress_from_log(run_db: Path, plan: Plan) -> tuple[dict[str, Any], dict[str, int]]:
    """Progress and usage so far, from the events an earlier execution of the run logged."""
    live = LiveRun("replay")
    live.progress = _initial_progress(plan)
    after = 0
    while True:
        events = read_run_events(run_db, after)
        if not events:
            break
        for event in events:
            live.on_event(event)
        after = events[-1].seq
    return live.progress, live.usage


def _final_concept(concept: Any) -> dict[str, Any]:
    """One final concept in our shape plus upstream's fields (`has_value`, `value` as JSON text)."""
    item = dict(concept) if isinstance(concept, dict) else dict(vars(concept))
    tensor = item.get("tensor")
    item.setdefault("has_value", tensor is not None)
    item.setdefault("value", json.dumps(tensor, ensure_ascii=False))
    return item


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cancel(execution: Any) -> None:
    execution.cancel()


def _stop_after_current_step(execution: Any) -> None:
    """Let the step in flight finish (and be checkpointed), then stop (outcome `cancelled`)."""
    execution.stop()


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite file that may be in use (WAL included)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
