"""LLM agents: the provider contract (`types`), the registry built from settings, and the wrapper
that retries, limits concurrency and counts usage (`managed`)."""

from normcode_core.agents.managed import AgentStats, LLMCallFailed, ManagedAgent, RetryPolicy
from normcode_core.agents.registry import AgentRegistry, AgentUnavailable
from normcode_core.agents.types import Agent, AgentConfig, AgentProvider, LLMError, LLMRequest, LLMResponse

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentProvider",
    "AgentRegistry",
    "AgentStats",
    "AgentUnavailable",
    "LLMCallFailed",
    "LLMError",
    "LLMRequest",
    "LLMResponse",
    "ManagedAgent",
    "RetryPolicy",
]
