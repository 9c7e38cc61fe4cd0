"""`simple`: the value is the function's reference, or the cross product of all references."""

from __future__ import annotations

from normcode_core.engine.reference import cross_product
from normcode_core.engine.step import StepContext, StepResult


async def run(ctx: StepContext) -> StepResult:
    refs = []
    if ctx.function is not None and ctx.function.reference is not None:
        refs.append(ctx.function.reference)
    refs.extend(v.reference for v in ctx.values if v.reference is not None)
    if not refs:
        return StepResult()
    return StepResult(reference=refs[0] if len(refs) == 1 else cross_product(refs))
