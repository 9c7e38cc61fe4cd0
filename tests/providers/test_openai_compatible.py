"""The openai and dashscope providers through the real `openai` SDK over HTTP to the fake server."""

from __future__ import annotations

import json

import pytest

from normcode_core.agents import LLMRequest
from plugins.provider_dashscope import DASHSCOPE_BASE_URL, DashScopeProvider

from .conftest import DASHSCOPE_KEY, OPENAI_KEY, agent_config
from .fake_servers import reply_for

MESSAGES = (
    {"role": "system", "content": "You are exact.\nKeep  spacing."},
    {"role": "user", "content": "Summarise:\n  line one\r\n\tline two  "},
    {"role": "assistant", "content": "Earlier answer"},
    {"role": "user", "content": 'Answer with {"result": <string>}'},
)


@pytest.mark.parametrize(("provider", "key"), [("openai", OPENAI_KEY), ("dashscope", DASHSCOPE_KEY)])
async def test_sends_messages_unchanged_with_the_key_and_returns_the_reply(
    fake_llm, api_keys, make_registry, provider, key
):
    config = agent_config(provider, fake_llm, model="nc-fake-v1", temperature=0.3)
    agent = make_registry(config).get(config.name)

    response = await agent.complete(LLMRequest(messages=MESSAGES))

    [sent] = fake_llm.posts()
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {key}"
    assert sent.body["model"] == "nc-fake-v1"
    assert sent.body["messages"] == [dict(m) for m in MESSAGES]
    assert sent.body["temperature"] == 0.3
    assert "response_format" not in sent.body
    expected_text, _ = reply_for("nc-fake-v1", list(MESSAGES))
    assert response.text == expected_text
    assert response.model == "nc-fake-v1"
    assert response.input_tokens > 0 and response.output_tokens > 0
    assert response.attempts == 1
    assert response.latency_ms > 0
    assert agent.stats.calls == 1 and agent.stats.succeeded == 1 and agent.stats.retries == 0
    assert agent.stats.input_tokens == response.input_tokens


async def test_json_mode_maps_to_response_format_and_request_overrides_agent_settings(
    fake_llm, api_keys, make_registry
):
    config = agent_config("openai", fake_llm, temperature=0.9)
    agent = make_registry(config).get(config.name)
    request = LLMRequest(messages=({"role": "user", "content": 'Is it? {"result": true/false}'},),
                         json_mode=True, temperature=0.0, max_tokens=77)

    response = await agent.complete(request)

    [sent] = fake_llm.posts()
    assert sent.body["response_format"] == {"type": "json_object"}
    assert sent.body["temperature"] == 0.0
    assert sent.body["max_tokens"] == 77
    assert isinstance(json.loads(response.text)["result"], bool)


def test_dashscope_defaults_to_its_documented_compatible_endpoint(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-not-sent")
    from normcode_core.agents import AgentConfig

    config = AgentConfig(name="qwen-plus", provider="dashscope", model="qwen-plus", api_key_env="DASHSCOPE_API_KEY")
    provider = DashScopeProvider()
    assert provider.unavailable_reason(config) is None
    client = provider.create_agent(config)._new_client()  # built, never called: no real provider is contacted
    assert str(client.base_url).rstrip("/") == DASHSCOPE_BASE_URL
    assert client.max_retries == 0


def test_dashscope_reads_dashscope_api_key_when_the_agent_names_no_variable(monkeypatch):
    from normcode_core.agents import AgentConfig

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    config = AgentConfig(name="qwen", provider="dashscope", model="qwen-plus")
    assert "DASHSCOPE_API_KEY" in DashScopeProvider().unavailable_reason(config)
