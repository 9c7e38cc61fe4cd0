"""Execution: one run of one plan, resumable from its run.db.

    execution = Execution(plan, run_dir, llm=agent.complete, inputs={...})
    outcome = await execution.run()        # resumes from run_dir/run.db when it exists

Order and results follow upstream's cycle model exactly (see scheduler.py): items are
*committed* one at a time in upstream's order. Steps that are safe to run early (pure LLM
steps, as their sequence module declares) are started as soon as they are ready, up to
`max_parallel` at once, and their results are committed when their turn comes, after checking
that nothing they read has changed meanwhile. So 20 independent LLM steps take about one LLM
latency, and the results do not depend on the concurrency.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import inspect
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from normcode_core.agents.types import LLMRequest, LLMResponse
from normcode_core.engine.checkpoint import Event, RunLog
from normcode_core.engine.plan import ITERATING_SEQUENCES, Plan
from normcode_core.engine.reference import SKIP, Reference, element_action
from normcode_core.engine.scheduler import CycleRunner, Graph, Readiness
from normcode_core.engine.sequences import SYNTACTIC, get_handler, is_concurrent_safe
from normcode_core.engine.sequences.agentic.composition import runs_scripts
from normcode_core.engine.signs import TRUE_SIGN, SignIds
from normcode_core.engine.state import (
    COMPLETE,
    COMPLETED,
    CONDITION_NOT_MET,
    EMPTY,
    ITEM_PENDING,
    PENDING,
    SKIPPED,
    SUCCESS,
    RunState,
    decode_value,
    encode_value,
)
from normcode_core.engine.step import (
    ConceptValue,
    SandboxSpec,
    StepContext,
    StepResult,
    TruthMask,
)

LLMFunction = Callable[[LLMRequest], Awaitable[LLMResponse]]
_CURRENT_STEP: contextvars.ContextVar[int] = contextvars.ContextVar("normcode_current_step")
SNAPSHOT_FORMAT = 1
FLUSH_WHILE_WAITING_S = 0.01
SNAPSHOT_MIN_BYTES = 65536  # no snapshot before the log holds this much since the last one


class StepFailed(Exception):
    def __init__(self, flow_index: str, sequence: str, error: BaseException) -> None:
        self.flow_index = flow_index
        self.sequence = sequence
        self.error = error
        super().__init__(f"flow {short_flow_index(flow_index)} ({sequence}): {type(error).__name__}: {error}")


class _WaitingInput(BaseException):
    """Raised inside steps waiting for an answer when nothing else can progress.

    A BaseException so that handlers catching Exception do not swallow it."""


@dataclass
class Outcome:
    status: str  # completed | failed | cancelled | waiting_input
    final_concepts: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    flow_index: str | None = None
    llm_calls: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    cycles: int = 0
    steps: int = 0
    open_questions: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "final_concepts": self.final_concepts,
            "error": self.error,
            "flow_index": self.flow_index,
            "llm_calls": self.llm_calls,
            "usage": self.usage,
            "cycles": self.cycles,
            "steps": self.steps,
            "open_questions": self.open_questions,
        }


def result_to_json(result: StepResult) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if result.reference is not None:
        data["reference"] = result.reference.to_json()
    if result.context_updates:
        data["context_updates"] = {k: v.to_json() for k, v in result.context_updates.items()}
    if not result.done:
        data["done"] = False
    if result.condition_met is not None:
        data["condition_met"] = result.condition_met
    if result.truth_mask is not None:
        data["truth_mask"] = result.truth_mask.to_json()
    if result.skip_dependents:
        data["skip_dependents"] = True
    if result.iteration_complete is not None:
        data["iteration_complete"] = result.iteration_complete
    if result.shared_updates:
        data["shared_updates"] = encode_value(result.shared_updates)
    if result.identities:
        data["identities"] = [list(p) for p in result.identities]
    return data


def result_from_json(data: dict[str, Any]) -> StepResult:
    mask = data.get("truth_mask")
    return StepResult(
        reference=Reference.from_json(data["reference"]) if "reference" in data else None,
        context_updates={k: Reference.from_json(v) for k, v in data.get("context_updates", {}).items()},
        done=data.get("done", True),
        condition_met=data.get("condition_met"),
        truth_mask=TruthMask(**mask) if mask else None,
        skip_dependents=data.get("skip_dependents", False),
        iteration_complete=data.get("iteration_complete"),
        shared_updates=decode_value(data.get("shared_updates", {})),
        identities=[tuple(p) for p in data.get("identities", [])],
    )


def _default_scripts_factory() -> Callable[[SandboxSpec], Any] | None:
    try:
        from normcode_core.engine import sandbox  # engineer B's sandbox worker
    except ImportError:
        return None
    return getattr(sandbox, "create_worker", None)


class Execution:
    def __init__(
        self,
        plan: Plan,
        run_dir: str | Path,
        *,
        llm: LLMFunction | None = None,
        inputs: dict[str, Any] | None = None,
        max_cycles: int = 100,
        max_parallel: int = 16,
        checkpoint_frequency: int = 5,
        workspace: str | Path | None = None,
        base_dir_for_paths: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        scripts_factory: Callable[[SandboxSpec], Any] | None = None,
        auto_answer: str | None = None,
        seed: str = "normcode",
        run_id: str | None = None,
        script_timeout_s: float = 60.0,
        script_memory_mb: int = 1024,
        script_log: str | Path | None = None,
    ) -> None:
        self.plan = plan
        self.run_dir = Path(run_dir)
        self.run_id = run_id or self.run_dir.name
        self._llm = llm
        self.inputs = {**plan.inputs, **(inputs or {})}
        unknown = sorted(name for name in self.inputs if name not in plan.concepts)
        if unknown:
            raise ValueError(f"inputs name concepts this plan does not have: {', '.join(unknown)}")
        self.max_cycles = max_cycles
        self.max_parallel = max(1, max_parallel)
        self.checkpoint_frequency = max(1, checkpoint_frequency)
        self.workspace = Path(workspace) if workspace is not None else plan.root
        self.base_dir_for_paths = base_dir_for_paths or str(self.workspace)
        self.on_event = on_event
        self._scripts_factory = scripts_factory if scripts_factory is not None else _default_scripts_factory()
        self.auto_answer = auto_answer
        self.seed = seed
        self.script_timeout_s = script_timeout_s
        self.script_memory_mb = script_memory_mb
        # scripts' stdout/stderr: <run dir>/scripts.log unless told otherwise ("-" = our stderr)
        self.script_log = script_log if script_log is not None else self.run_dir / "scripts.log"

        self.graph = Graph.build(plan)
        self.status = "created"
        self._log: RunLog | None = None
        self._cancel_requested = False
        self._stop_requested = False
        self._driver: asyncio.Task | None = None
        self._scripts: Any = None
        # per-run records (rebuilt from run.db on resume)
        self._llm_records: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._answers: dict[str, str] = {}
        self._asked: dict[str, dict[str, Any]] = {}
        self._waiting: dict[str, asyncio.Future] = {}
        self._asking: dict[int, int] = {}  # step (item index) -> questions it is waiting on
        self._head: int | None = None  # the item whose turn it is
        self._spec_queue: list[int] = []
        self._memo: dict[str, Any] = {}
        self.llm_calls = 0
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.steps = 0
        self._safe = [is_concurrent_safe(inf, plan) for inf in self.graph.items]
        self._spec: dict[int, tuple[asyncio.Task, tuple]] = {}
        self._versions: dict[str, int] = {}
        self._steps_since_snapshot = 0
        self._last_snapshot_size = 0

    # ================================================================== public API

    async def run(self) -> Outcome:
        """Run (or resume) until completed, failed, cancelled or waiting for input."""
        if self._driver is not None:
            raise RuntimeError("this execution is already running")
        self._driver = asyncio.current_task()
        self._log = RunLog(self.run_dir / "run.db")
        try:
            finished = self._restore()
            if finished is not None:
                return finished
            self.status = "running"
            self._start_scripts_early()
            try:
                await self._drive()
            except _WaitingInput:
                return self._finish("waiting_input")
            except StepFailed as exc:
                exc.flow_index = short_flow_index(exc.flow_index)
                self._emit("step_failed", {"flow_index": short_flow_index(exc.flow_index), "sequence": exc.sequence, "error": str(exc.error)}, durable=True)
                return self._finish("failed", error=str(exc), flow_index=exc.flow_index)
            except _Stopped:
                try:
                    await self._stop_speculation(finish=True)
                except asyncio.CancelledError:
                    if not self._cancel_requested:
                        raise
                return self._finish("cancelled", error="stopped")
            except asyncio.CancelledError:
                if not self._cancel_requested:
                    raise
                return self._finish("cancelled", error="cancelled")
            except _RunFailed as exc:
                return self._finish("failed", error=exc.reason, flow_index=exc.flow_index)
            return self._finish("completed")
        finally:
            await self._stop_speculation()
            await self._close_scripts()
            if self._log is not None:
                self._log.close()
                self._log = None
            self._driver = None
            self._cancel_requested = self._stop_requested = False  # run() may be called again

    def stop(self) -> None:
        """Finish the step whose turn it is, then stop before the next one (outcome `cancelled`).

        Steps started ahead of their turn run to their end first (a `cancel()` cuts that short):
        their LLM replies are recorded, so resuming does not ask for them again."""
        self._stop_requested = True

    def cancel(self) -> None:
        """Stop the run now, abandoning the step in flight; the outcome is `cancelled`."""
        self._cancel_requested = True
        if self._driver is not None and not self._driver.done():
            self._driver.cancel()

    def open_questions(self) -> list[dict[str, Any]]:
        """Questions asked by steps and not answered yet: [{id, flow_index, question}]."""
        if self._log is None and (self.run_dir / "run.db").exists() and not self._asked:
            log = RunLog(self.run_dir / "run.db")
            try:
                self._index_records(log)
            finally:
                log.close()
        return [
            {"id": qid, "flow_index": q.get("flow_index"), "question": q.get("question")}
            for qid, q in self._asked.items()
            if qid not in self._answers
        ]

    def answer(self, question_id: str, text: str) -> None:
        """Answer an open question (the run continues, or continues when resumed)."""
        if question_id not in {q["id"] for q in self.open_questions()}:
            raise KeyError(f"no open question {question_id!r}")
        if self._log is not None:
            self._record_answer(question_id, text)
            return
        log = RunLog(self.run_dir / "run.db")
        try:
            log.append("question_answered", {"id": question_id, "answer": text}, durable=True)
        finally:
            log.close()
        self._answers[question_id] = text

    # ================================================================== setup / resume

    def _fresh_state(self) -> RunState:
        state = RunState()
        for name in self.plan.concepts:
            state.concept_statuses[name] = EMPTY
        for inf in self.graph.items:
            state.item_statuses[inf.flow_index] = ITEM_PENDING
            state.execution_counts[inf.flow_index] = 0
            state.concept_to_flow[inf.concept_to_infer] = inf.flow_index
        for concept in self.plan.concepts.values():
            if concept.reference_data is not None:
                data = concept.reference_data if isinstance(concept.reference_data, list) else [concept.reference_data]
                axes = list(concept.reference_axis_names) if concept.reference_axis_names is not None else None
                state.references[concept.name] = Reference.from_data(data, axes)
        for name, value in self.inputs.items():
            if isinstance(value, dict) and "data" in value:
                data, axes = value["data"], value.get("axes")
            else:
                data, axes = value, None
            if not isinstance(data, list):
                data = [data]
            state.references[name] = Reference.from_data(data, axes)
        for concept in self.plan.concepts.values():
            if concept.is_ground:
                state.concept_statuses[concept.name] = COMPLETE
        for name in self.inputs:
            if name in state.references:
                state.concept_statuses[name] = COMPLETE
        return state

    def _index_records(self, log: RunLog) -> None:
        for event in log.events(types=("llm_call", "question_asked", "question_answered")):
            data = event.data
            if event.type == "llm_call":
                self._llm_records[(data["step"], data["digest"], data["n"])] = data["response"]
            elif event.type == "question_asked":
                self._asked[data["id"]] = data
            else:
                self._answers[data["id"]] = data["answer"]

    def _restore(self) -> Outcome | None:
        log = self._log
        assert log is not None
        fingerprint = self.plan.fingerprint
        # Everything below is rebuilt from run.db (run() may be called again, e.g. after input).
        self._memo.clear()
        self._versions.clear()
        self._spec.clear()
        self._steps_since_snapshot = 0
        self.steps = 0
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self._index_records(log)
        self.llm_calls = len(self._llm_records)
        for record in self._llm_records.values():
            self.usage["input_tokens"] += int(record.get("input_tokens", 0))
            self.usage["output_tokens"] += int(record.get("output_tokens", 0))
        stored = log.get_meta("plan_fingerprint")
        if stored is None:
            log.set_meta("plan_fingerprint", fingerprint)
            log.set_meta("run", {"run_id": self.run_id, "plan": self.plan.name, "version": self.plan.version, "seed": self.seed})
            self.state = self._fresh_state()
            self._init_scheduler()
            self._emit("run_started", {"run_id": self.run_id, "plan": self.plan.name, "resumed": False}, durable=True)
            return None
        if stored != fingerprint:
            raise RuntimeError(f"{log.path} belongs to a different plan (fingerprint mismatch)")
        meta = log.get_meta("run") or {}
        self.seed = meta.get("seed", self.seed)
        snapshot = log.latest_snapshot()
        after = 0
        if snapshot is not None and snapshot[1].get("format") == SNAPSHOT_FORMAT:
            after, data = snapshot
            self.state = RunState.from_json(data["state"], [inf.flow_index for inf in self.graph.items])
            self._init_scheduler(data["cycles"])
            self.steps = int(data.get("steps", 0))
        else:
            self.state = self._fresh_state()
            self._init_scheduler()
        for event in log.events(after=after, types=("step_completed", "run_completed")):
            if event.type == "run_completed":
                continue
            self._replay_step(event.data)
        terminal = log.events(after=0, types=("run_completed",))
        if terminal:
            self.status = "completed"
            return self._outcome("completed")
        self._emit("run_started", {"run_id": self.run_id, "plan": self.plan.name, "resumed": True}, durable=True)
        return None

    def _init_scheduler(self, cycles: dict | None = None) -> None:
        self.readiness = Readiness(self.graph, self.state)
        self.cycles = CycleRunner(self.readiness)
        self._spec_queue = []
        base = self.readiness.on_ready
        any_safe = self.max_parallel > 1 and any(self._safe)

        def on_ready(i: int) -> None:
            base(i)
            if any_safe and self._safe[i]:
                heapq.heappush(self._spec_queue, i)

        self.readiness.on_ready = on_ready
        if any_safe:
            self._spec_queue = sorted(i for i in self.readiness.ready if self._safe[i])
        if cycles is not None:
            self.cycles.load_json(cycles)

    def _replay_step(self, data: dict[str, Any]) -> None:
        i = int(data["i"])
        cycle = int(data["cycle"])
        while self.cycles.cycle < cycle:
            self.cycles.start_next_cycle()
        if self.cycles.peek() != i:
            raise RuntimeError(
                f"{self.run_dir / 'run.db'} does not match this plan's execution order at flow {self.graph.items[i].flow_index}"
            )
        self.cycles.take(i)
        if "result" in data:
            result = result_from_json(data["result"])
        else:
            result = _run_sync(self._execute_step(i))
        self._commit(i, result, replay=True)

    # ================================================================== driving

    async def _drive(self) -> None:
        cycles = self.cycles
        while True:
            if self._cancel_requested or self._stop_requested:
                raise _Stopped()
            i = cycles.peek()
            if i is None:
                if cycles.cycle > 0 and cycles.executed_in_cycle == 0:
                    stuck = [short_flow_index(inf.flow_index) for inf in self.graph.items if self.state.item_status(inf.flow_index) != COMPLETED]
                    raise _RunFailed(
                        f"deadlock in cycle {cycles.cycle}: no step can run; waiting: {', '.join(stuck[:10])}"
                        + (f" (+{len(stuck) - 10} more)" if len(stuck) > 10 else ""),
                        stuck[0] if stuck else None,
                    )
                if not self._has_pending():
                    return
                if cycles.cycle >= self.max_cycles:
                    stuck = [short_flow_index(inf.flow_index) for inf in self.graph.items if self.state.item_status(inf.flow_index) == ITEM_PENDING]
                    raise _RunFailed(
                        f"ran out of cycles (max_cycles={self.max_cycles}) with {len(stuck)} step(s) pending: {', '.join(stuck[:10])}",
                        stuck[0] if stuck else None,
                    )
                cycles.start_next_cycle()
                continue
            self._fill_speculation(exclude=i)
            cycles.take(i)
            result = await self._result_for(i)
            self._commit(i, result, replay=False)

    def _has_pending(self) -> bool:
        return any(status == ITEM_PENDING for status in self.state.item_statuses.values())

    async def _result_for(self, i: int) -> StepResult:
        inf = self.graph.items[i]
        spec = self._spec.pop(i, None)
        try:
            if spec is not None:
                task, versions = spec
                if versions == self._input_versions(i):
                    self._head = i
                    return await task
                task.cancel()
            self._head = i
            if inf.sequence in SYNTACTIC:
                return await self._execute_step(i)
            # Only a step that turns out to be slow is announced (and what happened before it is
            # made durable meanwhile): fast steps cost one event instead of two.
            timer = asyncio.get_running_loop().call_later(FLUSH_WHILE_WAITING_S, self._announce_slow_step, i)
            try:
                return await self._execute_step(i)
            finally:
                timer.cancel()
        except (StepFailed, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise StepFailed(inf.flow_index, inf.sequence, exc) from exc
        finally:
            self._head = None

    def _announce_slow_step(self, i: int) -> None:
        inf = self.graph.items[i]
        self._emit("step_started", {"i": i, "flow_index": short_flow_index(inf.flow_index), "sequence": inf.sequence, "concept": inf.concept_to_infer})
        if self._log is not None:
            self._log.flush()

    def _check_stalled(self, *_: Any) -> None:
        """Nothing can progress when every running step waits for an answer: stop for input."""
        if not self._waiting or self._head is None:
            return
        running = [self._head] + [i for i, (t, _) in self._spec.items() if not t.done()]
        if all(self._asking.get(i, 0) > 0 for i in running):
            for future in list(self._waiting.values()):
                if not future.done():
                    future.set_exception(_WaitingInput())

    # ---------------------------------------------------------------- speculation

    def _fill_speculation(self, exclude: int) -> None:
        queue = self._spec_queue
        if not queue:
            return
        running = sum(1 for t, _ in self._spec.values() if not t.done())
        deferred: list[int] = []
        while queue and running < self.max_parallel - 1:
            i = heapq.heappop(queue)
            if i == exclude:
                deferred.append(i)
                continue
            if i in self._spec or i not in self.readiness.ready:
                continue
            inf = self.graph.items[i]
            self._emit("step_started", {"i": i, "flow_index": short_flow_index(inf.flow_index), "sequence": inf.sequence, "concept": inf.concept_to_infer})
            task = asyncio.create_task(self._execute_step(i))
            task.add_done_callback(self._check_stalled)
            self._spec[i] = (task, self._input_versions(i))
            running += 1
        for i in deferred:
            heapq.heappush(queue, i)

    async def _stop_speculation(self, finish: bool = False) -> None:
        """Abandon steps started ahead of their turn; with `finish` (a graceful stop), let them
        end first: their LLM replies are paid for and recorded, so a resumed run does not ask
        again. The caller's cancellation (the stop's grace period ran out) still abandons them."""
        tasks = [t for t, _ in self._spec.values()]
        self._spec.clear()
        try:
            if finish and tasks:
                await asyncio.wait(tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # discarded work

    def _bump(self, key: str) -> None:
        self._versions[key] = self._versions.get(key, 0) + 1

    def _input_versions(self, i: int) -> tuple:
        inf = self.graph.items[i]
        names = [inf.concept_to_infer, *inf.value_concepts, *inf.context_concepts]
        if inf.function_concept:
            names.append(inf.function_concept)
        v = self._versions
        return (v.get("#" + inf.flow_index, 0), *(v.get(self.state.canonical(n), 0) for n in names))

    # ---------------------------------------------------------------- one step

    def _filtered_values(self, i: int) -> dict[str, Reference] | None:
        """Value references after truth-mask filters injected for this item (None: no filter)."""
        inf = self.graph.items[i]
        shared = self.state.shared
        filters = shared.get(f"__filter__{inf.flow_index}") if shared else None
        if not filters:
            return None
        out: dict[str, Reference] = {}
        for name in inf.value_concepts:
            ref = out.get(name) or self.state.references.get(name)
            if ref is None:
                continue
            for f in filters:
                mask = f.get("truth_mask", {})
                axis, tensor = mask.get("filter_axis"), mask.get("tensor")
                if axis and tensor:
                    ref = _apply_truth_mask(ref, tensor, axis)
            out[name] = ref
        return out

    def _concept_value(self, name: str, copy: bool, refs: dict[str, Reference] | None = None) -> ConceptValue:
        ref = (refs or {}).get(name) or self.state.references.get(name)
        if ref is not None and copy:
            ref = ref.copy()
        return ConceptValue(self.plan.concepts[name], ref)

    async def _execute_step(self, i: int) -> StepResult:
        _CURRENT_STEP.set(i)  # a task's own context: reset when the task (or caller's step) ends
        inf = self.graph.items[i]
        execution = self.state.execution_counts.get(inf.flow_index, 0) + 1
        # Keyed by the never-reset count, so each loop iteration gets its own ids and LLM records.
        name = inf.flow_index if len(inf.flow_index) <= 64 else f"r{i}"
        step_key = f"{name}#{self.state.total_executions.get(inf.flow_index, 0) + 1}"
        filtered = self._filtered_values(i)
        copy = inf.sequence not in SYNTACTIC
        ctx = StepContext(
            plan=self.plan,
            inference=inf,
            execution=execution,
            target=self._concept_value(inf.concept_to_infer, copy),
            function=self._concept_value(inf.function_concept, copy) if inf.function_concept else None,
            values=[self._concept_value(n, copy, filtered) for n in inf.value_concepts],
            context=[self._concept_value(n, copy) for n in inf.context_concepts],
            state=self.state,
            ids=SignIds(f"{self.seed}/{step_key}"),
            llm=self._llm_for(step_key),
            ask=self._ask_for(step_key, inf.flow_index),
            emit=lambda type, data: self._emit(type, {"flow_index": short_flow_index(inf.flow_index), **data}),
            scripts_provider=self._scripts_worker,
            workspace=self.workspace,
            base_dir_for_paths=self.base_dir_for_paths,
            memo=self._memo,
        )
        handler = get_handler(inf.sequence)
        result = await handler(ctx)
        if not isinstance(result, StepResult):
            raise TypeError(f"sequence {inf.sequence!r} returned {type(result).__name__}, not StepResult")
        return result

    def _llm_for(self, step_key: str) -> Callable[[LLMRequest], Awaitable[LLMResponse]]:
        occurrences: dict[str, int] = {}

        async def call(request: LLMRequest) -> LLMResponse:
            digest = request.digest()
            n = occurrences.get(digest, 0)
            occurrences[digest] = n + 1
            key = (step_key, digest, n)
            record = self._llm_records.get(key)
            if record is None:
                if self._llm is None:
                    raise RuntimeError("this plan needs an LLM agent, and none is configured")
                started = time.monotonic()
                response = await self._llm(request)
                record = {
                    "text": response.text,
                    "model": response.model,
                    "input_tokens": response.input_tokens,
                    "output_tokens": response.output_tokens,
                    "latency_ms": response.latency_ms or round((time.monotonic() - started) * 1000, 1),
                    "attempts": response.attempts,
                }
                if key in self._llm_records:  # a concurrent duplicate finished first
                    record = self._llm_records[key]
                else:
                    self._llm_records[key] = record
                    self.llm_calls += 1
                    self.usage["input_tokens"] += response.input_tokens
                    self.usage["output_tokens"] += response.output_tokens
                    self._emit(
                        "llm_call",
                        {"step": step_key, "digest": digest, "n": n, "request": _request_preview(request), "response": record},
                        durable=True,
                    )
            return LLMResponse(
                text=record["text"],
                model=record.get("model", ""),
                input_tokens=int(record.get("input_tokens", 0)),
                output_tokens=int(record.get("output_tokens", 0)),
                latency_ms=float(record.get("latency_ms", 0.0)),
                attempts=int(record.get("attempts", 1)),
            )

        return call

    def _ask_for(self, step_key: str, flow_index: str) -> Callable[[dict[str, Any]], Awaitable[str]]:
        counter = {"n": 0}

        async def ask(question: dict[str, Any]) -> str:
            qid = f"{step_key}#q{counter['n']}"
            counter["n"] += 1
            if qid in self._answers:
                return self._answers[qid]
            if qid not in self._asked:
                record = {"id": qid, "flow_index": flow_index, "question": question}
                self._asked[qid] = record
                self._emit("question_asked", record, durable=True)
            if self.auto_answer is not None:
                self._record_answer(qid, self.auto_answer)
                return self.auto_answer
            future = asyncio.get_running_loop().create_future()
            self._waiting[qid] = future
            # Which step is asking: a context variable, so it holds inside tasks the step spawns.
            unit = _CURRENT_STEP.get(None)
            if unit is not None:
                self._asking[unit] = self._asking.get(unit, 0) + 1
            self._check_stalled()
            try:
                return await future
            finally:
                self._waiting.pop(qid, None)
                if unit is not None:
                    self._asking[unit] -= 1

        return ask

    def _record_answer(self, qid: str, text: str) -> None:
        self._answers[qid] = text
        self._emit("question_answered", {"id": qid, "answer": text}, durable=True)
        future = self._waiting.get(qid)
        if future is not None and not future.done():
            future.set_result(text)

    def _scripts_worker(self) -> Any:
        if self._scripts is None:
            if self._scripts_factory is None:
                raise RuntimeError("no script sandbox is available to run plan scripts")
            self._scripts = self._scripts_factory(
                SandboxSpec(
                    run_id=self.run_id,
                    plan_dir=self.plan.root,
                    workspace=self.workspace,
                    base_dir_for_paths=self.base_dir_for_paths,
                    timeout_s=self.script_timeout_s,
                    memory_mb=self.script_memory_mb,
                    log_path=self.script_log,
                )
            )
        return self._scripts

    def _start_scripts_early(self) -> None:
        """Start the script worker with the run when the plan has script steps, off the critical path."""
        if self._scripts_factory is None or not any(runs_scripts(inf, self.plan) for inf in self.graph.items):
            return
        try:
            starter = getattr(self._scripts_worker(), "start", None)
            if starter is not None:
                starter()
        except Exception:  # noqa: BLE001 - the first script call reports the same problem properly
            pass

    async def _close_scripts(self) -> None:
        worker, self._scripts = self._scripts, None
        if worker is None:
            return
        closer = getattr(worker, "aclose", None) or getattr(worker, "close", None)
        if closer is None:
            return
        outcome = closer()
        if inspect.isawaitable(outcome):
            await outcome

    # ================================================================== commit

    def _set_reference(self, name: str, ref: Reference | None) -> None:
        if ref is None:
            self.state.references.pop(name, None)
        else:
            self.state.references[name] = ref
        self._bump(self.state.canonical(name))

    def _set_concept_status(self, name: str, status: str) -> None:
        before = self.state.concept_status(name)
        self.state.set_concept_status(name, status)
        self._bump(self.state.canonical(name))
        if before != status:
            self.readiness.concept_changed(name)

    def _set_item_status(self, i: int, status: str) -> None:
        fi = self.graph.items[i].flow_index
        self.state.set_item_status(fi, status)
        self._bump("#" + fi)
        self.readiness.status_changed(i)

    def _commit(self, i: int, result: StepResult, replay: bool) -> None:
        inf = self.graph.items[i]
        fi = inf.flow_index
        state = self.state
        state.execution_counts[fi] = state.execution_counts.get(fi, 0) + 1
        state.total_executions[fi] = state.total_executions.get(fi, 0) + 1
        self._bump("#" + fi)
        filtered = self._filtered_values(i)
        if filtered is not None:
            for name, ref in filtered.items():
                self._set_reference(name, ref)
            state.shared.pop(f"__filter__{fi}", None)
        for key, value in result.shared_updates.items():
            if value is None:
                state.shared.pop(key, None)
            else:
                state.shared[key] = value
        for a, b in result.identities:
            state.register_identity(a, b)
            self._bump(state.canonical(a))
            self.readiness.concept_changed(a)
            self.readiness.concept_changed(b)

        skipped: list[str] = []
        if inf.sequence == "timing":
            pending = not result.done
            if not pending:
                if result.skip_dependents:
                    for dep in self.graph.dependents[i]:
                        skipped.append(self._skip(dep, fi))
                self._set_concept_status(inf.concept_to_infer, COMPLETE)
        else:
            if inf.sequence.startswith("judgement"):
                if result.condition_met is True:
                    state.item_details[fi] = SUCCESS
                elif result.condition_met is False:
                    state.item_details[fi] = CONDITION_NOT_MET
                if result.truth_mask is not None:
                    state.truth_masks[inf.concept_to_infer] = result.truth_mask.to_json()
            iterating = inf.sequence in ITERATING_SEQUENCES
            complete = bool(result.iteration_complete) if iterating else True
            if iterating and not complete:
                self._reset_supporters(i)
            if result.reference is not None:
                self._set_reference(inf.concept_to_infer, result.reference)
                if complete:
                    self._set_concept_status(inf.concept_to_infer, COMPLETE)
            for name, ref in result.context_updates.items():
                self._set_reference(name, ref)
                self._set_concept_status(name, COMPLETE)
            pending = (iterating and not complete) or not result.done
        self._set_item_status(i, PENDING if pending else COMPLETED)
        self.cycles.finish(i, pending)
        self.steps += 1
        if replay:
            return
        data: dict[str, Any] = {
            "i": i,
            "flow_index": short_flow_index(fi),
            "sequence": inf.sequence,
            "concept": inf.concept_to_infer,
            "cycle": self.cycles.cycle,
            "status": "pending" if pending else "completed",
        }
        if inf.sequence not in SYNTACTIC:
            data["result"] = result_to_json(result)
        elif inf.sequence.startswith("judgement"):
            data["detail"] = state.item_details.get(fi)
        self._emit("step_completed", data)
        for dep_fi in skipped:
            self._emit("step_skipped", {"flow_index": short_flow_index(dep_fi), "by": short_flow_index(fi)})
        self._maybe_snapshot()

    def _skip(self, dep: int, by: str) -> str:
        inf = self.graph.items[dep]
        fi = inf.flow_index
        self.state.item_details[fi] = SKIPPED
        self._set_item_status(dep, COMPLETED)
        self._set_concept_status(inf.concept_to_infer, COMPLETE)
        return fi

    def _reset_supporters(self, i: int) -> None:
        state = self.state
        for s in self.graph.descendants(i):
            inf = self.graph.items[s]
            fi = inf.flow_index
            state.item_statuses[fi] = ITEM_PENDING
            state.execution_counts[fi] = 0
            self._bump("#" + fi)
            if inf.sequence in ITERATING_SEQUENCES:
                syntax = inf.working_interpretation.get("syntax") or {}
                base, q_index = syntax.get("LoopBaseConcept"), syntax.get("quantifier_index")
                if base and q_index is not None:
                    for key in [k for k in state.shared if k == f"{q_index}_{base}" or k.startswith(f"{q_index}_{base}\x1f")]:
                        del state.shared[key]
            concept = self.plan.concepts[inf.concept_to_infer]
            if not concept.is_ground and not concept.is_invariant:
                canonical = state.canonical(concept.name)
                state.reset_counts[canonical] = state.reset_counts.get(canonical, 0) + 1
                self._set_concept_status(concept.name, PENDING)
                self._set_reference(concept.name, None)
            self.readiness.status_changed(s)

    def _maybe_snapshot(self) -> None:
        self._steps_since_snapshot += 1
        log = self._log
        if log is None or self._steps_since_snapshot < self.checkpoint_frequency:
            return
        # Snapshot only when the log since the last one outweighs it: total work stays linear.
        if log.bytes_since_snapshot < max(self._last_snapshot_size, SNAPSHOT_MIN_BYTES):
            return
        self._last_snapshot_size = log.write_snapshot(
            {"format": SNAPSHOT_FORMAT, "state": self.state.to_json(self.graph.rank), "cycles": self.cycles.to_json(), "steps": self.steps}
        )
        self._steps_since_snapshot = 0

    # ================================================================== events / outcome

    def _emit(self, type: str, data: dict[str, Any], durable: bool = False) -> None:
        if self._log is None:
            return
        event = self._log.append(type, data, durable=durable)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception as exc:  # noqa: BLE001 - a listener must not break the run
                warnings.warn(f"on_event listener failed on {type}: {exc!r}", RuntimeWarning, stacklevel=2)

    def final_concepts(self) -> list[dict[str, Any]]:
        out = []
        for name in self.plan.final_concepts():
            ref = self.state.references.get(name)
            out.append(
                {
                    "name": name,
                    "tensor": ref.tensor if ref is not None else None,
                    "axes": list(ref.axes) if ref is not None else None,
                    "shape": list(ref.shape) if ref is not None else None,
                }
            )
        return out

    def _outcome(self, status: str, error: str | None = None, flow_index: str | None = None) -> Outcome:
        return Outcome(
            status=status,
            final_concepts=self.final_concepts(),
            error=error,
            flow_index=flow_index,
            llm_calls=self.llm_calls,
            usage=dict(self.usage),
            cycles=self.cycles.cycle,
            steps=self.steps,
            open_questions=self.open_questions() if status == "waiting_input" else [],
        )

    def _finish(self, status: str, error: str | None = None, flow_index: str | None = None) -> Outcome:
        self.status = status
        outcome = self._outcome(status, error, flow_index)
        event_type = {
            "completed": "run_completed",
            "failed": "run_failed",
            "cancelled": "run_cancelled",
            "waiting_input": "run_waiting_input",
        }[status]
        data: dict[str, Any] = {"status": status, "llm_calls": outcome.llm_calls, "cycles": outcome.cycles, "steps": outcome.steps}
        if error:
            data["error"] = error
        if flow_index:
            data["flow_index"] = flow_index
        if status == "waiting_input":
            data["questions"] = outcome.open_questions
        if status == "completed":
            data["final_concepts"] = outcome.final_concepts
        self._emit(event_type, data, durable=True)
        return outcome


class _Stopped(Exception):
    pass


class _RunFailed(Exception):
    def __init__(self, reason: str, flow_index: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.flow_index = flow_index


def short_flow_index(flow_index: str, limit: int = 64) -> str:
    """Flow indices of deep plans run to thousands of characters: events carry a short form."""
    return flow_index if len(flow_index) <= limit else flow_index[:limit] + f"…({flow_index.count('.') + 1} levels)"


def _apply_truth_mask(ref: Reference, tensor: Any, axis: str) -> Reference:
    if axis not in ref.axes:
        return ref
    mask = Reference.from_data(tensor, [axis])
    try:
        return element_action(lambda value, flag: value if flag == TRUE_SIGN else SKIP, [ref, mask])
    except Exception:  # noqa: BLE001 - upstream keeps the unfiltered reference on mismatch
        return ref


def _request_preview(request: LLMRequest, limit: int = 4000) -> dict[str, Any]:
    messages = []
    budget = limit
    for message in request.messages:
        content = str(message.get("content", ""))
        if len(content) > budget:
            content = content[: max(budget, 0)] + "…"
        budget -= len(content)
        messages.append({"role": message.get("role"), "content": content})
    return {"messages": messages, "json_mode": request.json_mode}


def _run_sync(coro: Awaitable[StepResult]) -> StepResult:
    """Drive a syntactic step's coroutine to completion without an event loop turn.

    Syntactic handlers never await anything that suspends, so one `send(None)` finishes them.
    """
    try:
        coro.send(None)  # type: ignore[attr-defined]
    except StopIteration as stop:
        return stop.value
    coro.close()  # type: ignore[attr-defined]
    raise RuntimeError("a syntactic step suspended during replay")
