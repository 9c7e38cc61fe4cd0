"""Engine test fixtures: the fixture packages, a real fake-LLM server, real agents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = (REPO_ROOT / ".." / "shared" / "fixtures").resolve()
FIXTURE_PLANS = FIXTURES / "plans"


@dataclass
class FakeLLM:
    """`fake_llm.py` running as a real HTTP server on a free port."""

    process: subprocess.Popen
    port: int
    log: Path
    _seen: int = field(default=0)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines() if line.strip()]

    def new_requests(self) -> list[dict[str, Any]]:
        """Requests received since the previous call."""
        all_requests = self.requests()
        fresh = all_requests[self._seen :]
        self._seen = len(all_requests)
        return fresh


def start_fake_llm(directory: Path, latency_ms: float = 0.0) -> FakeLLM:
    directory.mkdir(parents=True, exist_ok=True)
    port_file = directory / "port"
    log = directory / "requests.jsonl"
    command = [sys.executable, str(FIXTURES / "fake_llm.py"), "--port", "0", "--port-file", str(port_file), "--log", str(log)]
    if latency_ms:
        command += ["--latency-ms", str(latency_ms)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (port_file.exists() and port_file.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("fake_llm.py did not start")
        time.sleep(0.02)
    return FakeLLM(process, int(port_file.read_text().strip()), log)


@pytest.fixture
def fake_llm(tmp_path: Path) -> Iterator[FakeLLM]:
    server = start_fake_llm(tmp_path / "fake-llm")
    yield server
    server.process.kill()
    server.process.wait()


@pytest.fixture
def slow_fake_llm(tmp_path: Path) -> Iterator[FakeLLM]:
    """The fake LLM answering after 50 ms (like a fast real model)."""
    server = start_fake_llm(tmp_path / "slow-fake-llm", latency_ms=50)
    yield server
    server.process.kill()
    server.process.wait()


def make_agent(tmp_path: Path, base_url: str, model: str, provider: str = "openai", max_concurrency: int = 8) -> Any:
    """A real agent (provider plugin, SDK, HTTP) as `normcode-server plan run --llm-base-url` builds it."""
    from normcode_core.agents.registry import AgentRegistry
    from normcode_core.agents.types import AgentConfig
    from normcode_core.plugins import load_plugins
    from normcode_core.settings import load_settings

    key_env = "OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"
    os.environ.setdefault(key_env, "not-needed")
    data_dir = tmp_path / "agent-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(data_dir, environ={})
    registry = AgentRegistry(settings, load_plugins(settings))
    return registry.ad_hoc(AgentConfig(name="test", provider=provider, model=model, base_url=base_url, api_key_env=key_env, max_concurrency=max_concurrency))


@pytest.fixture(scope="session")
def synthetic_plans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small synthetic plans from gen_synthetic.py (chain, chainflat, fanin, loop, chainllm; N=5, 12)."""
    out = tmp_path_factory.mktemp("synthetic")
    subprocess.run(
        [sys.executable, str(FIXTURES / "synthetic" / "gen_synthetic.py"), "--out", str(out), "--sizes", "5,12",
         "--families", "chain,chainflat,fanin,loop,chainllm"],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
async def agents(tmp_path: Path):
    """`agents(base_url, model, **options)` builds real agents; their clients close after the test."""
    made: list[Any] = []

    def make(base_url: str, model: str, **options: Any) -> Any:
        agent = make_agent(tmp_path / f"agent-{len(made)}", base_url, model, **options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        close = getattr(getattr(agent, "inner", agent), "aclose", None)
        if close is not None:
            await close()
