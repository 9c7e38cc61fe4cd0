"""What a sequence handler receives (StepContext) and returns (StepResult).

Interface (one handler per `inference_sequence`, registered in `engine/sequences/__init__.py`):

    async def run(ctx: StepContext) -> StepResult

Reading inputs
    ctx.inference            the plan's Inference entry (flow_index, sequence, concept names, flags)
    ctx.working_interpretation   the entry's working_interpretation, READ-ONLY (shared by every
                             execution; copy before changing), runtime leftovers
                             `workspace`/`flow_info`/`blackboard` removed
    ctx.target / ctx.function / ctx.values / ctx.context
                             ConceptValue(concept=<plan Concept metadata>, reference=<Reference|None>)
                             for concept_to_infer, function_concept, value_concepts (in repo order,
                             duplicates kept) and context_concepts. For agent sequences they are
                             private copies (mutate freely); syntactic sequences get the run's own
                             objects and must not mutate them. Truth-mask filters injected by timing (`@:'`/`@:!`) have
                             already been applied to the value references.
    ctx.execution            1-based count of executions of this flow index since its last loop reset
    ctx.ids                  SignIds for deterministic `%xxx(...)` ids: `ctx.ids.at(*position)` (use in
                             element-wise/concurrent code) or `ctx.ids.next()` (sequential code only)
Effects (all recorded in the run's event log, so a resumed run repeats none of them)
    await ctx.llm(LLMRequest) -> LLMResponse    counted; replayed from run.db on resume
    await ctx.ask(question: dict) -> str        human input; never blocks a thread. `question` holds at
                             least {"prompt": str}, optionally "kind" ("text", "confirm", "file_path",
                             "files", "edit"), "initial_text", "options". The run goes `waiting_input`
                             when nothing else can progress; answers are recorded.
    ctx.scripts              the run's sandbox worker (created lazily by the runtime through the
                             `scripts_factory` given to Execution; B's normcode_core.engine.sandbox)
    ctx.emit(type, data)     append a custom event to the run's log / stream
Files
    ctx.plan_dir             the read-only package directory
    ctx.workspace            where plan files are written (the plan dir itself for `plan run`,
                             runs/<run_id>/artifacts for server runs)
    ctx.read_path(rel)       Path to read: the workspace copy if it exists, else the package file
    ctx.write_path(rel)      Path to write, inside the workspace (parents created)
    ctx.relative_path(p)     p made plan-relative (absolute paths under base_dir_for_paths /
                             workspace / plan_dir are mapped back). All three raise
                             PathOutsidePlan for other absolute or escaping paths.
    ctx.base_dir_for_paths   the directory string to report in absolute-path values
                             (`f"{ctx.base_dir_for_paths}/{rel}"`), exactly as given, not resolved
Run state (read-only for handlers; changes go through StepResult)
    ctx.state                RunState: concept_status(name), completion_detail_for_concept(name),
                             truth_mask(name), reference(name), shared (upstream's orchestrator
                             "workspace" dict: loop memory, injected filters)
    ctx.memo                 per-run cache of derived data (not persisted: may be empty after a
                             resume, so never the only copy of anything)

StepResult (its references become the run's: do not modify them afterwards):
`reference` becomes the value of concept_to_infer (None: unchanged, e.g. a timing
step); `context_updates` set other concepts (loops publish the current element this way);
`done=False` leaves the item pending to be retried in a later cycle. Judgements set
`condition_met` (False -> completion detail CONDITION_NOT_MET, which `@:'`/`@:!` read) and may
set `truth_mask`. A raised exception fails the step and the run with that error.

A step may start ahead of its turn, concurrently with others, only when its sequence module's
`concurrent_safe(inference, plan)` returns True (see engine/sequences/__init__.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from normcode_core.engine.plan import Concept, Inference, Plan, unsafe_relative_path
from normcode_core.engine.reference import Reference
from normcode_core.engine.signs import SignIds

if TYPE_CHECKING:
    from normcode_core.agents.types import LLMRequest, LLMResponse
    from normcode_core.engine.state import RunState


class PathOutsidePlan(ValueError):
    """A plan tried to read or write outside its package / workspace."""


@dataclass
class ConceptValue:
    concept: Concept
    reference: Reference | None

    @property
    def name(self) -> str:
        return self.concept.name


@dataclass
class TruthMask:
    """Per-element truth values of a for-each judgement, used to filter gated steps."""

    tensor: Any
    axes: list[str]
    filter_axis: str
    shape: list[int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "axes": self.axes, "filter_axis": self.filter_axis, "shape": self.shape}


@dataclass
class StepResult:
    reference: Reference | None = None
    context_updates: dict[str, Reference] = field(default_factory=dict)
    done: bool = True
    condition_met: bool | None = None
    truth_mask: TruthMask | None = None
    # timing only: mark the items depending on this timing concept COMPLETED/SKIPPED
    skip_dependents: bool = False
    # looping/quantifying only: False -> reset the loop body and run again, True -> finished
    iteration_complete: bool | None = None
    # changes to RunState.shared: key -> value (None deletes the key)
    shared_updates: dict[str, Any] = field(default_factory=dict)
    # assigning `$=`: pairs of concept names that now denote the same concept
    identities: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class SandboxSpec:
    """What the scripts factory gets to build a run's sandbox worker."""

    run_id: str
    plan_dir: Path
    workspace: Path
    base_dir_for_paths: str
    timeout_s: float = 60.0
    memory_mb: int = 1024
    # where scripts' print()/stderr go: a file (appended), "-" for this process's stderr, None to drop
    log_path: Path | str | None = None


LLMCall = Callable[["LLMRequest"], Awaitable["LLMResponse"]]
AskCall = Callable[[dict[str, Any]], Awaitable[str]]
EmitCall = Callable[[str, dict[str, Any]], None]


class StepContext:
    """Everything one execution of one inference may see and do."""

    def __init__(
        self,
        *,
        plan: Plan,
        inference: Inference,
        execution: int,
        target: ConceptValue,
        function: ConceptValue | None,
        values: list[ConceptValue],
        context: list[ConceptValue],
        state: RunState,
        ids: SignIds,
        llm: LLMCall,
        ask: AskCall,
        emit: EmitCall,
        scripts_provider: Callable[[], Any],
        workspace: Path,
        base_dir_for_paths: str,
        memo: dict[str, Any] | None = None,
    ) -> None:
        self.plan = plan
        self.inference = inference
        self.working_interpretation: dict[str, Any] = inference.working_interpretation
        self.execution = execution
        self.target = target
        self.function = function
        self.values = values
        self.context = context
        self.state = state
        self.ids = ids
        self._llm = llm
        self._ask = ask
        self._emit = emit
        self._scripts_provider = scripts_provider
        self.plan_dir: Path = plan.root
        self.workspace: Path = workspace
        self.base_dir_for_paths = base_dir_for_paths
        self.memo: dict[str, Any] = memo if memo is not None else {}

    @property
    def flow_index(self) -> str:
        return self.inference.flow_index

    @property
    def sequence(self) -> str:
        return self.inference.sequence

    async def llm(self, request: LLMRequest) -> LLMResponse:
        return await self._llm(request)

    async def ask(self, question: dict[str, Any]) -> str:
        return await self._ask(question)

    @property
    def scripts(self) -> Any:
        return self._scripts_provider()

    def emit(self, type: str, data: dict[str, Any]) -> None:
        self._emit(type, data)

    def value(self, name: str) -> ConceptValue | None:
        """The first value concept with this name."""
        return next((v for v in self.values if v.name == name), None)

    def relative_path(self, path: str | Path) -> str:
        """`path` relative to the plan; absolute paths this run reported (under
        base_dir_for_paths or the workspace) are mapped back. Raises PathOutsidePlan."""
        text = str(path)
        for base in (self.base_dir_for_paths, str(self.workspace), str(self.plan_dir)):
            prefix = base.rstrip("/") + "/"
            if base and text.startswith(prefix):
                text = text[len(prefix):]
                break
        reason = unsafe_relative_path(text)
        if reason:
            raise PathOutsidePlan(f"{reason}: {str(path)!r}")
        return text

    def read_path(self, rel: str | Path) -> Path:
        rel_text = self.relative_path(rel)
        in_workspace = self.workspace / rel_text
        if in_workspace.exists():
            return in_workspace
        return self.plan_dir / rel_text

    def write_path(self, rel: str | Path) -> Path:
        target = self.workspace / self.relative_path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target
