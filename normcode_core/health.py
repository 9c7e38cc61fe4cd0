"""Health checks: GET /health (liveness, cheap) and GET /ready (every plugin's readiness checks).

Checks never call an LLM provider; each is bounded by CHECK_TIMEOUT_S so /ready always answers fast.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from normcode_core import __version__
from normcode_core.logging import get_logger, redact

CHECK_TIMEOUT_S = 2.0
logger = get_logger("normcode.health")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class HealthCheck:
    """A named readiness check. `run` may be sync (run in a thread) or async; it returns a CheckResult
    or raises, which counts as failing with the exception text as the reason."""

    name: str
    run: Callable[[], CheckResult | Awaitable[CheckResult]]


async def run_check(check: HealthCheck) -> CheckResult:
    try:
        if inspect.iscoroutinefunction(check.run):
            result = await asyncio.wait_for(check.run(), CHECK_TIMEOUT_S)
        else:
            result = await asyncio.wait_for(asyncio.to_thread(check.run), CHECK_TIMEOUT_S)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, CHECK_TIMEOUT_S)
    except asyncio.TimeoutError:
        return CheckResult(False, f"timed out after {CHECK_TIMEOUT_S:g}s")
    except Exception as exc:  # noqa: BLE001 - a crashing check is a failing check
        return CheckResult(False, redact(f"{type(exc).__name__}: {exc}"))
    if not isinstance(result, CheckResult):
        return CheckResult(False, f"check returned {type(result).__name__}, not CheckResult")
    return CheckResult(result.ok, redact(result.detail))


async def readiness(app_state: Any) -> dict[str, CheckResult]:
    """Run every plugin's checks concurrently; results by check name."""
    checks: list[HealthCheck] = [
        check for checks in app_state.plugins.hook.health_checks(app_state=app_state) for check in checks or []
    ]
    results = await asyncio.gather(*(run_check(check) for check in checks))
    return {check.name: result for check, result in zip(checks, results)}


async def health(request: Request) -> JSONResponse:
    """Liveness: 200 whenever the process serves requests, with the Docker strategy's fields."""
    state = request.app.state
    plans_count: int | None = None
    status = "healthy"
    storage = getattr(state, "storage", None)
    if storage is not None:
        try:
            plans_count = await asyncio.wait_for(asyncio.to_thread(storage.count_plans), CHECK_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - /ready explains storage problems; /health only flags them
            status = "degraded"
    else:
        status = "degraded"
    runs = getattr(state, "runs", None)
    return JSONResponse(
        {
            "status": status,
            "version": __version__,
            "data_dir": str(state.settings.data_dir),
            "plans_count": plans_count,
            "active_runs": runs.active_count() if runs is not None else 0,
        }
    )


async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 `{ready: true, checks}` or 503 with the failing checks and why."""
    results = await readiness(request.app.state)
    checks = {name: {"ok": result.ok, "detail": result.detail} for name, result in results.items()}
    failing = [name for name, result in results.items() if not result.ok]
    if not failing:
        return JSONResponse({"ready": True, "checks": checks})
    detail = "; ".join(f"{name}: {results[name].detail}" for name in failing)
    return JSONResponse(
        {"ready": False, "error": "not_ready", "detail": detail, "checks": checks}, status_code=503
    )
