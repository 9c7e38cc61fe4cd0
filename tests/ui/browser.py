"""Getting a browser and a built UI, shared by the browser tests and benchmarks/ui.py:
Debian's chromium (installed with apt-get when missing) and webui/dist (rebuilt with npm when it
is missing or older than its sources). Both raise BrowserSetupError with one readable line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
WEBUI = REPO_ROOT / "webui"
WEBUI_DIST = WEBUI / "dist"
WEBUI_SOURCES = ("package.json", "package-lock.json", "index.html", "vite.config.ts", "tsconfig.json", "src")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class BrowserSetupError(Exception):
    pass


def ensure_chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise BrowserSetupError(f"{CHROMIUM} is missing; install Debian's chromium as root (apt-get install -y chromium)")
    environ = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock_wait = ["-o", "DPkg::Lock::Timeout=600"]
    for step in (["update"], ["install", "-y", "chromium"]):
        done = subprocess.run([apt, *lock_wait, *step], env=environ, capture_output=True, text=True)
        if done.returncode != 0:
            raise BrowserSetupError(f"apt-get {' '.join(step)} failed: {done.stderr.strip().splitlines()[-1:]}")
    if not CHROMIUM.exists():
        raise BrowserSetupError(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM


def _newest_source_mtime() -> float:
    newest = 0.0
    for name in WEBUI_SOURCES:
        path = WEBUI / name
        for item in path.rglob("*") if path.is_dir() else [path]:
            if item.is_file():
                newest = max(newest, item.stat().st_mtime)
    return newest


def ensure_webui_built() -> Path:
    index = WEBUI_DIST / "index.html"
    if index.exists() and index.stat().st_mtime >= _newest_source_mtime():
        return WEBUI_DIST
    npm = shutil.which("npm")
    if npm is None:
        raise BrowserSetupError("webui/dist is missing or stale and npm is not installed to build it (make webui)")
    steps = [] if (WEBUI / "node_modules").is_dir() else [[npm, "ci", "--no-audit", "--no-fund"]]
    for step in [*steps, [npm, "run", "build"]]:
        done = subprocess.run(step, cwd=WEBUI, capture_output=True, text=True)
        if done.returncode != 0:
            raise BrowserSetupError(f"{' '.join(step[1:])} failed in webui/:\n{(done.stdout + done.stderr)[-3000:]}")
    return WEBUI_DIST
