"""The `mock` agent provider: the deterministic `demo` agent, which calls no model at all.

Its reply is a pure function of the prompt, in the JSON envelope NormCode paradigms parse
(`{"thinking", "result", "answer"}`), so demo runs of real plans complete. Every value says
"demo" so nobody mistakes it for a model's answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import ClassVar

from normcode_core.agents.types import AgentConfig, LLMRequest, LLMResponse
from normcode_core.hookspecs import hookimpl

# The prompt's own output spec declares a boolean result, e.g. `"result": true/false`.
BOOLEAN_SPEC = re.compile(r'"(result|answer)"\s*:\s*(true|false|<bool|<boolean|bool\b|boolean\b)', re.IGNORECASE)


def demo_reply(request: LLMRequest) -> str:
    prompt = "\n".join(m["content"] for m in request.messages if m["role"] == "user").strip()
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    value: bool | str
    if BOOLEAN_SPEC.search(prompt):
        value = int(digest[0], 16) % 2 == 0
    else:
        value = f"demo-answer-{digest[:8]}"
    return json.dumps({
        "thinking": f"Demo agent: no language model was called; this is a fixed reply for prompt {digest[:8]}.",
        "result": value,
        "answer": value,
    })


class DemoAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    async def complete(self, request: LLMRequest) -> LLMResponse:
        text = demo_reply(request)
        prompt_chars = sum(len(m["content"]) for m in request.messages)
        # Rough token counts (4 characters a token) so usage figures behave as with a real model.
        return LLMResponse(text=text, model=self.config.model or "demo",
                           input_tokens=max(1, prompt_chars // 4), output_tokens=max(1, len(text) // 4))


class MockProvider:
    name: ClassVar[str] = "mock"

    def unavailable_reason(self, config: AgentConfig) -> str | None:
        return None

    def create_agent(self, config: AgentConfig) -> DemoAgent:
        return DemoAgent(config)


@hookimpl
def agent_providers() -> list[MockProvider]:
    return [MockProvider()]
