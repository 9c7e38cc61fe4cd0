"""Container figures: image size over its base, source-only rebuild time, `docker run` to healthy.

    python benchmarks/docker.py [--runs 3]

Needs a Docker engine (DOCKER_HOST, or the one `../shared/container/engine-up.sh` starts).
Each figure is printed beside a baseline measured in the same run:
  * added size = image size - size of its base image (python:3.11-slim); target < 120 MB
  * rebuild after editing one Python source file (real content change, in a scratch copy of the
    build context, so the work tree is untouched), beside a no-change rebuild; target < 20 s
  * `docker run` -> HEALTHCHECK healthy, beside a bare python:3.11-slim web server with the same
    HEALTHCHECK timing (what the engine alone costs); target < 5 s
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "docker"))

from docker_engine import (  # noqa: E402
    BASE_IMAGE,
    REPO_ROOT,
    build_image,
    find_engine,
    health_status,
    image_size,
    run,
)

TAG = "normcode/server:bench"
TARGET_ADDED_MB = 120
TARGET_REBUILD_S = 20
TARGET_HEALTHY_S = 5
# What the Dockerfile reads from the build context (everything else is in .dockerignore).
CONTEXT_PARTS = ("pyproject.toml", "README.md", ".dockerignore", "normcode_core", "plugins", "config", "examples", "webui", "deployment")
EDITED_SOURCE = Path("normcode_core") / "app.py"


def scratch_context(into: Path) -> Path:
    ignore = shutil.ignore_patterns("node_modules", "dist", "__pycache__", "*.pyc")
    for part in CONTEXT_PARTS:
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(source, into / part, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, into / part)
    return into


def build(context: Path, environ: dict[str, str]) -> float:
    started = time.monotonic()
    run(["docker", "build", "--force-rm", "-q", "-f", str(context / "deployment" / "Dockerfile"), "-t", TAG, str(context)], environ, timeout=900)
    return time.monotonic() - started


def time_to_healthy(environ: dict[str, str], args: list[str]) -> tuple[float, float | None]:
    """(seconds from `docker run` to healthy, seconds to the first /health answer or None)."""
    import httpx

    name = f"ncbench-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    try:
        run(["docker", "run", "-d", "--name", name, "-p", "127.0.0.1::8000", *args], environ)
        port = run(["docker", "port", name, "8000/tcp"], environ).stdout.split(":")[-1].strip()
        first_answer = None
        while time.monotonic() - started < 60:
            if first_answer is None:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        first_answer = time.monotonic() - started
                except httpx.HTTPError:
                    pass
            status = health_status(name, environ)
            if status == "healthy":
                return time.monotonic() - started, first_answer
            if status not in {"starting", "running", "created"}:
                logs = run(["docker", "logs", "--tail", "30", name], environ, check=False)
                raise SystemExit(f"{name} is {status}:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.05)
        raise SystemExit(f"{name} not healthy within 60 s")
    finally:
        run(["docker", "rm", "-f", "-v", name], environ, check=False)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="docker run -> healthy repetitions (median)")
    options = parser.parse_args()
    environ, why_not = find_engine()
    if environ is None:
        print(f"cannot benchmark the container: {why_not}", file=sys.stderr)
        return 2
    missed = False

    first_build = build_image(TAG, environ)
    size, base = image_size(TAG, environ), image_size(BASE_IMAGE, environ)
    added_mb = (size - base) / 1e6
    missed |= added_mb >= TARGET_ADDED_MB
    print(f"build (cache as the engine has it): {first_build:.1f} s")
    print(
        f"image size: {size / 1e6:.1f} MB; base {BASE_IMAGE} {base / 1e6:.1f} MB; "
        f"added {added_mb:.1f} MB (target < {TARGET_ADDED_MB} MB) {verdict(added_mb < TARGET_ADDED_MB)}"
    )

    with tempfile.TemporaryDirectory(prefix="ncbench-") as scratch:
        context = scratch_context(Path(scratch))
        build(context, environ)  # warm: identical content, so every step should be cached
        unchanged = build(context, environ)
        source = context / EDITED_SOURCE
        source.write_text(source.read_text() + f"\n# benchmark edit {uuid.uuid4().hex}\n")
        edited = build(context, environ)
    missed |= edited >= TARGET_REBUILD_S
    print(
        f"rebuild after editing {EDITED_SOURCE}: {edited:.1f} s; no-change rebuild {unchanged:.1f} s "
        f"(target < {TARGET_REBUILD_S} s) {verdict(edited < TARGET_REBUILD_S)}"
    )

    healthcheck = run(["docker", "image", "inspect", "-f", "{{json .Config.Healthcheck}}", TAG], environ).stdout
    check = json.loads(healthcheck)
    baseline_args = [
        "--health-cmd", "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/', timeout=2)\"",
        "--health-interval", f"{check['Interval'] / 1e9:g}s",
        "--health-start-period", f"{check['StartPeriod'] / 1e9:g}s",
        BASE_IMAGE, "python", "-m", "http.server", "8000",
    ]
    ours = [time_to_healthy(environ, [TAG]) for _ in range(options.runs)]
    baseline = [time_to_healthy(environ, baseline_args)[0] for _ in range(options.runs)]
    healthy = statistics.median(seconds for seconds, _ in ours)
    answering = statistics.median(first or seconds for seconds, first in ours)
    missed |= healthy >= TARGET_HEALTHY_S
    print(
        f"docker run -> healthy: median {healthy:.2f} s of {options.runs} (first /health answer {answering:.2f} s; "
        f"bare {BASE_IMAGE} server with the same HEALTHCHECK timing {statistics.median(baseline):.2f} s) "
        f"(target < {TARGET_HEALTHY_S} s) {verdict(healthy < TARGET_HEALTHY_S)}"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
