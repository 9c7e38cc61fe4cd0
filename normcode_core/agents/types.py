"""The contract between the engine and LLM agent providers.

The engine builds every request itself (exact message text matters: plans were tuned against
the prompts), so a provider sends `messages` unchanged and only maps them to its wire format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class LLMRequest:
    """One chat request: `messages` are `{"role": "system"|"user"|"assistant", "content": str}`."""

    messages: tuple[dict[str, str], ...]
    json_mode: bool = False
    temperature: float | None = None
    max_tokens: int | None = None

    def digest(self) -> str:
        """Stable hash of the request, used to find a recorded response on resume."""
        payload = json.dumps(
            {"messages": list(self.messages), "json_mode": self.json_mode},
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LLMResponse:
    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    attempts: int = 1


class LLMError(Exception):
    """A provider call that failed; `retryable` says whether the same call may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class AgentConfig:
    """One entry of `agents.yaml`."""

    name: str
    provider: str
    model: str | None = None
    api_key_env: str | None = None
    base_url: str | None = None
    timeout: float = 60.0
    max_retries: int = 3
    max_concurrency: int = 8
    temperature: float | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Agent(Protocol):
    """A configured model endpoint. Raises LLMError on failure."""

    config: AgentConfig

    async def complete(self, request: LLMRequest) -> LLMResponse: ...


@runtime_checkable
class AgentProvider(Protocol):
    """Creates agents for one provider name (`openai`, `anthropic`, `dashscope`, `mock`, ...)."""

    name: str

    def unavailable_reason(self, config: AgentConfig) -> str | None:
        """Why an agent with this config cannot be used (e.g. its key variable is unset), else None."""
        ...

    def create_agent(self, config: AgentConfig) -> Agent: ...
