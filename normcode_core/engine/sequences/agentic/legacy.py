"""The older agent sequences, whose function is fixed by the sequence instead of a paradigm.

| sequence                     | function                                              | inputs (legacy_values) |
|------------------------------|-------------------------------------------------------|------------------------|
| imperative_direct            | fill the template carried by the inputs, ask the LLM  | DIRECT                 |
| judgement_direct             | same, then check `condition`                          | JUDGEMENT_DIRECT       |
| imperative_python            | run (or first generate) the script at script_location | PYTHON                 |
| judgement_python             | same, then check `condition`                          | PYTHON                 |
| imperative_python_indirect   | the function concept, translated by the LLM into a    | PYTHON                 |
| judgement_python_indirect    | script-writing prompt, then as imperative_python      | PYTHON                 |
| imperative / judgement       | the function concept, translated by the LLM into an   | PLAIN / JUDGEMENT      |
|                              | instruction prompt, then one LLM call per input       |                        |

Each function is applied to every input combination; results become a new axis (named
`output_axis`, or the target concept's axis for some sequences, else "result") that is sliced
away when it has length one, and every element is wrapped as a sign `%id(value)`. Judgements
replace the results by `$(T)%` / `$(F)%` (all results equal `condition`) and report whether
the condition was met. The translation prompts of `imperative`, `judgement` and the `_indirect`
forms are this engine's own (upstream's text is not reused).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from string import Template
from typing import Any

from normcode_core.engine.reference import NONE_AXIS, Reference, element_action
from normcode_core.engine.sequences.agentic import legacy_values as styles
from normcode_core.engine.sequences.agentic.apply import (
    StepError,
    apply_across,
    slice_new_axis,
)
from normcode_core.engine.signs import wrap
from normcode_core.engine.step import StepContext, StepResult
from normcode_core.engine.tools import Toolbox, build_toolbox

Function = Callable[[dict[str, Any]], Awaitable[Any]]

TRUE_RESULT, FALSE_RESULT = "$(T)%", "$(F)%"

_CODE_BLOCK = re.compile(r"```(?:python|py)?\n(.*?)\n```", re.DOTALL)

TRANSLATE_PROMPT = Template(
    "Rewrite the following NormCode step as one plain-language instruction. NormCode marks inputs as "
    "{1}<$$(...)%>, {2}<$$(...)%>, ...; refer to them as $$input_1, $$input_2, ... (keep those placeholders "
    "verbatim).\n\nStep: $step\nIts result is: $output\n\nAnswer with the instruction only."
)
ANSWER_PLAIN = "Answer with the result only."
ANSWER_JSON = 'Respond with a JSON object {"thinking": "<your reasoning>", "answer": <the result>}.'
SCRIPT_PROMPT = Template(
    "Write a Python script for this task: $instruction\n\nThe inputs are available as the global variables "
    "input_1, input_2, ... The script must store its result in a global variable named `result`.\n"
    "Current inputs: input_1 = $$input_1, input_2 = $$input_2\n\nAnswer with the code in one ```python block."
)


def _clean_code(raw: Any) -> str:
    if not isinstance(raw, str):
        return ""
    blocks = _CODE_BLOCK.findall(raw)
    return blocks[0].strip() if blocks else raw


# ---------------------------------------------------------------------------- functions


def template_in_inputs(tools: Toolbox, template_key: str, with_thinking: bool) -> Function:
    """`*_direct`: the prompt template travels with the inputs (under `template_key`)."""

    async def generate(variables: dict[str, Any]) -> Any:
        variables = variables or {}
        if template_key not in variables:
            message = f"ERROR: Template key '{template_key}' not found in provided variables."
            return {"error": message} if with_thinking else message
        rest = {k: v for k, v in variables.items() if k != template_key}
        prompt = Template(str(variables[template_key])).safe_substitute(rest)
        if not with_thinking:
            return await tools.llm.generate(prompt)
        return _answer_of(await tools.llm.generate(prompt, response_format={"type": "json_object"}), answer_only=True)

    return generate


def from_instruction(tools: Toolbox, instruction: str, with_thinking: bool) -> Function:
    """`imperative` / `judgement`: the instruction, filled with each input dict, inputs listed."""

    async def generate(variables: dict[str, Any]) -> Any:
        variables = variables or {}
        listed = "\n".join(f"{key}: {value}" for key, value in variables.items())
        prompt = Template(instruction).safe_substitute(variables) + f"\n\nInputs:\n{listed}\n\n"
        if not with_thinking:
            return await tools.llm.generate(prompt + ANSWER_PLAIN)
        raw = await tools.llm.generate(prompt + ANSWER_JSON, response_format={"type": "json_object"})
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            return {"analysis": "", "answer": [], "raw_response": raw, "error": "Failed to parse JSON response"}
        return parsed.get("answer", []) if isinstance(parsed, dict) else parsed

    return generate


def _answer_of(raw: str, *, answer_only: bool) -> Any:
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        return {"raw_response": raw, "error": "Failed to parse JSON response"}
    if isinstance(parsed, dict) and "answer" in parsed:
        return parsed["answer"]
    return parsed


def script_runner(
    tools: Toolbox,
    *,
    script_key: str = "script_location",
    prompt_key: str = "prompt_location",
    with_thinking: bool = False,
    fixed_prompt: str | None = None,
) -> Function:
    """`*_python`: run the script at `script_key` (exec style); when it does not exist yet,
    generate it with the LLM from the prompt (at `prompt_key`, or `fixed_prompt`) and save it."""

    async def generate_code(prompt: str) -> str:
        if not with_thinking:
            return _clean_code(await tools.llm.generate(prompt))
        raw = await tools.llm.generate(
            prompt + '\n\nRespond with a JSON object containing "thinking" and "code" keys.',
            response_format={"type": "json_object"},
        )
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            return _clean_code(raw)
        return _clean_code(parsed.get("code", "")) if isinstance(parsed, dict) else ""

    async def run(variables: dict[str, Any]) -> Any:
        variables = variables or {}
        template = fixed_prompt
        if fixed_prompt is not None and variables.get(prompt_key):
            stored = tools.file_system.read(variables[prompt_key])
            if stored.get("status") == "success" and stored.get("content"):
                template = stored["content"]
            else:
                tools.file_system.save(fixed_prompt, variables[prompt_key])
        inputs = {k: v for k, v in variables.items() if k not in (script_key, prompt_key)}
        if not variables.get(script_key):
            return {"status": "error", "message": f"No valid key provided. Use '{script_key}' for file-based operations."}
        script_path = variables[script_key]
        stored_script = tools.file_system.read(script_path)
        if stored_script.get("status") == "success":
            code = stored_script["content"]
        else:
            if template is None:
                if prompt_key not in variables:
                    return {
                        "status": "error",
                        "message": f"Script not found at '{script_path}' and no '{prompt_key}' was provided to generate it.",
                    }
                stored_prompt = tools.file_system.read(variables[prompt_key])
                if stored_prompt.get("status") != "success":
                    return {
                        "status": "error",
                        "message": f"Failed to read prompt file at '{variables[prompt_key]}'. Reason: {stored_prompt.get('message')}",
                    }
                template = stored_prompt["content"]
            code = await generate_code(Template(str(template)).safe_substitute(inputs))
            if not code:
                return {"status": "error", "message": "Code generation failed, no code in response."}
            saved = tools.file_system.save(code, script_path)
            if saved.get("status") == "error":
                return saved
        return await tools.python_interpreter.execute(code, inputs)

    return run


async def _translated(ctx: StepContext, tools: Toolbox, instruction_name: str) -> str:
    """The function concept as a plain-language instruction (one LLM call)."""
    output = ctx.target.concept.natural_name or ctx.target.name
    prompt = TRANSLATE_PROMPT.substitute(step=instruction_name, output=output)
    return (await tools.llm.generate(prompt, system_message="")).strip()


# ---------------------------------------------------------------------------- sequences


@dataclass(frozen=True)
class Form:
    inputs: styles.InputStyle
    judgement: bool = False
    # upstream kept the function concept's axis for these (else `_none_axis`)
    function_axis: bool = False
    # ...and named the new result axis after the target concept's axis for these
    target_axis: bool = False
    # script judgements: any `condition` but None counts, and a single outer element is unwrapped
    python_condition: bool = False


def _function_reference(ctx: StepContext, function: Function, keep_axis: bool) -> Reference:
    axis = NONE_AXIS
    if keep_axis and ctx.function is not None and ctx.function.reference is not None:
        axis = ctx.function.reference.axes[0]
    return Reference([axis], (1,)).with_data([function])


async def _function_per_instruction(ctx: StepContext, make: Callable[[str], Awaitable[Function]]) -> Reference:
    """One function per element of the function concept (the `_indirect` sequences)."""
    if ctx.function is None or ctx.function.reference is None:
        raise StepError("the step's function concept has no value")
    built: dict[str, Function] = {}
    for name in ctx.function.reference.leaves():
        if isinstance(name, str) and name not in built:
            built[name] = await make(name)
    return element_action(lambda name: built.get(name) if isinstance(name, str) else None, [ctx.function.reference])


async def _run(ctx: StepContext, form: Form, functions: Reference, tools: Toolbox) -> StepResult:
    interpretation = ctx.working_interpretation
    inputs = styles.build_legacy_inputs(ctx.values, interpretation, form.inputs, tools)
    if inputs is None:
        raise StepError(f"{ctx.sequence} has no input values (check value_order)")
    new_axis = interpretation.get("output_axis")
    if not new_axis:
        new_axis = (ctx.target.concept.axis_name if form.target_axis else "") or "result"
    applied = await apply_across(functions, inputs, new_axis=new_axis, as_list=_as_list, ids=ctx.ids)
    results = slice_new_axis(applied, new_axis)
    condition_met: bool | None = None
    if form.judgement:
        condition = interpretation.get("condition")
        condition_met = False  # upstream's default when no condition is given
        if condition is not None and (condition or form.python_condition):
            data = results.tensor
            if form.python_condition and isinstance(data, list) and len(data) == 1:
                data = data[0]
            condition_met = data is not None and _all_match(data, condition)
            results = Reference.from_data([TRUE_RESULT if condition_met else FALSE_RESULT], ["condition_met"])
    wrapped = element_action(lambda element, position: _wrapped(element, ctx, position), [results], index_awareness=True)
    return StepResult(reference=wrapped, condition_met=condition_met)


def _as_list(result: Any) -> list[Any]:
    return result if isinstance(result, list) else [result]


def _all_match(data: Any, condition: Any) -> bool:
    if isinstance(data, list):
        return all(_all_match(item, condition) for item in data)
    return data == condition


def _wrapped(element: Any, ctx: StepContext, position: dict[str, int]) -> str:
    value = element[0] if isinstance(element, list) and element else element
    return wrap(value, ctx.ids.at("result", *sorted(position.items())))


DIRECT = Form(styles.DIRECT)
JUDGEMENT_DIRECT = Form(styles.JUDGEMENT_DIRECT, judgement=True, function_axis=True, target_axis=True)
PYTHON = Form(styles.PYTHON)
JUDGEMENT_PYTHON = Form(styles.PYTHON, judgement=True, python_condition=True)
PYTHON_INDIRECT = Form(styles.PYTHON, function_axis=True, target_axis=True)
JUDGEMENT_PYTHON_INDIRECT = Form(styles.PYTHON, judgement=True, function_axis=True, target_axis=True, python_condition=True)
PLAIN = Form(styles.PLAIN, function_axis=True, target_axis=True)
JUDGEMENT = Form(styles.JUDGEMENT, judgement=True, function_axis=True, target_axis=True)


async def _direct(ctx: StepContext, form: Form) -> StepResult:
    tools = build_toolbox(ctx, llm_style="legacy")
    interpretation = ctx.working_interpretation
    function = template_in_inputs(
        tools, interpretation.get("template_key", "prompt_template"), bool(interpretation.get("with_thinking", False))
    )
    return await _run(ctx, form, _function_reference(ctx, function, form.function_axis), tools)


async def _python(ctx: StepContext, form: Form) -> StepResult:
    tools = build_toolbox(ctx, llm_style="legacy")
    interpretation = ctx.working_interpretation
    function = script_runner(
        tools,
        script_key=interpretation.get("script_key", "script_location"),
        prompt_key=interpretation.get("prompt_key", "prompt_location"),
        with_thinking=bool(interpretation.get("with_thinking", False)),
    )
    return await _run(ctx, form, _function_reference(ctx, function, form.function_axis), tools)


async def _python_indirect(ctx: StepContext, form: Form) -> StepResult:
    tools = build_toolbox(ctx, llm_style="legacy")
    with_thinking = bool(ctx.working_interpretation.get("with_thinking", False))

    async def make(name: str) -> Function:
        instruction = await _translated(ctx, tools, name)
        prompt = SCRIPT_PROMPT.substitute(instruction=instruction)
        return script_runner(tools, with_thinking=with_thinking, fixed_prompt=prompt)

    return await _run(ctx, form, await _function_per_instruction(ctx, make), tools)


async def _plain(ctx: StepContext, form: Form) -> StepResult:
    tools = build_toolbox(ctx, llm_style="legacy")
    with_thinking = bool(ctx.working_interpretation.get("with_thinking", False))
    name = ctx.function.name if ctx.function is not None else ""
    function = from_instruction(tools, await _translated(ctx, tools, name), with_thinking)
    return await _run(ctx, form, _function_reference(ctx, function, form.function_axis), tools)


async def run_imperative_direct(ctx: StepContext) -> StepResult:
    return await _direct(ctx, DIRECT)


async def run_judgement_direct(ctx: StepContext) -> StepResult:
    return await _direct(ctx, JUDGEMENT_DIRECT)


async def run_imperative_python(ctx: StepContext) -> StepResult:
    return await _python(ctx, PYTHON)


async def run_judgement_python(ctx: StepContext) -> StepResult:
    return await _python(ctx, JUDGEMENT_PYTHON)


async def run_imperative_python_indirect(ctx: StepContext) -> StepResult:
    return await _python_indirect(ctx, PYTHON_INDIRECT)


async def run_judgement_python_indirect(ctx: StepContext) -> StepResult:
    return await _python_indirect(ctx, JUDGEMENT_PYTHON_INDIRECT)


async def run_imperative(ctx: StepContext) -> StepResult:
    return await _plain(ctx, PLAIN)


async def run_judgement(ctx: StepContext) -> StepResult:
    return await _plain(ctx, JUDGEMENT)
