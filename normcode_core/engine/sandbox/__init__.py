"""Plan scripts run in a long-lived worker process per run (see runner.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .codec import Opaque
from .runner import ScriptFailure, ScriptOutcome, ScriptSandbox

if TYPE_CHECKING:
    from normcode_core.engine.step import SandboxSpec


def create_worker(spec: SandboxSpec) -> ScriptSandbox:
    """The scripts factory the runtime calls (lazily, once per run).

    Scripts run with the run's workspace as working directory (for `plan run` that is the
    plan directory, as upstream ran scripts with the plan directory as cwd)."""
    return ScriptSandbox(
        spec.workspace, timeout_s=spec.timeout_s, memory_mb=spec.memory_mb, log_path=getattr(spec, "log_path", None)
    )


__all__ = ["Opaque", "ScriptFailure", "ScriptOutcome", "ScriptSandbox", "create_worker"]
