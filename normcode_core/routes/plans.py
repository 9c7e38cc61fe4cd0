"""Plans API: deploy packages, list and inspect deployed plans, read their files, delete them.

Paths and fields follow upstream's deployment server (its clients work unchanged); responses
never contain server paths.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Message

from normcode_core.errors import ApiError
from normcode_core.plans.package import PackageRejected
from normcode_core.plans.registry import PlanNotFound, PlanRegistry
from normcode_core.runs.manager import ACTIVE_STATES, ready_run_manager
from normcode_core.storage.base import PlanRecord, PlanVersionRecord

# A zip may be slightly larger than what it unpacks to (headers, stored entries).
UPLOAD_OVERHEAD_BYTES = 1 << 20
MAX_TEXT_FILE_BYTES = 10 * 1024 * 1024
# A rejected upload larger than this is cut off (its client sees the connection close).
DISCARD_MAX_BYTES = 64 * 1024 * 1024


def _registry(request: Request) -> PlanRegistry:
    return ready_run_manager(request.app.state).plans


async def _call(function: Any, *args: Any) -> Any:
    """Run blocking registry work in a thread, turning lookups that fail into 404s."""
    try:
        return await asyncio.to_thread(function, *args)
    except PlanNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None


# -- deploy -------------------------------------------------------------------------------------
async def deploy_file(request: Request) -> JSONResponse:
    """POST /api/plans/deploy-file: multipart field `plan` holding a package zip."""
    registry = _registry(request)
    limit = registry.limits.max_bytes + UPLOAD_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await _discard_body(request)
        raise ApiError(413, "package_too_large", f"the upload is {declared} bytes; at most {limit} are accepted")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        await _discard_body(request)
        raise ApiError(415, "unsupported_media_type", "send the package as multipart/form-data with the field 'plan'")
    limited = Request(request.scope, receive=_limited_receive(request, limit))
    try:
        form = await limited.form(max_files=1, max_fields=10)
    except ApiError:
        await _discard_body(request)
        raise
    try:
        upload = form.get("plan")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "missing_package", "the multipart field 'plan' with the package zip is missing")
        try:
            deployed = await asyncio.to_thread(registry.deploy, upload.file)
        except PackageRejected as exc:
            raise ApiError(exc.status, "invalid_package", {"problems": exc.problems}) from None
        ready_run_manager(request.app.state).plan_changed(deployed.plan_id)
    finally:
        await form.close()
    return JSONResponse(
        {
            "status": "deployed",
            "plan_id": deployed.plan_id,
            "plan_name": deployed.name,
            "version": deployed.version,
            "content_hash": deployed.content_hash,
            "size_bytes": deployed.size_bytes,
            "file_count": deployed.file_count,
            "already_deployed": deployed.already_deployed,
        }
    )


async def _discard_body(request: Request) -> None:
    """Read and drop what is left of a rejected upload (up to DISCARD_MAX_BYTES), so the client,
    still sending, gets the error response instead of a connection reset."""
    discarded = 0
    while discarded < DISCARD_MAX_BYTES:
        message = await request.receive()
        if message["type"] != "http.request":
            return
        discarded += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _limited_receive(request: Request, limit: int) -> Any:
    """The request's body stream, stopped with a 413 once it exceeds `limit` bytes."""
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise ApiError(413, "package_too_large", f"the upload exceeds {limit} bytes")
        return message

    return receive


# -- read ---------------------------------------------------------------------------------------
def _plan_json(plan: PlanRecord, version: PlanVersionRecord, registry: PlanRegistry) -> dict[str, Any]:
    manifest = registry.manifest(version)
    execution = manifest.get("execution") if isinstance(manifest.get("execution"), dict) else {}
    return {
        "id": plan.plan_id,
        "plan_id": plan.plan_id,
        "name": str(manifest.get("name") or plan.name or plan.plan_id),
        "description": manifest.get("description") or None,
        "version": version.version,
        "latest_version": plan.latest_version,
        "content_hash": version.content_hash,
        "package_version": manifest.get("version"),
        "inputs": _object(manifest.get("inputs")),
        "outputs": _object(manifest.get("outputs")),
        "llm_model": manifest.get("default_agent") or execution.get("default_llm"),
        "max_cycles": execution.get("max_cycles"),
        "created_at": plan.created_at.isoformat(),
        "updated_at": plan.updated_at.isoformat(),
        "deployed_at": version.deployed_at.isoformat(),
    }


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list_plans(registry: PlanRegistry) -> list[dict[str, Any]]:
    result = []
    for plan in registry.list_plans():
        try:
            result.append(_plan_json(plan, registry.version(plan.plan_id), registry))
        except PlanNotFound:
            continue  # deleted meanwhile
    return result


async def list_plans(request: Request) -> JSONResponse:
    """GET /api/plans: every deployed plan (latest version), as upstream: a JSON array."""
    registry = _registry(request)
    return JSONResponse(await asyncio.to_thread(_list_plans, registry))


def _plan_detail(registry: PlanRegistry, plan_id: str, version: str | None) -> dict[str, Any]:
    plan = registry.get(plan_id)
    record = registry.version(plan_id, version)
    detail = _plan_json(plan, record, registry)
    detail["manifest"] = registry.manifest(record)
    detail["versions"] = [
        {
            "version": item.version,
            "content_hash": item.content_hash,
            "size_bytes": item.size_bytes,
            "deployed_at": item.deployed_at.isoformat(),
        }
        for item in registry.versions(plan_id)
    ]
    return detail


async def get_plan(request: Request) -> JSONResponse:
    """GET /api/plans/{plan_id}[?version=N]"""
    registry = _registry(request)
    return JSONResponse(
        await _call(_plan_detail, registry, request.path_params["plan_id"], request.query_params.get("version"))
    )


def _graph(registry: PlanRegistry, plan_id: str, version: str | None) -> dict[str, Any]:
    plan = registry.get(plan_id)
    record = registry.version(plan_id, version)
    manifest = registry.manifest(record)
    root = registry.version_dir(plan_id, record.version)
    provisions: dict[str, Any] = {}
    provisions_dir = root / "provisions"
    if provisions_dir.is_dir():
        for item in sorted(provisions_dir.iterdir()):
            if item.is_dir():
                files = sorted(str(p.relative_to(item)) for p in item.rglob("*") if p.is_file())
                provisions[item.name] = {"path": f"provisions/{item.name}", "files": files}
    summary = _plan_json(plan, record, registry)
    return {
        "plan_id": plan_id,
        "plan_name": summary["name"],
        "description": summary["description"],
        "version": record.version,
        "concepts": registry.read_entry(plan_id, record.version, "concepts") or [],
        "inferences": registry.read_entry(plan_id, record.version, "inferences") or [],
        "provisions": provisions,
        "llm_model": summary["llm_model"],
        "max_cycles": summary["max_cycles"],
        "inputs": _object(manifest.get("inputs")),
        "outputs": _object(manifest.get("outputs")),
    }


async def get_plan_graph(request: Request) -> JSONResponse:
    """GET /api/plans/{plan_id}/graph: concepts and inferences for drawing the plan."""
    registry = _registry(request)
    return JSONResponse(
        await _call(_graph, registry, request.path_params["plan_id"], request.query_params.get("version"))
    )


def _file(registry: PlanRegistry, plan_id: str, version: str | None, relative: str) -> dict[str, Any]:
    record = registry.version(plan_id, version)
    path = registry.file_path(plan_id, record.version, relative)
    size = path.stat().st_size
    if size > MAX_TEXT_FILE_BYTES:
        raise ApiError(413, "file_too_large", f"{relative} is {size} bytes; files over {MAX_TEXT_FILE_BYTES} are not served")
    data = path.read_bytes()
    try:
        return {"path": relative, "content": data.decode("utf-8"), "size": size}
    except UnicodeDecodeError:
        return {"path": relative, "content": base64.b64encode(data).decode("ascii"), "encoding": "base64", "size": size}


async def get_plan_file(request: Request) -> JSONResponse:
    """GET /api/plans/{plan_id}/files/{path}: one file of the package, as upstream (`content`, base64 if binary)."""
    registry = _registry(request)
    params = request.path_params
    return JSONResponse(
        await _call(_file, registry, params["plan_id"], request.query_params.get("version"), params["file_path"])
    )


# -- delete -------------------------------------------------------------------------------------
async def delete_plan(request: Request) -> JSONResponse:
    """DELETE /api/plans/{plan_id}: every version; refused while runs of it are active."""
    runs = ready_run_manager(request.app.state)
    plan_id = request.path_params["plan_id"]
    await _call(runs.plans.get, plan_id)
    active = 0
    for status in ACTIVE_STATES:
        active += await asyncio.to_thread(runs.storage.count_runs, plan_id, status)
    if active:
        raise ApiError(409, "plan_in_use", f"plan {plan_id!r} has {active} queued, running or waiting runs; cancel them first")
    await _call(runs.plans.delete, plan_id)
    runs.plan_changed(plan_id)
    return JSONResponse({"status": "undeployed", "plan_id": plan_id})


routes: list[BaseRoute] = [
    Route("/api/plans", list_plans, methods=["GET"]),
    Route("/api/plans/deploy-file", deploy_file, methods=["POST"]),
    Route("/api/plans/{plan_id}", get_plan, methods=["GET"]),
    Route("/api/plans/{plan_id}", delete_plan, methods=["DELETE"]),
    Route("/api/plans/{plan_id}/graph", get_plan_graph, methods=["GET"]),
    Route("/api/plans/{plan_id}/files/{file_path:path}", get_plan_file, methods=["GET"]),
]
