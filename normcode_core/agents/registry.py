"""AgentRegistry: the configured agents, built by provider plugins, each used through a ManagedAgent.

Providers come from the `agent_providers` hook, so built-in and third-party providers are found
the same way. An agent that cannot be used (unknown provider, missing key) is listed with the
reason and never replaced by another one: `.get()` raises `AgentUnavailable` naming it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

import pluggy
import structlog

from normcode_core.agents.managed import ManagedAgent
from normcode_core.agents.types import AgentConfig, AgentProvider

log = structlog.get_logger("normcode.agents")


class AgentUnavailable(LookupError):
    """An agent that is not configured or cannot be used; `reason` says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"agent {name!r} is unavailable: {reason}")
        self.name = name
        self.reason = reason


class AgentSettings(Protocol):
    """The part of Settings the registry reads."""

    agents: Mapping[str, AgentConfig]
    default_agent: str | None


class AgentRegistry:
    def __init__(self, settings: AgentSettings, plugin_manager: pluggy.PluginManager) -> None:
        self._configs: dict[str, AgentConfig] = dict(getattr(settings, "agents", None) or {})
        self.default_name: str | None = getattr(settings, "default_agent", None) or None
        self.providers: dict[str, AgentProvider] = _collect_providers(plugin_manager)
        self._agents: dict[str, ManagedAgent] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self._configs)

    def config(self, name: str) -> AgentConfig:
        try:
            return self._configs[name]
        except KeyError:
            known = ", ".join(sorted(self._configs)) or "none"
            raise AgentUnavailable(name, f"no agent of that name is configured (configured: {known})") from None

    def unavailable_reason(self, config: AgentConfig) -> str | None:
        """Why an agent with this config cannot be used now, or None."""
        provider = self.providers.get(config.provider)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            return f"provider {config.provider!r} is not installed (installed providers: {known})"
        return provider.unavailable_reason(config)

    def get(self, name: str | None = None) -> ManagedAgent:
        """The agent called `name` (the default agent when None), ready to call."""
        if name is None:
            if self.default_name is None:
                raise AgentUnavailable("(default)", "no default_agent is configured")
            name = self.default_name
        config = self.config(name)
        reason = self.unavailable_reason(config)
        if reason is not None:
            raise AgentUnavailable(name, reason)
        with self._lock:
            agent = self._agents.get(name)
            if agent is None:
                # One ManagedAgent per name, so its concurrency limit is shared by every run.
                agent = ManagedAgent(self.providers[config.provider].create_agent(config))
                self._agents[name] = agent
            return agent

    def ad_hoc(self, config: AgentConfig) -> ManagedAgent:
        """An agent that is not in the settings (e.g. the CLI's --llm-base-url), with its own limit."""
        reason = self.unavailable_reason(config)
        if reason is not None:
            raise AgentUnavailable(config.name, reason)
        return ManagedAgent(self.providers[config.provider].create_agent(config))

    def status(self) -> list[dict[str, Any]]:
        """Every configured agent: name, provider, model, available, reason, default, usage so far."""
        rows = []
        for name, config in self._configs.items():
            reason = self.unavailable_reason(config)
            agent = self._agents.get(name)
            rows.append({
                "name": name,
                "provider": config.provider,
                "model": config.model,
                "description": config.description,
                "available": reason is None,
                "reason": reason,
                "default": name == self.default_name,
                "max_concurrency": config.max_concurrency,
                "usage": agent.stats.as_dict() if agent is not None else None,
            })
        return rows

    async def aclose(self) -> None:
        """Close provider clients opened on the running event loop."""
        for agent in list(self._agents.values()):
            close = getattr(agent.inner, "aclose", None)
            if close is not None:
                await close()


def _collect_providers(plugin_manager: pluggy.PluginManager) -> dict[str, AgentProvider]:
    providers: dict[str, AgentProvider] = {}
    for batch in plugin_manager.hook.agent_providers():
        for provider in batch or []:
            if provider.name in providers:
                log.warning("duplicate_agent_provider", provider=provider.name,
                            kept=type(providers[provider.name]).__qualname__,
                            ignored=type(provider).__qualname__)
                continue
            providers[provider.name] = provider
    return providers
