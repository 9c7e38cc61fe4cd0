"""Keys come only from the variable an agent names; a missing key is reported, never papered over."""

from __future__ import annotations

import traceback

import pytest
import structlog

from normcode_core.agents import AgentConfig, AgentUnavailable, LLMCallFailed, LLMRequest

from .conftest import KEYS, OPENAI_KEY, agent_config
from .fake_servers import Fault


def test_missing_key_is_listed_with_the_reason_and_get_fails_clearly(fake_llm, monkeypatch, make_registry):
    monkeypatch.delenv("TEST_OPENAI_KEY", raising=False)
    gpt = agent_config("openai", fake_llm, name="gpt")
    demo = AgentConfig(name="demo", provider="mock")
    registry = make_registry(gpt, demo, default="gpt")

    rows = {row["name"]: row for row in registry.status()}
    assert rows["gpt"]["available"] is False
    assert "TEST_OPENAI_KEY" in rows["gpt"]["reason"] and "not set" in rows["gpt"]["reason"]
    assert rows["gpt"]["default"] is True
    assert rows["demo"] == {**rows["demo"], "available": True, "reason": None, "default": False}

    for name in ("gpt", None):  # by name, and as the default agent: no fallback to the demo agent
        with pytest.raises(AgentUnavailable) as failure:
            registry.get(name)
        assert failure.value.name == "gpt"
        assert "TEST_OPENAI_KEY" in failure.value.reason
        assert str(failure.value).startswith("agent 'gpt' is unavailable: environment variable TEST_OPENAI_KEY")
    with pytest.raises(AgentUnavailable):
        registry.ad_hoc(gpt)
    assert fake_llm.posts() == []


def test_an_empty_key_variable_counts_as_missing(fake_llm, monkeypatch, make_registry):
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "")
    config = agent_config("anthropic", fake_llm)
    with pytest.raises(AgentUnavailable, match="TEST_ANTHROPIC_KEY is not set"):
        make_registry(config).get(config.name)


def test_the_key_is_read_from_the_named_variable_only(fake_llm, monkeypatch, make_registry):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-standard-variable")  # not the variable the agent names
    monkeypatch.delenv("TEST_OPENAI_KEY", raising=False)
    config = agent_config("openai", fake_llm)
    assert not make_registry(config).status()[0]["available"]


def test_unknown_agent_and_unknown_provider(fake_llm, make_registry):
    registry = make_registry(AgentConfig(name="odd", provider="no-such-provider", model="m"), default=None)
    row = registry.status()[0]
    assert row["available"] is False and "provider 'no-such-provider' is not installed" in row["reason"]
    assert "openai" in row["reason"]  # lists what is installed
    with pytest.raises(AgentUnavailable, match="no agent of that name is configured"):
        registry.get("missing")
    with pytest.raises(AgentUnavailable, match="no default_agent"):
        registry.get()


def test_an_agent_without_a_model_is_unavailable(fake_llm, api_keys, make_registry):
    config = agent_config("openai", fake_llm, model=None)
    assert "names no model" in make_registry(config).status()[0]["reason"]


def test_a_custom_endpoint_without_api_key_env_needs_no_key(fake_llm, monkeypatch, make_registry):
    # e.g. the CLI's --llm-base-url pointing at a local model server
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = AgentConfig(name="local", provider="openai", model="nc-fake-v1", base_url=fake_llm.openai_url)
    assert make_registry(config).status()[0]["available"] is True


async def test_keys_never_appear_in_errors_status_or_logs(fake_llm, api_keys, make_registry):
    config = agent_config("openai", fake_llm, max_retries=1)
    registry = make_registry(config)
    agent = registry.get(config.name)
    fake_llm.inject(Fault(status=500), Fault(status=401))

    with structlog.testing.capture_logs() as logs, pytest.raises(LLMCallFailed) as failure:
        await agent.complete(LLMRequest(messages=({"role": "user", "content": "hi"},)))

    assert fake_llm.posts()[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"  # it was sent...
    error = failure.value
    # Every frame below this test's own, with its local variables, as a crash report would show them.
    traceback_with_locals = "".join(traceback.TracebackException(
        type(error), error, error.__traceback__.tb_next, capture_locals=True).format())
    exposed = [repr(logs), repr(registry.status()), str(failure.value), traceback_with_locals]
    assert logs, "retries and failures are logged"
    for key in KEYS.values():  # ...and is shown nowhere
        assert [line for text in exposed for line in text.splitlines() if key in line] == []
