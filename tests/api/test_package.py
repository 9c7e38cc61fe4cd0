"""Unpacking untrusted plan packages: every bad case is rejected with its reason and leaves nothing behind."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest

from api.helpers import FIXTURE_PLANS
from normcode_core.plans.package import (
    PackageLimits,
    PackageRejected,
    is_safe_plan_id,
    safe_relative_path,
    unpack_package,
    zip_directory,
)

LIMITS = PackageLimits(max_bytes=5_000_000, max_files=200)


def minimal_files(name: str = "tiny") -> dict[str, str]:
    return {
        "manifest.json": json.dumps({"name": name, "version": "1.0.0", "entry": {}}),
        "concept_repo.json": "[]",
        "inference_repo.json": "[]",
    }


def zip_bytes(files: dict[str, str | bytes], *, prefix: str = "") -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(prefix + name, content)
    buffer.seek(0)
    return buffer


def assert_nothing_left(staging: Path) -> None:
    assert not staging.exists() or list(staging.iterdir()) == []


def rejected(upload, staging: Path, limits: PackageLimits = LIMITS) -> PackageRejected:
    with pytest.raises(PackageRejected) as caught:
        unpack_package(upload, staging, limits)
    assert_nothing_left(staging)
    return caught.value


def test_fixture_package_unpacks_with_its_top_folder_stripped(tmp_path: Path) -> None:
    upload = io.BytesIO()
    zip_directory(FIXTURE_PLANS / "add-combination", upload, top_folder="add-combination")
    upload.seek(0)
    package = unpack_package(upload, tmp_path / "staging", LIMITS)
    assert package.plan_id == "add-combination"
    assert (package.root / "manifest.json").is_file()
    assert (package.root / "provisions" / "generated_scripts" / "op_combine.py").is_file()
    assert package.file_count == sum(1 for p in (FIXTURE_PLANS / "add-combination").rglob("*") if p.is_file())
    again = io.BytesIO()
    zip_directory(FIXTURE_PLANS / "add-combination", again)
    again.seek(0)
    assert unpack_package(again, tmp_path / "staging2", LIMITS).content_hash == package.content_hash
    package.discard()
    assert_nothing_left(tmp_path / "staging")


def test_not_a_zip(tmp_path: Path) -> None:
    problem = rejected(io.BytesIO(b"PK\x03\x04 this is not really a zip"), tmp_path)
    assert problem.status == 400
    assert "not a zip" in problem.problems[0]


@pytest.mark.parametrize("evil", ["../evil.txt", "a/../../evil.txt", "/etc/evil", "C:/evil.txt", "..\\evil.txt"])
def test_zip_slip_names_are_rejected(tmp_path: Path, evil: str) -> None:
    files = minimal_files() | {evil: "owned"}
    problem = rejected(zip_bytes(files), tmp_path / "staging")
    assert problem.status == 400
    assert any("escapes" in p for p in problem.problems)
    assert not (tmp_path / "evil.txt").exists()


def test_every_bad_entry_is_listed(tmp_path: Path) -> None:
    files = minimal_files() | {"../one": "x", "/two": "y"}
    problem = rejected(zip_bytes(files), tmp_path / "staging")
    assert len(problem.problems) == 2


def test_symlink_entries_are_rejected(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in minimal_files().items():
            archive.writestr(name, content)
        link = zipfile.ZipInfo("provisions/passwd")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    buffer.seek(0)
    problem = rejected(buffer, tmp_path / "staging")
    assert "symbolic links" in problem.problems[0]


def test_too_many_files(tmp_path: Path) -> None:
    files = minimal_files() | {f"provisions/f{i}.txt": "x" for i in range(10)}
    problem = rejected(zip_bytes(files), tmp_path / "staging", PackageLimits(max_bytes=10**6, max_files=5))
    assert problem.status == 413
    assert "13 files" in problem.problems[0]


def test_zip_bomb_by_declared_size(tmp_path: Path) -> None:
    files = minimal_files() | {"provisions/bomb.txt": b"\0" * 20_000_000}
    problem = rejected(zip_bytes(files), tmp_path / "staging")
    assert problem.status == 413
    assert "unpacks to" in problem.problems[0]


def test_zip_bomb_lying_about_its_size(tmp_path: Path) -> None:
    """An entry whose header claims a small size but inflates to much more is stopped while streaming."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in minimal_files().items():
            archive.writestr(name, content)
        archive.writestr("provisions/bomb.txt", b"\0" * 3_000_000)
    data = bytearray(buffer.getvalue())
    # Rewrite the declared uncompressed size (local header and central directory) to 100 bytes.
    probe = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = probe.getinfo("provisions/bomb.txt")
    real = info.file_size.to_bytes(4, "little")
    fake = (100).to_bytes(4, "little")
    assert data.count(real) >= 2
    data = bytearray(bytes(data).replace(real, fake))
    problem = rejected(io.BytesIO(bytes(data)), tmp_path / "staging")
    assert problem.status in (400, 413)
    assert "bomb.txt" in problem.problems[0]


def test_bad_json(tmp_path: Path) -> None:
    files = minimal_files() | {"concept_repo.json": "[{", "inference_repo.json": "{}"}
    problem = rejected(zip_bytes(files), tmp_path / "staging")
    assert problem.status == 422
    assert any("concept_repo.json: invalid JSON" in p for p in problem.problems)
    assert any("inference_repo.json: must be an array" in p for p in problem.problems)


def test_missing_manifest(tmp_path: Path) -> None:
    problem = rejected(zip_bytes({"concept_repo.json": "[]", "x/inference_repo.json": "[]"}), tmp_path / "s")
    assert "manifest.json not found" in problem.problems[0]


@pytest.mark.parametrize("plan_id", ["../escape", "has space", ".hidden", "", "a/b", "x" * 200])
def test_unsafe_plan_ids(tmp_path: Path, plan_id: str) -> None:
    problem = rejected(zip_bytes(minimal_files(plan_id)), tmp_path / "staging")
    assert "not a safe name" in problem.problems[0]


def test_engine_validation_problems_are_reported(tmp_path: Path) -> None:
    def validate(root: Path) -> list[str]:
        assert (root / "manifest.json").is_file()
        return ["inference_repo.json[0]: unknown concept '{x}'", "duplicate flow index 1.1"]

    with pytest.raises(PackageRejected) as caught:
        unpack_package(zip_bytes(minimal_files()), tmp_path / "staging", LIMITS, validate_plan=validate)
    assert caught.value.problems == ["inference_repo.json[0]: unknown concept '{x}'", "duplicate flow index 1.1"]
    assert_nothing_left(tmp_path / "staging")


def test_safe_names() -> None:
    assert is_safe_plan_id("gold-investment-en")
    assert not is_safe_plan_id("..")
    assert safe_relative_path("provisions/./x.json") == safe_relative_path("provisions/x.json")
    assert safe_relative_path("a/../b") is None


def test_conflicting_entries_and_deep_json(tmp_path: Path) -> None:
    files = minimal_files() | {"provisions/a": "file", "provisions/a/b.txt": "under a file"}
    problem = rejected(zip_bytes(files), tmp_path / "staging")
    assert problem.status == 400 and "conflicts" in problem.problems[0]
    deep = minimal_files() | {"concept_repo.json": "[" * 100_000 + "]" * 100_000}
    problem = rejected(zip_bytes(deep), tmp_path / "staging2")
    assert "nested too deeply" in problem.problems[0] or "invalid JSON" in problem.problems[0]
