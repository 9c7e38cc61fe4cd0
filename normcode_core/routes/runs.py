"""Runs API: start runs, list and inspect them, results, stop/cancel, resume, human input, artifacts.

Paths and fields follow upstream's deployment server (`llm_model`, `ground_inputs`, `progress`,
`completed_at`, `/stop`, `/resume?fork=`); everything else is added.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import BaseRoute, Route

from normcode_core.errors import ApiError
from normcode_core.plans.package import safe_relative_path
from normcode_core.runs.manager import RunManager, RunRequest, ready_run_manager
from normcode_core.storage.base import RUN_STATES, RunRecord

MAX_PAGE = 500
MAX_ANSWER_CHARS = 100_000
MAX_LISTED_ARTIFACTS = 10_000


async def _json_body(request: Request, *, required: bool) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ApiError(400, "missing_body", "send a JSON object")
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


def _pick(body: dict[str, Any], *names: str) -> Any:
    """The first of several accepted names (ours first, then upstream's) that is present."""
    given = [name for name in names if body.get(name) is not None]
    if len(given) > 1 and any(body[name] != body[given[0]] for name in given[1:]):
        raise ApiError(422, "conflicting_fields", f"{' and '.join(given)} name the same thing; send one")
    return body[given[0]] if given else None


def _optional_str(body: dict[str, Any], *names: str) -> str | None:
    value = _pick(body, *names)
    if value is not None and (not isinstance(value, str) or not value):
        raise ApiError(422, "invalid_field", f"{names[0]} must be a non-empty string")
    return value


def run_json(record: RunRecord, runs: RunManager) -> dict[str, Any]:
    """A run as the API shows it (upstream's RunStatus fields plus ours)."""
    live = runs.live_progress(record.run_id) if record.status == "running" else None
    progress, usage = live if live is not None else (_loads(record.progress_json), _loads(record.usage_json))
    progress = {
        "completed_count": progress.get("completed_count", 0),
        "total_count": progress.get("total_count", 0),
        "cycle_count": progress.get("cycle_count", 0),
        "current_inference": progress.get("current_inference"),
    }
    return {
        "run_id": record.run_id,
        "plan_id": record.plan_id,
        "plan_version": record.plan_version,
        "plan_hash": record.plan_hash,
        "status": record.status,
        "agent": record.agent,
        "llm_model": record.agent,
        "inputs": _loads(record.inputs_json),
        "max_cycles": record.max_cycles,
        "error": record.error,
        "progress": progress,
        "usage": {
            "llm_calls": int(usage.get("llm_calls", 0)),
            "input_tokens": int(usage.get("input_tokens", 0)),
            "output_tokens": int(usage.get("output_tokens", 0)),
        },
        "parent_run_id": record.parent_run_id,
        "created_at": record.created_at.isoformat(),
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "completed_at": record.finished_at.isoformat() if record.finished_at else None,
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "breakpoints": [],
    }


def _loads(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# -- create and list ----------------------------------------------------------------------------
async def start_run(request: Request) -> JSONResponse:
    """POST /api/runs {plan_id, version?, inputs?|ground_inputs?, agent?|llm_model?, max_cycles?, run_id?}"""
    runs = ready_run_manager(request.app.state)
    body = await _json_body(request, required=True)
    plan_id = body.get("plan_id")
    if not isinstance(plan_id, str) or not plan_id:
        raise ApiError(422, "invalid_field", "plan_id (string) is required")
    inputs = _pick(body, "inputs", "ground_inputs")
    if inputs is not None and not isinstance(inputs, dict):
        raise ApiError(422, "invalid_inputs", "inputs must be an object keyed by concept name")
    version = body.get("version")
    if version is not None and (not isinstance(version, (str, int)) or isinstance(version, bool)):
        raise ApiError(422, "invalid_field", "version must be a string such as \"2\"")
    max_cycles = body.get("max_cycles")
    if max_cycles is not None and (not isinstance(max_cycles, int) or isinstance(max_cycles, bool)):
        raise ApiError(422, "invalid_max_cycles", "max_cycles must be an integer")
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= 200:
        raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key must be 1-200 characters")
    record, created = await runs.create_run(
        RunRequest(
            plan_id=plan_id,
            version=str(version) if version is not None else None,
            inputs=inputs or {},
            agent=_optional_str(body, "agent", "llm_model"),
            max_cycles=max_cycles,
            run_id=_optional_str(body, "run_id"),
            idempotency_key=key,
        )
    )
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return JSONResponse(run_json(record, runs), headers=headers)


async def list_runs(request: Request) -> JSONResponse:
    """GET /api/runs?plan_id=&status=&limit=&offset=: newest first, a JSON array as upstream;
    the total is in the X-Total-Count header."""
    runs = ready_run_manager(request.app.state)
    query = request.query_params
    status = query.get("status") or None
    if status is not None and status not in RUN_STATES:
        raise ApiError(422, "invalid_status", f"status must be one of {', '.join(RUN_STATES)}")
    plan_id = query.get("plan_id") or None
    limit = _int_param(query.get("limit"), "limit", 50, 1, MAX_PAGE)
    offset = _int_param(query.get("offset"), "offset", 0, 0, 10**9)
    records, total = await asyncio.gather(
        asyncio.to_thread(runs.storage.list_runs, plan_id, status, limit, offset),
        asyncio.to_thread(runs.storage.count_runs, plan_id, status),
    )
    return JSONResponse([run_json(record, runs) for record in records], headers={"X-Total-Count": str(total)})


def _int_param(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, "invalid_query", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(422, "invalid_query", f"{name} must be between {low} and {high}")
    return value


async def get_run(request: Request) -> JSONResponse:
    runs = ready_run_manager(request.app.state)
    return JSONResponse(run_json(await runs.get(request.path_params["run_id"]), runs))


async def get_result(request: Request) -> JSONResponse:
    """GET /api/runs/{id}/result: the final concepts of a completed run, whole."""
    runs = ready_run_manager(request.app.state)
    record = await runs.get(request.path_params["run_id"])
    if record.status != "completed":
        detail = f"run {record.run_id} is {record.status}" + (f": {record.error}" if record.error else "")
        raise ApiError(409, "run_not_completed", detail)
    result = await asyncio.to_thread(runs.read_result, record.run_id)
    if result is None:
        raise ApiError(404, "result_missing", f"run {record.run_id} completed but its result file is missing")
    return JSONResponse(result)


# -- control ------------------------------------------------------------------------------------
async def stop_run(request: Request) -> JSONResponse:
    """POST /api/runs/{id}/stop (alias /cancel): ends in `cancelled` before the next step starts."""
    runs = ready_run_manager(request.app.state)
    record = await runs.cancel(request.path_params["run_id"])
    body = run_json(record, runs)
    body["cancel_requested"] = True
    return JSONResponse(body)


async def resume_run(request: Request) -> JSONResponse:
    """POST /api/runs/{id}/resume[?fork=true&llm_model=] or JSON {fork, agent|llm_model}."""
    runs = ready_run_manager(request.app.state)
    body = await _json_body(request, required=False)
    fork = body.get("fork", request.query_params.get("fork", False))
    if isinstance(fork, str):
        if fork.lower() not in ("true", "false", "1", "0"):
            raise ApiError(422, "invalid_field", "fork must be true or false")
        fork = fork.lower() in ("true", "1")
    if not isinstance(fork, bool):
        raise ApiError(422, "invalid_field", "fork must be true or false")
    agent = _optional_str(body, "agent", "llm_model") or request.query_params.get("llm_model") or None
    run_id = request.path_params["run_id"]
    record = await runs.resume(run_id, fork=fork, agent=agent)
    result = run_json(record, runs)
    result["resumed_from"] = {"run_id": run_id}
    result["is_fork"] = fork
    return JSONResponse(result)


# -- human input --------------------------------------------------------------------------------
async def list_inputs(request: Request) -> JSONResponse:
    """GET /api/runs/{id}/inputs: the questions the run waits on."""
    runs = ready_run_manager(request.app.state)
    record = await runs.get(request.path_params["run_id"])
    questions = await asyncio.to_thread(runs.open_questions, record.run_id)
    return JSONResponse({"run_id": record.run_id, "status": record.status, "questions": questions})


async def answer_input(request: Request) -> JSONResponse:
    """POST /api/runs/{id}/inputs/{qid} {answer}: the run continues with it."""
    runs = ready_run_manager(request.app.state)
    body = await _json_body(request, required=True)
    answer = _pick(body, "answer", "text", "value")
    if not isinstance(answer, str):
        raise ApiError(422, "invalid_answer", "answer (string) is required")
    if len(answer) > MAX_ANSWER_CHARS:
        raise ApiError(413, "answer_too_large", f"answers are limited to {MAX_ANSWER_CHARS} characters")
    record = await runs.answer(request.path_params["run_id"], request.path_params["question_id"], answer)
    return JSONResponse(run_json(record, runs))


# -- artifacts ----------------------------------------------------------------------------------
def _artifacts(runs: RunManager, run_id: str) -> list[dict[str, Any]]:
    root = (runs.run_dir(run_id) / "artifacts").resolve()
    if not root.is_dir():
        return []
    listed = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(root):
            stat = path.stat()
            listed.append({"path": path.relative_to(root).as_posix(), "size": stat.st_size, "modified": stat.st_mtime})
            if len(listed) >= MAX_LISTED_ARTIFACTS:
                break
    return listed


async def list_artifacts(request: Request) -> JSONResponse:
    runs = ready_run_manager(request.app.state)
    record = await runs.get(request.path_params["run_id"])
    artifacts = await asyncio.to_thread(_artifacts, runs, record.run_id)
    return JSONResponse({"run_id": record.run_id, "artifacts": artifacts})


async def get_artifact(request: Request) -> FileResponse:
    """GET /api/runs/{id}/artifacts/{path}: download one file the run wrote (inside its artifacts only)."""
    runs = ready_run_manager(request.app.state)
    record = await runs.get(request.path_params["run_id"])
    relative = request.path_params["artifact_path"]
    clean = safe_relative_path(relative)
    root = (runs.run_dir(record.run_id) / "artifacts").resolve()
    path = root.joinpath(*clean.parts) if clean is not None else None
    if path is None or path.is_symlink() or not path.resolve().is_relative_to(root) or not path.is_file():
        raise ApiError(404, "artifact_not_found", f"run {record.run_id} has no artifact {relative!r}")
    return FileResponse(path, filename=path.name)


routes: list[BaseRoute] = [
    Route("/api/runs", list_runs, methods=["GET"]),
    Route("/api/runs", start_run, methods=["POST"]),
    Route("/api/runs/{run_id}", get_run, methods=["GET"]),
    Route("/api/runs/{run_id}/result", get_result, methods=["GET"]),
    Route("/api/runs/{run_id}/stop", stop_run, methods=["POST"]),
    Route("/api/runs/{run_id}/cancel", stop_run, methods=["POST"]),
    Route("/api/runs/{run_id}/resume", resume_run, methods=["POST"]),
    Route("/api/runs/{run_id}/inputs", list_inputs, methods=["GET"]),
    Route("/api/runs/{run_id}/inputs/{question_id}", answer_input, methods=["POST"]),
    Route("/api/runs/{run_id}/artifacts", list_artifacts, methods=["GET"]),
    Route("/api/runs/{run_id}/artifacts/{artifact_path:path}", get_artifact, methods=["GET"]),
]
