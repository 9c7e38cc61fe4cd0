"""`imperative_input`: the value is a human's answer to the prompt held by the value concept.

The first ordered value is the prompt (a `%{prompt}(path)` sign is replaced by the file's text),
further values are shown as context. The question goes to the run (`ctx.ask`): the run waits
for the answer without blocking. Results are wrapped as `%id(answer)`; the new result axis is
sliced away like in the other older sequences (upstream's default tool crashed here; this is the
behaviour of its working legacy tool).
"""

from __future__ import annotations

from normcode_core.engine.sequences.agentic import legacy_values as styles
from normcode_core.engine.sequences.agentic.legacy import (
    Form,
    _function_reference,
    _run,
)
from normcode_core.engine.step import StepContext, StepResult
from normcode_core.engine.tools import build_toolbox

USER_INPUT = Form(styles.USER_INPUT, function_axis=True)


async def run_imperative_input(ctx: StepContext) -> StepResult:
    tools = build_toolbox(ctx, llm_style="legacy")
    prompt_key = ctx.working_interpretation.get("prompt_key", "prompt_text")
    function = tools.user_input.create_legacy_input_function(prompt_key=prompt_key)
    return await _run(ctx, USER_INPUT, _function_reference(ctx, function, USER_INPUT.function_axis), tools)
