"""Fixtures for provider tests: a fake LLM server on 127.0.0.1 and registries built from plugins."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from types import SimpleNamespace

import pytest

from normcode_core.agents import AgentConfig, AgentRegistry
from normcode_core.plugins import PluginManager

from .fake_servers import FakeLLMServer

# Obviously fake keys: tests check they reach the server and appear nowhere else.
OPENAI_KEY = "sk-test-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-test-0123456789"
DASHSCOPE_KEY = "sk-test-dashscope-0123456789"
KEYS = {"TEST_OPENAI_KEY": OPENAI_KEY, "TEST_ANTHROPIC_KEY": ANTHROPIC_KEY, "TEST_DASHSCOPE_KEY": DASHSCOPE_KEY}

# Retries fast enough for tests; the policy's shape is the same as in production.
FAST_RETRIES = {"retry_base_delay_s": 0.05, "retry_max_delay_s": 0.2}


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def api_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    return KEYS


@pytest.fixture(scope="session")
def plugin_manager() -> PluginManager:
    """The real plugin manager, loading the built-in providers through their entry points."""
    manager = PluginManager()
    manager.load_entry_points()
    return manager


@pytest.fixture
def make_registry(plugin_manager: PluginManager) -> Callable[..., AgentRegistry]:
    def make(*configs: AgentConfig, default: str | None = None) -> AgentRegistry:
        settings = SimpleNamespace(agents={c.name: c for c in configs}, default_agent=default)
        return AgentRegistry(settings, plugin_manager)

    return make


def agent_config(provider: str, server: FakeLLMServer, **overrides: object) -> AgentConfig:
    """An agent of `provider` pointed at the fake server, with fast retries."""
    defaults: dict[str, object] = {
        "openai": {"base_url": server.openai_url, "api_key_env": "TEST_OPENAI_KEY"},
        "dashscope": {"base_url": server.openai_url, "api_key_env": "TEST_DASHSCOPE_KEY"},
        "anthropic": {"base_url": server.url, "api_key_env": "TEST_ANTHROPIC_KEY"},
        "mock": {},
    }[provider]
    fields = {"name": f"{provider}-agent", "provider": provider, "model": "nc-fake-v1", "timeout": 5.0,
              **defaults, **overrides}
    fields["extra"] = {**FAST_RETRIES, **dict(fields.get("extra") or {})}  # type: ignore[arg-type]
    return AgentConfig(**fields)  # type: ignore[arg-type]


REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO_ROOT / "examples" / "provider-plugin"
DIST_NAME = "normcode-provider-example"


def _installed() -> bool:
    try:
        distribution(DIST_NAME)
        return True
    except PackageNotFoundError:
        return False


@pytest.fixture(scope="session")
def example_plugin_installed() -> Iterator[None]:
    """`pip install -e examples/provider-plugin` into this venv; removed again if it was not there before."""
    was_installed = _installed()
    if not was_installed:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(EXAMPLE_DIR)],
                       check=True, capture_output=True, text=True, timeout=300)
    yield
    if not was_installed:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", DIST_NAME],
                       check=False, capture_output=True, timeout=120)
