"""The NormCode engine: loads compiled plans and runs them (no server or SDK imports).

See docs/engine.md. Public API:

    plan = load_plan(path)            # raises PlanInvalid(problems)
    problems = validate_plan(path)
    execution = Execution(plan, run_dir, llm=..., inputs=..., ...)
    outcome = await execution.run()
"""

from normcode_core.engine.checkpoint import Event
from normcode_core.engine.execution import Execution, Outcome
from normcode_core.engine.plan import (
    Concept,
    Inference,
    Plan,
    PlanInvalid,
    Problem,
    load_plan,
    validate_plan,
)
from normcode_core.engine.reference import SKIP, Reference
from normcode_core.engine.step import (
    ConceptValue,
    SandboxSpec,
    StepContext,
    StepResult,
    TruthMask,
)

__all__ = [
    "SKIP",
    "Concept",
    "ConceptValue",
    "Event",
    "Execution",
    "Inference",
    "Outcome",
    "Plan",
    "PlanInvalid",
    "Problem",
    "Reference",
    "SandboxSpec",
    "StepContext",
    "StepResult",
    "TruthMask",
    "load_plan",
    "validate_plan",
]
