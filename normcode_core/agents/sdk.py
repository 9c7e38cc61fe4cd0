"""Helpers shared by providers that call an HTTP API through a vendor SDK.

Keys are read only from the environment variable an agent names; SDK errors become `LLMError`
with the HTTP status, whether a retry may help, and the server's Retry-After.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from normcode_core.agents.types import AgentConfig, LLMError

# An agent with its own base_url and no api_key_env talks to a keyless endpoint (a local model
# server); SDKs insist on a non-empty key, so they get this placeholder.
KEYLESS_PLACEHOLDER = "no-key"

ClientT = TypeVar("ClientT")


def key_env_name(config: AgentConfig, default_env: str) -> str | None:
    """The variable holding this agent's key, or None when the agent needs no key."""
    if config.api_key_env:
        return config.api_key_env
    if config.base_url:
        return None
    return default_env


def missing_key_reason(config: AgentConfig, default_env: str) -> str | None:
    """Why this agent cannot authenticate, or None when its key is present (or not needed)."""
    env = key_env_name(config, default_env)
    if env is not None and not os.environ.get(env):
        return f"environment variable {env} is not set (agent {config.name!r} reads its API key from it)"
    return None


def read_api_key(config: AgentConfig, default_env: str) -> str:
    """The key from the agent's environment variable; raises LLMError when it is missing."""
    env = key_env_name(config, default_env)
    if env is None:
        return KEYLESS_PLACEHOLDER
    key = os.environ.get(env)
    if not key:
        raise LLMError(missing_key_reason(config, default_env) or "API key missing", status=None)
    return key


def sdk_http_client(sdk: Any, timeout: float, *, tcp_keepalive: bool = False) -> Any | None:
    """An `http_client=` for a Stainless SDK module (`openai`, `anthropic`) whose connections ACK at
    once (see agents.transport), or None, the SDK's own client, for SDK versions on plain httpx."""
    default_client = getattr(sdk, "DefaultAsyncHttpxClient", object)
    if not any(cls.__module__.partition(".")[0] == "httpx2" for cls in default_client.__mro__):
        return None
    # Imported here, as the SDKs are: httpx2 is only installed alongside the SDKs that use it.
    from normcode_core.agents.transport import quick_ack_http_client

    return quick_ack_http_client(timeout, limits=sdk.DEFAULT_CONNECTION_LIMITS, tcp_keepalive=tcp_keepalive)


def is_retryable_status(status: int) -> bool:
    """429 and 5xx may succeed later; any other 4xx will fail the same way again."""
    return status == 429 or status >= 500


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_sdk(exc: Exception, sdk: Any, provider: str, timeout: float) -> LLMError:
    """Map an exception from a Stainless-generated SDK (`openai`, `anthropic`) to LLMError."""
    if isinstance(exc, sdk.APITimeoutError):
        return LLMError(f"{provider}: request timed out after {timeout:g}s", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return LLMError(f"{provider}: connection failed: {exc}", retryable=True)
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        return LLMError(
            f"{provider}: HTTP {status}: {_short(exc.message)}",
            status=status,
            retryable=is_retryable_status(status),
            retry_after=parse_retry_after(dict(exc.response.headers)),
        )
    return LLMError(f"{provider}: {type(exc).__name__}: {_short(str(exc))}")


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class PerLoop(Generic[ClientT]):
    """One SDK client per event loop: HTTP connection pools must not cross loops."""

    def __init__(self, factory: Callable[[], ClientT]) -> None:
        self._factory = factory
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ClientT] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> ClientT:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._factory()
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the client of the running loop (others belong to loops that close them)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        # SDK clients close with `close()`, plain httpx clients with `aclose()`.
        close = getattr(client, "aclose", None) or getattr(client, "close", None)
        if close is not None:
            await close()
