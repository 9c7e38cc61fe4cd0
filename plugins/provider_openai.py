"""The `openai` agent provider: chat completions through the official `openai` SDK.

`OpenAIProvider` also serves any OpenAI-compatible endpoint: subclasses change only the
provider name, the default key variable and the default base URL (see provider_dashscope).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from normcode_core.agents.sdk import (
    PerLoop,
    error_from_sdk,
    missing_key_reason,
    read_api_key,
    sdk_http_client,
)
from normcode_core.agents.types import AgentConfig, LLMError, LLMRequest, LLMResponse
from normcode_core.hookspecs import hookimpl

if TYPE_CHECKING:
    import openai


def _sdk() -> Any:
    # Imported on first use (or warmed at start-up): the SDK takes a second or more to import.
    import openai

    return openai


class OpenAICompatibleAgent:
    def __init__(self, config: AgentConfig, *, provider: str, key_env: str, base_url: str | None) -> None:
        self.config = config
        self.provider = provider
        self._key_env = key_env
        self._base_url = config.base_url or base_url
        self._clients: PerLoop[openai.AsyncOpenAI] = PerLoop(self._new_client)

    def _new_client(self) -> openai.AsyncOpenAI:
        sdk = _sdk()
        return sdk.AsyncOpenAI(
            api_key=read_api_key(self.config, self._key_env),
            base_url=self._base_url,
            timeout=self.config.timeout,
            max_retries=0,  # the registry retries, and counts every attempt
            # Closed with the SDK client (its close() closes the HTTP client it was given).
            http_client=sdk_http_client(sdk, self.config.timeout),
        )

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model, "messages": [dict(m) for m in request.messages]}
        temperature = request.temperature if request.temperature is not None else self.config.temperature
        if temperature is not None:
            body["temperature"] = temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    async def complete(self, request: LLMRequest) -> LLMResponse:
        sdk = _sdk()
        try:
            completion = await self._clients.get().chat.completions.create(**self.request_body(request))
        except sdk.OpenAIError as exc:
            # Not chained: the SDK error holds the request, and the request holds the key.
            raise error_from_sdk(exc, sdk, self.provider, self.config.timeout) from None
        if not completion.choices:
            raise LLMError(f"{self.provider}: the response has no choices")
        usage = completion.usage
        return LLMResponse(
            text=completion.choices[0].message.content or "",
            model=completion.model or self.config.model or "",
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
        )

    async def aclose(self) -> None:
        await self._clients.aclose()


class OpenAIProvider:
    name: ClassVar[str] = "openai"
    key_env: ClassVar[str] = "OPENAI_API_KEY"
    default_base_url: ClassVar[str | None] = None  # the SDK's own default

    def unavailable_reason(self, config: AgentConfig) -> str | None:
        if not config.model:
            return f"agent {config.name!r} names no model"
        return missing_key_reason(config, self.key_env)

    def create_agent(self, config: AgentConfig) -> OpenAICompatibleAgent:
        _sdk()  # import now rather than inside the first call's timeout
        return OpenAICompatibleAgent(config, provider=self.name, key_env=self.key_env,
                                     base_url=self.default_base_url)


@hookimpl
def agent_providers() -> list[OpenAIProvider]:
    return [OpenAIProvider()]
