"""Fixtures for the plans and runs API: the real server (hypercorn, subprocess), the fake LLM server
from the shared fixtures (counting every request it answers), and a small client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ServerProcess, StartServer

from api.helpers import EXAMPLE_PLANS, FIXTURE_PLANS, FIXTURES, package_bytes

FINISHED = ("completed", "failed", "cancelled")


class FakeLLM:
    """fake_llm.py in a subprocess, logging one JSON line per answered request."""

    def __init__(self, workdir: Path, latency_ms: float = 0.0, port: int = 0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "llm-requests.jsonl"
        port_file = workdir / "llm-port"
        self.process = subprocess.Popen(
            [sys.executable, str(FIXTURES / "fake_llm.py"), "--port", str(port), "--port-file", str(port_file),
             "--log", str(self.log_path), "--latency-ms", str(latency_ms)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError("fake_llm.py did not start")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def requests(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def count(self) -> int:
        return len(self.requests())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def fake_llm_factory(tmp_path: Path) -> Iterator[Callable[..., FakeLLM]]:
    started: list[FakeLLM] = []

    def start(latency_ms: float = 0.0, port: int = 0) -> FakeLLM:
        server = FakeLLM(tmp_path / f"fake-llm-{len(started)}", latency_ms, port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def write_agents(data_dir: Path, llm: FakeLLM, model: str = "nc-fake-v1", name: str = "fake", *, add: bool = False) -> None:
    """An OpenAI-compatible agent pointed at the fake LLM, in <data_dir>/config/agents.yaml
    (added to the agents written before when `add`)."""
    path = data_dir / "config" / "agents.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if add and path.exists() else "agents:\n"
    text += (
        f"  {name}:\n    provider: openai\n    model: {model}\n    base_url: {llm.base_url}\n"
        f"    api_key_env: FAKE_LLM_KEY\n    max_retries: 0\n    max_concurrency: 32\n"
    )
    path.write_text(text, encoding="utf-8")


class Api:
    """A client of one running server."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def deploy(self, plan_dir: Path, top_folder: str | None = None) -> dict[str, Any]:
        return self.deploy_bytes(package_bytes(plan_dir, top_folder))

    def deploy_bytes(self, data: bytes, *, expect: int = 200) -> dict[str, Any]:
        response = self.http.post("/api/plans/deploy-file", files={"plan": ("plan.zip", data, "application/zip")})
        assert response.status_code == expect, response.text
        return response.json()

    def start_run(self, plan_id: str, *, expect: int = 200, headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
        response = self.http.post("/api/runs", json={"plan_id": plan_id, **body}, headers=headers or {})
        assert response.status_code == expect, response.text
        return response.json()

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/runs/{run_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(self, run_id: str, statuses: tuple[str, ...] = FINISHED, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in statuses:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} is still {run['status']} after {timeout}s: {run}")
            time.sleep(0.05)

    def close(self) -> None:
        self.http.close()


ApiFactory = Callable[..., Api]


@pytest.fixture
def api_factory(start_server: StartServer) -> Iterator[ApiFactory]:
    """api_factory(data_dir, examples=False, **env) -> Api for a fresh real server (hypercorn)."""
    clients: list[Api] = []

    def start(data_dir: Path, *, examples: bool = False, wait_ready: bool = True, **env: str) -> Api:
        environ = {"FAKE_LLM_KEY": "test-key", "NORMCODE_PLANS__DEPLOY_EXAMPLES": "true" if examples else "false", **env}
        server = start_server(data_dir, env=environ, entry="hypercorn")
        api = Api(server)
        clients.append(api)
        if wait_ready:
            wait_ready_or_fail(api)
        return api

    yield start
    for client in clients:
        client.close()


def wait_ready_or_fail(api: Api, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.http.get("/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"/ready did not turn green: {api.http.get('/ready').text}")


@pytest.fixture
def api(api_factory: ApiFactory, data_dir: Path) -> Api:
    return api_factory(data_dir)


def fixture_plan(name: str) -> Path:
    return FIXTURE_PLANS / name


def example_plan(name: str = "idea-to-tagline") -> Path:
    return EXAMPLE_PLANS / name
