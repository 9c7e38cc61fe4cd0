"""The `example-http` agent provider: OpenAI-compatible chat completions over plain httpx."""

from __future__ import annotations

from typing import Any

import httpx

from normcode_core.agents.sdk import PerLoop, is_retryable_status, missing_key_reason, parse_retry_after, read_api_key
from normcode_core.agents.types import AgentConfig, LLMError, LLMRequest, LLMResponse
from normcode_core.hookspecs import hookimpl

__version__ = "0.1.0"
PROVIDER = "example-http"
KEY_ENV = "EXAMPLE_HTTP_API_KEY"  # used when an agent names no api_key_env and no base_url


class ExampleHttpAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._clients: PerLoop[httpx.AsyncClient] = PerLoop(self._new_client)

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=(self.config.base_url or "").rstrip("/"),
            headers={"Authorization": f"Bearer {read_api_key(self.config, KEY_ENV)}"},
            timeout=self.config.timeout,
        )

    async def complete(self, request: LLMRequest) -> LLMResponse:
        body: dict[str, Any] = {"model": self.config.model, "messages": list(request.messages)}
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        try:
            response = await self._clients.get().post("/chat/completions", json=body)
        except httpx.TimeoutException:
            raise LLMError(f"{PROVIDER}: request timed out after {self.config.timeout:g}s", retryable=True) from None
        except httpx.TransportError as exc:
            raise LLMError(f"{PROVIDER}: connection failed: {exc}", retryable=True) from None
        if response.status_code >= 400:
            raise LLMError(
                f"{PROVIDER}: HTTP {response.status_code}: {response.text[:300]}",
                status=response.status_code,
                retryable=is_retryable_status(response.status_code),
                retry_after=parse_retry_after(dict(response.headers)),
            )
        data = response.json()
        usage = data.get("usage") or {}
        return LLMResponse(
            text=data["choices"][0]["message"]["content"] or "",
            model=data.get("model") or self.config.model or "",
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
        )

    async def aclose(self) -> None:
        await self._clients.aclose()


class ExampleHttpProvider:
    name = PROVIDER

    def unavailable_reason(self, config: AgentConfig) -> str | None:
        if not config.base_url:
            return f"agent {config.name!r} needs a base_url (the OpenAI-compatible endpoint)"
        if not config.model:
            return f"agent {config.name!r} names no model"
        return missing_key_reason(config, KEY_ENV)

    def create_agent(self, config: AgentConfig) -> ExampleHttpAgent:
        return ExampleHttpAgent(config)


@hookimpl
def agent_providers() -> list[ExampleHttpProvider]:
    return [ExampleHttpProvider()]
