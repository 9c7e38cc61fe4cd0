"""Reaching a Docker engine and driving the image and compose files; shared by the container
tests and benchmarks/docker.py.

The engine is the one DOCKER_HOST (or the CLI's default context) points at; failing that, the
local engine that `../shared/container/engine-up.sh` starts, if it is running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "deployment" / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "deployment" / "docker-compose.yaml"
DEV_COMPOSE_FILE = REPO_ROOT / "deployment" / "docker-compose.dev.yaml"
# Where engine-up.sh keeps its engine (socket, CLI config with the compose plugin).
ENGINE_UP_DIR = Path(os.environ.get("NC_ENGINE_DIR", "/var/tmp/nc-engine"))
BASE_IMAGE = "python:3.11-slim"


class DockerError(AssertionError):
    """A docker command failed; the message carries the command and its output."""


def find_engine() -> tuple[dict[str, str] | None, str]:
    """(environment for docker commands, "") when an engine answers, else (None, why not)."""
    if shutil.which("docker") is None:
        return None, "no `docker` command on PATH"
    candidates = [dict(os.environ)]
    if "DOCKER_HOST" not in os.environ and (ENGINE_UP_DIR / "docker.sock").exists():
        candidates.append(
            {
                **os.environ,
                "DOCKER_HOST": f"unix://{ENGINE_UP_DIR / 'docker.sock'}",
                "DOCKER_CONFIG": str(ENGINE_UP_DIR / "dockercfg"),
            }
        )
    last_error = ""
    for environ in candidates:
        info = subprocess.run(["docker", "info"], env=environ, capture_output=True, text=True, timeout=30)
        if info.returncode == 0:
            return _with_builder(environ), ""
        last_error = (info.stderr.strip().splitlines() or ["`docker info` failed"])[-1]
    where = os.environ.get("DOCKER_HOST", "the default Docker socket")
    return None, f"no Docker engine reachable at {where} ({last_error})"


def cli_environ() -> dict[str, str]:
    """Environment for engine-less CLI commands (`docker compose config`): the compose plugin that
    engine-up.sh installs is used when the CLI has no configuration of its own."""
    environ = dict(os.environ)
    if "DOCKER_CONFIG" not in environ and (ENGINE_UP_DIR / "dockercfg" / "cli-plugins" / "docker-compose").exists():
        environ["DOCKER_CONFIG"] = str(ENGINE_UP_DIR / "dockercfg")
    return environ


def _with_builder(environ: dict[str, str]) -> dict[str, str]:
    # Without the buildx plugin the CLI cannot use BuildKit; the Dockerfile builds with either.
    if "DOCKER_BUILDKIT" not in environ:
        buildx = subprocess.run(["docker", "buildx", "version"], env=environ, capture_output=True, timeout=30)
        if buildx.returncode != 0:
            environ["DOCKER_BUILDKIT"] = "0"
    return environ


def run(
    args: Sequence[str],
    environ: Mapping[str, str],
    timeout: float = 120,
    check: bool = True,
    cwd: Path = REPO_ROOT,
) -> subprocess.CompletedProcess[str]:
    """Run a docker command; with check, raise DockerError with its output when it fails."""
    result = subprocess.run(
        list(args), env=dict(environ), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise DockerError(
            f"`{' '.join(args)}` exited with {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


def build_image(tag: str, environ: Mapping[str, str], timeout: float = 900) -> float:
    """Build deployment/Dockerfile from the repository root as `tag`; return the seconds it took."""
    started = time.monotonic()
    run(["docker", "build", "--force-rm", "-q", "-f", str(DOCKERFILE), "-t", tag, str(REPO_ROOT)], environ, timeout=timeout)
    return time.monotonic() - started


def image_size(ref: str, environ: Mapping[str, str]) -> int:
    return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", ref], environ).stdout.strip())


def health_status(container: str, environ: Mapping[str, str]) -> str:
    """'starting', 'healthy', 'unhealthy', or the container state when it is not running."""
    result = run(
        ["docker", "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", container],
        environ,
    )
    state, _, health = result.stdout.strip().partition(" ")
    return health if state == "running" else state

