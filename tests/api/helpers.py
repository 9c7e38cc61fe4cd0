"""Shared helpers for the API tests: fixture paths and zipping plan directories on the fly."""

from __future__ import annotations

import io
from pathlib import Path

from normcode_core.plans.package import zip_directory

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = (REPO_ROOT / ".." / "shared" / "fixtures").resolve()
FIXTURE_PLANS = FIXTURES / "plans"
EXAMPLE_PLANS = REPO_ROOT / "examples" / "plans"


def package_bytes(plan_dir: Path, top_folder: str | None = None) -> bytes:
    buffer = io.BytesIO()
    zip_directory(plan_dir, buffer, top_folder=top_folder)
    return buffer.getvalue()
