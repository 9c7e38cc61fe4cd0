"""Safe unpacking of uploaded plan packages.

A package is a .zip as produced by upstream's packer: `manifest.json`, `concept_repo.json`,
`inference_repo.json` and `provisions/`, optionally inside one top-level folder. Uploads are
untrusted, so every entry is checked before a byte is written (names, types, declared sizes) and
again while it streams (actual sizes), every problem is collected instead of stopping at the first,
and nothing is left behind when the package is rejected.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

# A plan id becomes a directory name and a URL segment: keep it boring.
SAFE_PLAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Entries that archivers add and that are never part of a plan.
IGNORED_ENTRY_PREFIXES = ("__MACOSX/",)
IGNORED_ENTRY_NAMES = (".DS_Store",)
COPY_CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class PackageLimits:
    """How much an unpacked package may hold (zip bombs stop here)."""

    max_bytes: int
    max_files: int

    @classmethod
    def from_settings(cls, settings: Any) -> PackageLimits:
        plans = settings.plans
        return cls(max_bytes=int(plans.max_package_bytes), max_files=int(plans.max_files))


class PackageRejected(Exception):
    """The package cannot be deployed; `problems` lists every reason found.

    `status` is the HTTP status the rejection maps to: 413 when a limit was exceeded, 400 when
    the upload is not a usable zip, 422 when the zip is fine but its plan is not.
    """

    def __init__(self, problems: list[str], status: int = 422) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.status = status


@dataclass
class UnpackedPackage:
    """A package unpacked into a staging directory (`root` holds manifest.json)."""

    staging_dir: Path
    root: Path
    manifest: dict[str, Any]
    plan_id: str
    file_count: int
    size_bytes: int
    content_hash: str
    problems: list[str] = field(default_factory=list)

    def discard(self) -> None:
        shutil.rmtree(self.staging_dir, ignore_errors=True)


def is_safe_plan_id(plan_id: object) -> bool:
    return isinstance(plan_id, str) and bool(SAFE_PLAN_ID.match(plan_id)) and plan_id not in {".", ".."}


def safe_relative_path(name: str) -> PurePosixPath | None:
    """The normalized relative path for an archive or URL path, or None if it could escape."""
    if not name or "\x00" in name:
        return None
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        return None
    parts = [part for part in unified.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." for part in parts):
        return None
    return PurePosixPath(*parts)


def unpack_package(
    upload: BinaryIO | Path,
    staging_parent: Path,
    limits: PackageLimits,
    validate_plan: Callable[[Path], Iterable[object]] | None = None,
) -> UnpackedPackage:
    """Check and unpack `upload` into a fresh directory under `staging_parent`.

    `staging_parent` must be on the same filesystem as the final plans directory so the caller
    can move the result into place with one atomic rename. `validate_plan(root)` returns the
    engine's problems for an unpacked plan (empty when valid). Raises PackageRejected, after
    removing everything it wrote, when anything is wrong.
    """
    staging_parent.mkdir(parents=True, exist_ok=True)
    staging_dir = Path(tempfile.mkdtemp(prefix="upload-", dir=staging_parent))
    try:
        package = _unpack_checked(upload, staging_dir, limits)
        problems = plan_id_problems(package.plan_id) + check_plan_files(package.root, package.manifest)
        if not problems and validate_plan is not None:
            problems = [str(problem) for problem in validate_plan(package.root)]
        if problems:
            raise PackageRejected(problems, status=422)
        return package
    except BaseException:
        shutil.rmtree(staging_dir, ignore_errors=True)
        raise


def _unpack_checked(upload: BinaryIO | Path, staging_dir: Path, limits: PackageLimits) -> UnpackedPackage:
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PackageRejected([f"the upload is not a zip archive ({exc})"], status=400) from exc
    with archive:
        entries = _checked_entries(archive, limits)
        prefix = _package_prefix([name for name, _ in entries])
        extract_dir = staging_dir / "package"
        extract_dir.mkdir()
        total = 0
        digest = hashlib.sha256()
        file_count = 0
        for relative, info in sorted(entries, key=lambda item: str(item[0])):
            if prefix is not None:
                relative = PurePosixPath(*relative.parts[1:])
            if not relative.parts:
                continue
            target = extract_dir.joinpath(*relative.parts)
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # e.g. a file and a folder of the same name
                raise PackageRejected([f"{info.filename!r}: conflicts with another entry ({exc.strerror})"], status=400) from exc
            written = _copy_entry(archive, info, target, limits.max_bytes - total)
            total += written
            file_count += 1
            _hash_file(digest, str(relative), target)
    manifest = _read_manifest(extract_dir)
    plan_id = manifest.get("id") or manifest.get("name")
    return UnpackedPackage(
        staging_dir=staging_dir,
        root=extract_dir,
        manifest=manifest,
        plan_id=plan_id if isinstance(plan_id, str) else repr(plan_id),
        file_count=file_count,
        size_bytes=total,
        content_hash=digest.hexdigest(),
    )


def plan_id_problems(plan_id: str) -> list[str]:
    if is_safe_plan_id(plan_id):
        return []
    return [
        (
            f"manifest.json: plan id {plan_id!r} is not a safe name (use 1-128 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit; set manifest 'id' or 'name')"
        )
    ]


def _checked_entries(archive: zipfile.ZipFile, limits: PackageLimits) -> list[tuple[PurePosixPath, zipfile.ZipInfo]]:
    """Every entry worth unpacking, or PackageRejected listing every bad one."""
    problems: list[str] = []
    entries: list[tuple[PurePosixPath, zipfile.ZipInfo]] = []
    seen: set[str] = set()
    declared_total = 0
    files = 0
    for info in archive.infolist():
        name = info.filename
        if name.startswith(IGNORED_ENTRY_PREFIXES) or PurePosixPath(name).name in IGNORED_ENTRY_NAMES:
            continue
        relative = safe_relative_path(name)
        if relative is None:
            problems.append(f"{name!r}: path is absolute or escapes the package (zip-slip)")
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            problems.append(f"{name!r}: symbolic links are not allowed in a package")
            continue
        if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and stat.S_IFMT(mode):
            problems.append(f"{name!r}: only regular files and folders are allowed")
            continue
        if info.flag_bits & 0x1:
            problems.append(f"{name!r}: encrypted entries are not supported")
            continue
        key = str(relative).casefold()
        if key in seen and not info.is_dir():
            problems.append(f"{name!r}: appears more than once")
            continue
        seen.add(key)
        if not info.is_dir():
            files += 1
            declared_total += info.file_size
        entries.append((relative, info))
    if problems:
        raise PackageRejected(problems, status=400)
    too_big = []
    if files > limits.max_files:
        too_big.append(f"the package holds {files} files; at most {limits.max_files} are allowed")
    if declared_total > limits.max_bytes:
        too_big.append(f"the package unpacks to {declared_total} bytes; at most {limits.max_bytes} are allowed")
    if too_big:
        raise PackageRejected(too_big, status=413)
    if not entries:
        raise PackageRejected(["the zip archive is empty"], status=400)
    return entries


def _package_prefix(names: list[PurePosixPath]) -> str | None:
    """The single top-level folder to strip, or None when manifest.json sits at the root."""
    if any(str(name) == "manifest.json" for name in names):
        return None
    tops = {name.parts[0] for name in names}
    if len(tops) == 1:
        top = next(iter(tops))
        if any(name.parts == (top, "manifest.json") for name in names):
            return top
    raise PackageRejected(
        ["manifest.json not found at the top of the package or inside its single top-level folder"],
        status=422,
    )


def _copy_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Stream one entry to `target`, trusting neither its declared size nor the remaining budget."""
    written = 0
    try:
        with archive.open(info) as source, open(target, "xb") as sink:
            while True:
                chunk = source.read(COPY_CHUNK_BYTES)
                if not chunk:
                    break
                written += len(chunk)
                if written > info.file_size:
                    raise PackageRejected(
                        [f"{info.filename!r}: unpacks to more than its declared {info.file_size} bytes"],
                        status=413,
                    )
                if written > budget:
                    raise PackageRejected(
                        [f"{info.filename!r}: the package unpacks to more than the allowed size"], status=413
                    )
                sink.write(chunk)
    except PackageRejected:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise PackageRejected([f"{info.filename!r}: cannot be unpacked ({exc})"], status=400) from exc
    return written


def _hash_file(digest: Any, relative: str, path: Path) -> None:
    digest.update(relative.encode("utf-8") + b"\x00")
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(COPY_CHUNK_BYTES), b""):
            digest.update(hashlib.sha256(chunk).digest())
    digest.update(b"\x01")


def _read_manifest(root: Path) -> dict[str, Any]:
    manifest, problem = read_json_file(root, "manifest.json")
    if problem:
        raise PackageRejected([problem], status=422)
    if not isinstance(manifest, dict):
        raise PackageRejected(["manifest.json: must be a JSON object"], status=422)
    return manifest


def read_json_file(root: Path, relative: str) -> tuple[Any, str | None]:
    """Parse `root/relative` as JSON: (value, None) or (None, one-line problem)."""
    path = root / relative
    if not path.is_file():
        return None, f"{relative}: file is missing"
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle), None
    except UnicodeDecodeError as exc:
        return None, f"{relative}: not UTF-8 text ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        return None, f"{relative}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        return None, f"{relative}: JSON nested too deeply"


def entry_files(manifest: dict[str, Any]) -> dict[str, object]:
    """The manifest's entry files (concepts, inferences, optional inputs), as declared."""
    entry = manifest.get("entry") if isinstance(manifest.get("entry"), dict) else {}
    files: dict[str, object] = {
        "concepts": entry.get("concepts", "concept_repo.json"),
        "inferences": entry.get("inferences", "inference_repo.json"),
    }
    if entry.get("inputs") is not None:
        files["inputs"] = entry["inputs"]
    return files


def check_plan_files(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems with the manifest and the JSON files it names (the engine checks the plan itself)."""
    problems: list[str] = []
    if "entry" in manifest and not isinstance(manifest["entry"], dict):
        problems.append("manifest.json: 'entry' must be an object")
    for key in ("inputs", "outputs"):
        if key in manifest and manifest[key] is not None and not isinstance(manifest[key], dict):
            problems.append(f"manifest.json: '{key}' must be an object keyed by concept name")
    expected_types = {"concepts": list, "inferences": list, "inputs": dict}
    for kind, declared in entry_files(manifest).items():
        relative = safe_relative_path(declared) if isinstance(declared, str) else None
        if relative is None:
            problems.append(f"manifest.json: entry.{kind} {declared!r} is not a relative path inside the package")
            continue
        value, problem = read_json_file(root, str(relative))
        if problem:
            problems.append(problem)
        elif not isinstance(value, expected_types[kind]):
            wanted = "an array" if expected_types[kind] is list else "an object"
            problems.append(f"{relative}: must be {wanted}")
    return problems


def zip_directory(source: Path, sink: BinaryIO | str | os.PathLike[str], top_folder: str | None = None) -> None:
    """Write `source` as a package zip (what upstream's packer produces); used by tests and examples."""
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                name = path.relative_to(source).as_posix()
                archive.write(path, f"{top_folder}/{name}" if top_folder else name)
