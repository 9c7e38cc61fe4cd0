"""`timing`: `@:'` / `@if` (run if), `@:!` / `@if!` (run if not), `@.` / `@after`.

The condition is a concept name (`syntax.condition`). `after` waits until it is complete. `if`
and `if!` wait until it is complete, then read the *completion detail* of the step that produced
it (not its value): a judgement whose assertion failed has `condition_not_met`. When the branch
must not run, the items that use this timing's concept are marked skipped by the runtime.
When it runs and the condition carries a truth mask (a for-each judgement), the mask is left in
the shared run memory as a filter for the parent step's inputs (upstream only does so when that
memory already holds something, e.g. loop state; kept as is).
"""

from __future__ import annotations

from normcode_core.engine.state import COMPLETE, CONDITION_NOT_MET, SUCCESS
from normcode_core.engine.step import StepContext, StepResult

MARKERS = {"after": "after", "@.": "after", "if": "if", "@:'": "if", "if!": "if!", "@:!": "if!"}


async def run(ctx: StepContext) -> StepResult:
    syntax = ctx.working_interpretation.get("syntax") or {}
    marker = MARKERS.get(syntax.get("marker"))
    condition = syntax.get("condition")
    state = ctx.state
    if marker is None or not condition:
        return StepResult(done=False)
    if state.concept_status(condition) != COMPLETE:
        return StepResult(done=False)
    if marker == "after":
        return StepResult()
    detail = state.completion_detail_for_concept(condition)
    if detail == CONDITION_NOT_MET:
        skip = marker == "if"
    elif detail in (SUCCESS, None):
        skip = marker == "if!"
    else:
        # e.g. the condition's producer was itself skipped: upstream keeps waiting.
        return StepResult(done=False)
    if skip:
        return StepResult(skip_dependents=True)
    return StepResult(shared_updates=_filter_for_parent(ctx, condition))


def _filter_for_parent(ctx: StepContext, condition: str) -> dict:
    shared = ctx.state.shared
    mask = ctx.state.truth_mask(condition)
    parent = ctx.flow_index.rpartition(".")[0]
    if not shared or not mask or not parent:
        return {}
    key = f"__filter__{parent}"
    filters = list(shared.get(key, []))
    filters.append({"truth_mask": mask, "condition": condition, "source_flow_index": ctx.flow_index})
    return {key: filters}
