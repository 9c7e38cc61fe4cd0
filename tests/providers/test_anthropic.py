"""The anthropic provider through the real `anthropic` SDK over HTTP to the fake server."""

from __future__ import annotations

from normcode_core.agents import LLMRequest

from .conftest import ANTHROPIC_KEY, agent_config
from .fake_servers import reply_for


async def test_system_messages_go_to_the_top_level_system_field(fake_llm, api_keys, make_registry):
    config = agent_config("anthropic", fake_llm, model="nc-fake-v1")
    agent = make_registry(config).get(config.name)
    messages = (
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Second question\n  indented"},
    )

    response = await agent.complete(LLMRequest(messages=messages, temperature=0.2))

    [sent] = fake_llm.posts()
    assert sent.path == "/v1/messages"
    # This SDK version sends the key as a bearer token; older ones used x-api-key.
    bearer = sent.headers.get("authorization", "").removeprefix("Bearer ")
    assert ANTHROPIC_KEY in (sent.headers.get("x-api-key"), bearer)
    assert sent.headers["anthropic-version"]
    assert sent.body["model"] == "nc-fake-v1"
    assert sent.body["system"] == "Be exact."
    assert sent.body["messages"] == [dict(m) for m in messages[1:]]
    assert sent.body["max_tokens"] == 4096
    assert sent.body["temperature"] == 0.2
    expected_text, _ = reply_for("nc-fake-v1", list(messages))
    assert response.text == expected_text
    assert response.input_tokens > 0 and response.output_tokens > 0
    assert response.model == "nc-fake-v1"


async def test_no_system_field_without_system_messages_and_max_tokens_from_request(fake_llm, api_keys, make_registry):
    config = agent_config("anthropic", fake_llm)
    agent = make_registry(config).get(config.name)

    await agent.complete(LLMRequest(messages=({"role": "user", "content": "hi"},), max_tokens=50))

    [sent] = fake_llm.posts()
    assert "system" not in sent.body
    assert sent.body["max_tokens"] == 50
