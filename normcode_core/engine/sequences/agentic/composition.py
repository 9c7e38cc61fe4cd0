"""`imperative_in_composition` and `judgement_in_composition`: steps whose function is built
from a paradigm (working_interpretation["paradigm"]).

For each element of the function concept (the "vertical" input: usually a prompt or script
location sign) the paradigm's sequence builds a function; the first one is applied to every
combination of the value concepts (the "horizontal" inputs, see values.py). A judgement then
asserts its condition over the results (assertion.py).
"""

from __future__ import annotations

import weakref
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from normcode_core.engine.paradigms import (
    ParadigmError,
    ParadigmLibrary,
    ParadigmState,
    run_paradigm,
)
from normcode_core.engine.paradigms.loader import Paradigm
from normcode_core.engine.reference import Reference, element_action
from normcode_core.engine.sequences.agentic.apply import (
    StepError,
    apply_across,
    call_without_inputs,
    collapse_new_axis,
    element_ids,
    first_function,
)
from normcode_core.engine.sequences.agentic.assertion import assert_condition
from normcode_core.engine.sequences.agentic.values import build_inputs
from normcode_core.engine.step import StepContext, StepResult, TruthMask
from normcode_core.engine.tools import Toolbox, build_toolbox
from normcode_core.engine.tools.perception import sign_ids


def concept_info(value: Any, name: str | None = None) -> SimpleNamespace | None:
    if value is None:
        return None
    concept = value.concept
    return SimpleNamespace(
        id=concept.id,
        name=concept.name if name is None else name,
        type=concept.type,
        context=concept.context,
        axis_name=concept.axis_name,
        natural_name=concept.natural_name,
    )


def build_functions(ctx: StepContext, paradigm: Paradigm, toolbox: Toolbox) -> Reference:
    """One function per element of the function concept, built by the paradigm."""
    function = ctx.function
    if function is None or function.reference is None:
        raise StepError("the step's function concept has no value")

    def build(instruction: Any) -> Any:
        if not isinstance(instruction, str):
            return None
        state = ParadigmState(
            toolbox,
            vertical=instruction,
            function=SimpleNamespace(concept=concept_info(function, instruction)),
            inference=SimpleNamespace(concept=concept_info(ctx.target)),
        )
        return run_paradigm(paradigm, toolbox, state).get("instruction_fn")

    return element_action(build, [function.reference])


async def apply_paradigm(ctx: StepContext) -> Reference:
    interpretation = ctx.working_interpretation
    name = interpretation.get("paradigm")
    if not name:
        raise StepError(f"{ctx.sequence} requires a 'paradigm' in its working_interpretation")
    memo_key = f"paradigm:{name}"
    paradigm = ctx.memo.get(memo_key)
    if paradigm is None:  # once per run and paradigm: the package's paradigm files are read-only
        paradigm = ctx.memo[memo_key] = ParadigmLibrary(ctx.plan.paradigm_dir).load(name)
    toolbox = build_toolbox(ctx)
    functions = build_functions(ctx, paradigm, toolbox)
    with sign_ids(element_ids(ctx.ids, "inputs")):
        inputs = build_inputs(ctx.values, interpretation, toolbox.perception_router)
    if inputs is None:
        return await call_without_inputs(first_function(functions), ctx.ids)
    new_axis = interpretation.get("output_axis") or "result"
    if interpretation.get("create_axis_on_list_output", True):
        as_list = _as_list
    else:
        as_list = _one_item
    applied = await apply_across(functions, inputs, new_axis=new_axis, as_list=as_list, ids=ctx.ids)
    return collapse_new_axis(applied, new_axis)


def _as_list(result: Any) -> list[Any]:
    return result if isinstance(result, list) else [result]


def _one_item(result: Any) -> list[Any]:
    return [result]


async def run_imperative(ctx: StepContext) -> StepResult:
    return StepResult(reference=await apply_paradigm(ctx))


async def run_judgement(ctx: StepContext) -> StepResult:
    results = await apply_paradigm(ctx)
    assertion = assert_condition(results, ctx.working_interpretation.get("assertion_condition"))
    mask = None
    if assertion.filter_axis is not None:
        reference = assertion.reference
        mask = TruthMask(
            tensor=reference.tensor, axes=list(reference.axes), filter_axis=assertion.filter_axis, shape=list(reference.shape)
        )
    return StepResult(reference=assertion.reference, condition_met=assertion.condition_met, truth_mask=mask)


# Tools whose use makes a step's effect depend on when it runs (files, scripts, a human).
ORDER_DEPENDENT_TOOLS = frozenset({"file_system", "python_interpreter", "user_input"})
ITERATING = frozenset({"looping", "quantifying"})


@dataclass(frozen=True)
class _PlanShape:
    """Which concepts are written by several steps, and which steps repeat inside loops."""

    rewritten: frozenset[str]
    loop_roots: tuple[str, ...]


# The shape of the last plan asked about, held by a weak reference: matched by identity of a
# live Plan object (whose inferences never change), so runs of other plans never see it and it
# keeps no plan (or extracted zip) alive.
_shape_cache: list[tuple[weakref.ref, _PlanShape]] = []


def _plan_shape(plan: Any) -> _PlanShape:
    for cached_ref, shape in _shape_cache:
        if cached_ref() is plan:
            return shape
    writers = Counter(inference.concept_to_infer for inference in plan.inferences)
    shape = _PlanShape(
        rewritten=frozenset(name for name, count in writers.items() if count > 1),
        loop_roots=tuple(i.flow_index + "." for i in plan.inferences if i.sequence in ITERATING),
    )
    _shape_cache[:] = [(weakref.ref(plan), shape)]
    return shape


def concurrent_safe(inference: Any, plan: Any = None) -> bool:
    """Whether a composition step may run ahead of upstream's order, concurrently.

    Only when nothing can change under it: its paradigm only prompts the LLM and reshapes data
    (no file, script or human-input affordance), none of its inputs is written by more than one
    step, and it is not repeated inside a loop. Otherwise a step started early could see an
    input that is replaced before its turn, and its LLM call would be wasted.
    """
    name = (getattr(inference, "working_interpretation", None) or {}).get("paradigm")
    directory = getattr(plan, "paradigm_dir", None)
    if not name or directory is None:
        return False
    try:
        paradigm = ParadigmLibrary(directory).load(name)
    except ParadigmError:
        return False
    if any(affordance.tool in ORDER_DEPENDENT_TOOLS for affordance in paradigm.affordances.values()):
        return False
    shape = _plan_shape(plan)
    inputs = [*inference.value_concepts, *inference.context_concepts, inference.function_concept]
    if any(concept in shape.rewritten for concept in inputs if concept):
        return False
    return not inference.flow_index.startswith(shape.loop_roots)


def runs_scripts(inference: Any, plan: Any) -> bool:
    """Whether a step may call the script sandbox (so the runtime can start its worker early)."""
    sequence = getattr(inference, "sequence", "") or ""
    if "python" in sequence:
        return True
    if not sequence.endswith("_in_composition"):
        return False
    name = (getattr(inference, "working_interpretation", None) or {}).get("paradigm")
    directory = getattr(plan, "paradigm_dir", None)
    if not name or directory is None:
        return False
    try:
        paradigm = ParadigmLibrary(directory).load(name)
    except ParadigmError:
        return False
    return any(affordance.tool == "python_interpreter" for affordance in paradigm.affordances.values())
