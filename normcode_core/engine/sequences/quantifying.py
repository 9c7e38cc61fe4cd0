"""`quantifying`: upstream's older form of looping (`*every` with `quantifier_index`).

Same iteration as `looping`; the differences are upstream's: `group_base` names a value
*concept* (its axis is iterated), the results are joined along an axis named after the
inferred concept, and `_none_axis` becomes `value` instead of being collapsed.
"""

from __future__ import annotations

from normcode_core.engine.sequences.looping import iterate
from normcode_core.engine.step import StepContext, StepResult


async def run(ctx: StepContext) -> StepResult:
    return iterate(ctx, quantifying=True)
