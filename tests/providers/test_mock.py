"""The demo agent: deterministic, obviously a demo, in the JSON envelope plans parse."""

from __future__ import annotations

import json

from normcode_core.agents import AgentConfig, LLMRequest


def _ask(text: str, system: str = "") -> LLMRequest:
    messages = ({"role": "system", "content": system},) if system else ()
    return LLMRequest(messages=(*messages, {"role": "user", "content": text}))


async def test_demo_replies_are_a_pure_function_of_the_prompt(make_registry):
    registry = make_registry(AgentConfig(name="demo", provider="mock"), default="demo")
    agent = registry.get()

    first = await agent.complete(_ask("Name a colour."))
    again = await agent.complete(_ask("Name a colour.", system="ignored"))
    other = await agent.complete(_ask("Name a fruit."))

    assert first.text == again.text != other.text
    reply = json.loads(first.text)
    assert set(reply) == {"thinking", "result", "answer"}
    assert reply["result"] == reply["answer"] and reply["result"].startswith("demo-")
    assert "Demo agent" in reply["thinking"] and "no language model" in reply["thinking"]
    assert first.model == "demo" and first.attempts == 1


async def test_demo_answers_a_boolean_when_the_output_spec_declares_one(make_registry):
    agent = make_registry(AgentConfig(name="demo", provider="mock")).get("demo")
    values = set()
    for i in range(12):
        reply = json.loads((await agent.complete(_ask(f'Case {i}. Reply {{"result": true/false}}'))).text)
        assert isinstance(reply["result"], bool) and reply["result"] == reply["answer"]
        values.add(reply["result"])
    assert values == {True, False}  # depends on the prompt, not a constant
    boolean_spec = json.loads((await agent.complete(_ask('Return {"answer": <boolean>}'))).text)
    assert isinstance(boolean_spec["answer"], bool)
