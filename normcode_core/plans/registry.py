"""Deployed plans: immutable versions on disk under `<plans_dir>/<plan_id>/<version>/`, indexed in storage.

Every method is synchronous (file and database work): call it from a worker thread in async code.
A version directory is never changed after it is renamed into place, so a run can always go back
to exactly the files (and content hash) it ran.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from normcode_core.plans.package import (
    PackageLimits,
    PackageRejected,
    UnpackedPackage,
    entry_files,
    is_safe_plan_id,
    read_json_file,
    safe_relative_path,
    unpack_package,
    zip_directory,
)
from normcode_core.storage.base import PlanRecord, PlanVersionRecord, Storage

STAGING_DIR = ".staging"
TRASH_DIR = ".trash"
DEPLOY_ATTEMPTS = 20


class PlanNotFound(LookupError):
    """No such plan (or version, or file); `str()` says which."""


@dataclass(frozen=True)
class DeployedPlan:
    plan_id: str
    name: str
    version: str
    content_hash: str
    size_bytes: int
    file_count: int
    already_deployed: bool


class PlanRegistry:
    def __init__(
        self,
        plans_dir: Path,
        storage: Storage,
        limits: PackageLimits,
        validate_plan: Callable[[Path], Iterable[object]] | None = None,
    ) -> None:
        self.plans_dir = Path(plans_dir).resolve()
        self.storage = storage
        self.limits = limits
        self.validate_plan = validate_plan
        self._lock = threading.Lock()

    # -- deploying ----------------------------------------------------------------------------
    def deploy(self, upload: BinaryIO | Path) -> DeployedPlan:
        """Check, unpack and store a package as the plan's next version (PackageRejected if bad).

        Deploying content identical to an existing version returns that version instead of a copy.
        """
        package = unpack_package(upload, self.plans_dir / STAGING_DIR, self.limits, self.validate_plan)
        try:
            with self._lock:
                return self._store(package)
        finally:
            package.discard()

    def deploy_directory(self, source: Path) -> DeployedPlan:
        """Deploy a plan directory through exactly the same checks as an upload (examples use it)."""
        staging = self.plans_dir / STAGING_DIR
        staging.mkdir(parents=True, exist_ok=True)
        archive = staging / f"dir-{uuid.uuid4().hex}.zip"
        try:
            zip_directory(source, archive)
            return self.deploy(archive)
        finally:
            archive.unlink(missing_ok=True)

    def _store(self, package: UnpackedPackage) -> DeployedPlan:
        plan_id = package.plan_id
        manifest = package.manifest
        name = str(manifest.get("name") or plan_id)
        description = str(manifest.get("description") or "")
        for existing in self.storage.list_plan_versions(plan_id):
            if existing.content_hash == package.content_hash and self._version_path(plan_id, existing.version).is_dir():
                return DeployedPlan(plan_id, name, existing.version, existing.content_hash,
                                    existing.size_bytes, package.file_count, already_deployed=True)
        plan_root = self._plan_path(plan_id)
        plan_root.mkdir(parents=True, exist_ok=True)
        version = self._next_version(plan_id)
        for _ in range(DEPLOY_ATTEMPTS):
            target = plan_root / version
            try:
                # Atomic on one filesystem; fails if another process took this version first.
                os.rename(package.root, target)
            except OSError:
                version = str(int(version) + 1)
                continue
            try:
                self.storage.add_plan_version(
                    plan_id,
                    version,
                    content_hash=package.content_hash,
                    name=name,
                    description=description,
                    manifest=manifest,
                    size_bytes=package.size_bytes,
                )
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            return DeployedPlan(plan_id, name, version, package.content_hash,
                                package.size_bytes, package.file_count, already_deployed=False)
        raise PackageRejected([f"could not find a free version number for plan {plan_id!r}"], status=409)

    def _next_version(self, plan_id: str) -> str:
        numbers = [0]
        numbers += [int(v.version) for v in self.storage.list_plan_versions(plan_id) if v.version.isdigit()]
        plan_root = self._plan_path(plan_id)
        if plan_root.is_dir():
            numbers += [int(p.name) for p in plan_root.iterdir() if p.name.isdigit()]
        return str(max(numbers) + 1)

    # -- reading ------------------------------------------------------------------------------
    def list_plans(self) -> list[PlanRecord]:
        return self.storage.list_plans()

    def get(self, plan_id: str) -> PlanRecord:
        plan = self.storage.get_plan(plan_id) if is_safe_plan_id(plan_id) else None
        if plan is None:
            raise PlanNotFound(f"plan {plan_id!r} is not deployed")
        return plan

    def versions(self, plan_id: str) -> list[PlanVersionRecord]:
        self.get(plan_id)
        return self.storage.list_plan_versions(plan_id)

    def version(self, plan_id: str, version: str | None = None) -> PlanVersionRecord:
        """One version (the latest when None)."""
        record = self.storage.get_plan_version(plan_id, version) if is_safe_plan_id(plan_id) else None
        if record is None:
            self.get(plan_id)  # says which is missing: the plan or the version
            raise PlanNotFound(f"plan {plan_id!r} has no version {version!r}")
        return record

    def version_dir(self, plan_id: str, version: str) -> Path:
        path = self._version_path(plan_id, version)
        if not path.is_dir():
            raise PlanNotFound(f"the files of plan {plan_id!r} version {version!r} are missing")
        return path

    def manifest(self, record: PlanVersionRecord) -> dict[str, Any]:
        return json.loads(record.manifest_json or "{}")

    def read_entry(self, plan_id: str, version: str, kind: str) -> Any:
        """The parsed JSON of an entry file (`concepts`, `inferences`) of a deployed version."""
        root = self.version_dir(plan_id, version)
        declared = entry_files(self.manifest(self.version(plan_id, version))).get(kind)
        relative = safe_relative_path(declared) if isinstance(declared, str) else None
        if relative is None:
            return None
        value, _problem = read_json_file(root, str(relative))
        return value

    def file_path(self, plan_id: str, version: str, relative: str) -> Path:
        """A file inside a deployed version; PlanNotFound for anything outside it or missing."""
        clean = safe_relative_path(relative)
        if clean is None:
            raise PlanNotFound(f"{relative!r} is not a path inside the plan package")
        root = self.version_dir(plan_id, version)
        path = root.joinpath(*clean.parts)
        if not path.resolve().is_relative_to(root.resolve()) or not path.is_file():
            raise PlanNotFound(f"plan {plan_id!r} has no file {relative!r}")
        return path

    # -- deleting -----------------------------------------------------------------------------
    def delete(self, plan_id: str) -> None:
        """Remove a plan and all its versions. Only ever touches `<plans_dir>/<plan_id>`."""
        self.get(plan_id)
        plan_root = self._plan_path(plan_id)
        with self._lock:
            trash = None
            if plan_root.is_dir():
                trash_parent = self.plans_dir / TRASH_DIR
                trash_parent.mkdir(exist_ok=True)
                trash = trash_parent / f"{plan_id}-{uuid.uuid4().hex}"
                os.rename(plan_root, trash)  # atomic: no run ever sees a half-deleted version
            self.storage.delete_plan(plan_id)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def sweep(self) -> None:
        """Remove leftovers of deploys and deletes interrupted by a crash."""
        for name in (STAGING_DIR, TRASH_DIR):
            shutil.rmtree(self.plans_dir / name, ignore_errors=True)

    def is_empty(self) -> bool:
        return self.storage.count_plans() == 0

    # -- paths --------------------------------------------------------------------------------
    def _plan_path(self, plan_id: str) -> Path:
        if not is_safe_plan_id(plan_id):
            raise PlanNotFound(f"{plan_id!r} is not a valid plan id")
        path = self.plans_dir / plan_id
        if path.resolve().parent != self.plans_dir:
            raise PlanNotFound(f"{plan_id!r} is not a valid plan id")
        return path

    def _version_path(self, plan_id: str, version: str) -> Path:
        if not version.isdigit():
            raise PlanNotFound(f"plan {plan_id!r} has no version {version!r}")
        return self._plan_path(plan_id) / version
