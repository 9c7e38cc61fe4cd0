"""The `anthropic` agent provider: the messages API through the official `anthropic` SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from normcode_core.agents.sdk import (
    PerLoop,
    error_from_sdk,
    missing_key_reason,
    read_api_key,
    sdk_http_client,
)
from normcode_core.agents.types import AgentConfig, LLMRequest, LLMResponse
from normcode_core.hookspecs import hookimpl

if TYPE_CHECKING:
    import anthropic


def _sdk() -> Any:
    # Imported on first use (or warmed at start-up): the SDK takes seconds to import.
    import anthropic

    return anthropic


# The messages API requires max_tokens; used when neither the request nor the agent sets one.
DEFAULT_MAX_TOKENS = 4096


class AnthropicAgent:
    def __init__(self, config: AgentConfig, *, key_env: str) -> None:
        self.config = config
        self._key_env = key_env
        self._clients: PerLoop[anthropic.AsyncAnthropic] = PerLoop(self._new_client)

    def _new_client(self) -> anthropic.AsyncAnthropic:
        sdk = _sdk()
        return sdk.AsyncAnthropic(
            api_key=read_api_key(self.config, self._key_env),
            base_url=self.config.base_url,
            timeout=self.config.timeout,
            max_retries=0,  # the registry retries, and counts every attempt
            # Closed with the SDK client (its close() closes the HTTP client it was given).
            http_client=sdk_http_client(sdk, self.config.timeout, tcp_keepalive=True),
        )

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        # Anthropic takes system text as a top-level field, not as a message.
        system = [m["content"] for m in request.messages if m["role"] == "system"]
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [dict(m) for m in request.messages if m["role"] != "system"],
            "max_tokens": request.max_tokens
            or int((self.config.extra or {}).get("max_tokens", DEFAULT_MAX_TOKENS)),
        }
        if system:
            body["system"] = "\n\n".join(system)
        temperature = request.temperature if request.temperature is not None else self.config.temperature
        if temperature is not None:
            # Newer SDKs dropped the `temperature` parameter; the extra body works with every version.
            body["extra_body"] = {"temperature": temperature}
        return body

    async def complete(self, request: LLMRequest) -> LLMResponse:
        sdk = _sdk()
        try:
            message = await self._clients.get().messages.create(**self.request_body(request))
        except sdk.AnthropicError as exc:
            # Not chained: the SDK error holds the request, and the request holds the key.
            raise error_from_sdk(exc, sdk, "anthropic", self.config.timeout) from None
        text = "".join(block.text for block in message.content if getattr(block, "type", None) == "text")
        return LLMResponse(
            text=text,
            model=message.model or self.config.model or "",
            input_tokens=message.usage.input_tokens or 0,
            output_tokens=message.usage.output_tokens or 0,
        )

    async def aclose(self) -> None:
        await self._clients.aclose()


class AnthropicProvider:
    name: ClassVar[str] = "anthropic"
    key_env: ClassVar[str] = "ANTHROPIC_API_KEY"

    def unavailable_reason(self, config: AgentConfig) -> str | None:
        if not config.model:
            return f"agent {config.name!r} names no model"
        return missing_key_reason(config, self.key_env)

    def create_agent(self, config: AgentConfig) -> AnthropicAgent:
        _sdk()  # import now rather than inside the first call's timeout
        return AnthropicAgent(config, key_env=self.key_env)


@hookimpl
def agent_providers() -> list[AnthropicProvider]:
    return [AnthropicProvider()]
