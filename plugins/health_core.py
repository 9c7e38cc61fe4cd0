"""Built-in readiness checks: data dir, storage, agents, plan registry, execution manager."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from normcode_core.health import CheckResult, HealthCheck
from normcode_core.hookspecs import hookimpl


@hookimpl
def health_checks(app_state: Any) -> list[HealthCheck]:
    settings = app_state.settings
    return [
        HealthCheck("data_dir_exists", lambda: _data_dir_exists(settings.data_dir)),
        HealthCheck("data_dir_writable", lambda: _writable(settings.data_dir)),
        HealthCheck("storage", lambda: _storage(app_state)),
        HealthCheck("agents", lambda: _agents(app_state)),
        HealthCheck("plan_registry", lambda: _plan_registry(app_state)),
        HealthCheck("execution_manager", lambda: _execution_manager(app_state)),
    ]


def _data_dir_exists(data_dir: Path) -> CheckResult:
    if data_dir.is_dir():
        return CheckResult(True, str(data_dir))
    return CheckResult(False, f"{data_dir} does not exist or is not a directory")


def _writable(data_dir: Path) -> CheckResult:
    # Really write (access() says yes to root even on read-only mounts).
    probe = data_dir / f".write-probe-{uuid.uuid4().hex}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"ok")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        return CheckResult(False, f"cannot write to {data_dir}: {exc.strerror or exc}")
    return CheckResult(True, "writable")


def _storage(app_state: Any) -> CheckResult:
    storage = getattr(app_state, "storage", None)
    if storage is None:
        return CheckResult(False, "no storage opened")
    storage.ping()
    if not storage.schema_current():
        return CheckResult(False, "database schema is not at the newest migration")
    return CheckResult(True, f"{storage.dialect} reachable, schema current")


def _agents(app_state: Any) -> CheckResult:
    agents = getattr(app_state, "agents", None)
    if agents is None:
        return CheckResult(False, "agent registry not loaded")
    statuses = agents.status()
    usable = [status["name"] for status in statuses if status.get("available")]
    unusable = "; ".join(
        f"{s['name']}: {s.get('reason') or 'unavailable'}" for s in statuses if not s.get("available")
    )
    if usable:
        detail = f"{len(usable)} usable: {', '.join(usable)}"
        return CheckResult(True, f"{detail}; unavailable: {unusable}" if unusable else detail)
    return CheckResult(False, f"no usable agent ({unusable or 'none configured'})")


def _plan_registry(app_state: Any) -> CheckResult:
    plans_dir = Path(app_state.settings.storage.plans_dir)
    if not plans_dir.is_dir():
        return CheckResult(False, f"plans directory {plans_dir} is missing")
    storage = getattr(app_state, "storage", None)
    if storage is None:
        return CheckResult(False, "no storage opened")
    return CheckResult(True, f"{storage.count_plans()} plans")


def _execution_manager(app_state: Any) -> CheckResult:
    runs = getattr(app_state, "runs", None)
    if runs is None:
        return CheckResult(False, "run manager not started")
    if not getattr(runs, "reconciled", False):
        return CheckResult(False, "reconciling interrupted runs")
    return CheckResult(True, f"{runs.active_count()} active runs")
