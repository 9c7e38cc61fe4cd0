"""Retries: 429 (honouring Retry-After), 5xx and timeouts are retried with backoff; other 4xx are not."""

from __future__ import annotations

import email.utils
import time

import pytest

from normcode_core.agents import LLMCallFailed, LLMRequest, RetryPolicy
from normcode_core.agents.sdk import parse_retry_after

from .conftest import agent_config
from .fake_servers import Fault

REQUEST = LLMRequest(messages=({"role": "user", "content": "retry me"},))
PROVIDERS = ["openai", "anthropic", "dashscope"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_429_waits_for_retry_after_then_succeeds(fake_llm, api_keys, make_registry, provider):
    config = agent_config(provider, fake_llm)
    agent = make_registry(config).get(config.name)
    fake_llm.inject(Fault(status=429, headers={"Retry-After": "1"}))

    started = time.monotonic()
    response = await agent.complete(REQUEST)
    elapsed = time.monotonic() - started

    assert len(fake_llm.posts()) == 2
    assert elapsed >= 1.0  # Retry-After (1 s) is longer than this agent's backoff (<= 0.2 s)
    assert response.attempts == 2
    assert response.latency_ms >= 1000
    assert (agent.stats.attempts, agent.stats.retries, agent.stats.succeeded, agent.stats.failed) == (2, 1, 1, 0)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_5xx_is_retried_until_max_retries_then_fails_with_the_count(fake_llm, api_keys, make_registry, provider):
    config = agent_config(provider, fake_llm, max_retries=2)
    agent = make_registry(config).get(config.name)
    fake_llm.inject(Fault(status=500), Fault(status=503), Fault(status=502), Fault(status=500))

    with pytest.raises(LLMCallFailed) as failure:
        await agent.complete(REQUEST)

    assert len(fake_llm.posts()) == 3  # the first try and max_retries=2 retries, nothing more
    assert failure.value.attempts == 3
    assert failure.value.status == 502
    assert failure.value.retryable is True
    assert "after 3 attempts" in str(failure.value) and "502" in str(failure.value)
    assert (agent.stats.attempts, agent.stats.retries, agent.stats.failed) == (3, 2, 1)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_500_then_success(fake_llm, api_keys, make_registry, provider):
    config = agent_config(provider, fake_llm)
    agent = make_registry(config).get(config.name)
    fake_llm.inject(Fault(status=500))

    response = await agent.complete(REQUEST)

    assert response.attempts == 2 and len(fake_llm.posts()) == 2
    assert '"result"' in response.text


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_timeout_is_retried(fake_llm, api_keys, make_registry, provider):
    config = agent_config(provider, fake_llm, timeout=0.5)
    agent = make_registry(config).get(config.name)
    fake_llm.inject(Fault(delay_s=2.0))

    started = time.monotonic()
    response = await agent.complete(REQUEST)

    assert time.monotonic() - started < 1.9  # gave up on the slow reply instead of waiting for it
    assert response.attempts == 2 and len(fake_llm.posts()) == 2
    assert agent.stats.retries == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_other_4xx_are_not_retried(fake_llm, api_keys, make_registry, provider, status):
    config = agent_config(provider, fake_llm, max_retries=5)
    agent = make_registry(config).get(config.name)
    fake_llm.inject(Fault(status=status))

    with pytest.raises(LLMCallFailed) as failure:
        await agent.complete(REQUEST)

    assert len(fake_llm.posts()) == 1
    assert failure.value.status == status and failure.value.retryable is False
    assert failure.value.attempts == 1 and "first attempt" in str(failure.value)
    assert (agent.stats.retries, agent.stats.failed) == (0, 1)


async def test_a_retry_after_beyond_the_agents_patience_fails_at_once(fake_llm, api_keys, make_registry):
    config = agent_config("openai", fake_llm, extra={"retry_after_max_s": 5})
    agent = make_registry(config).get(config.name)
    fake_llm.inject(Fault(status=429, headers={"Retry-After": "3600"}))

    started = time.monotonic()
    with pytest.raises(LLMCallFailed) as failure:
        await agent.complete(REQUEST)

    assert time.monotonic() - started < 2
    assert len(fake_llm.posts()) == 1
    assert failure.value.status == 429 and "3600" in str(failure.value)


async def test_a_refused_connection_is_retried_and_then_reported(api_keys, make_registry, fake_llm):
    config = agent_config("openai", fake_llm, max_retries=1)
    fake_llm.stop()  # nothing listens on that port any more
    agent = make_registry(config).get(config.name)

    with pytest.raises(LLMCallFailed) as failure:
        await agent.complete(REQUEST)

    assert failure.value.attempts == 2 and failure.value.status is None
    assert "connection" in str(failure.value).lower()


def test_backoff_grows_exponentially_with_jitter_and_respects_the_cap():
    policy = RetryPolicy(max_retries=6, base_delay_s=1.0, max_delay_s=8.0)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0)]:
        delays = {policy.delay(retry, None) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered
    assert policy.delay(1, 5.0) >= 5.0  # Retry-After is a floor


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "7"}) == 0.25
    now = time.time()
    http_date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after({"Retry-After": http_date}, now=now) <= 31
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
