"""The per-agent concurrency limit holds at the server, for every caller on any event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from normcode_core.agents import LLMRequest
from normcode_core.agents.limits import ConcurrencyLimit

from .conftest import agent_config


def _request(i: int) -> LLMRequest:
    return LLMRequest(messages=({"role": "user", "content": f"question {i}"},))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_the_server_never_sees_more_than_max_concurrency_requests(fake_llm, api_keys, make_registry, provider):
    fake_llm.latency_s = 0.2
    config = agent_config(provider, fake_llm, max_concurrency=2)
    registry = make_registry(config)

    # Two "runs" each fetch the agent by name and fire four calls at once.
    results = await asyncio.gather(*(registry.get(config.name).complete(_request(i)) for i in range(8)))

    assert len(results) == 8 and len(fake_llm.posts()) == 8
    assert fake_llm.max_in_flight == 2
    assert registry.get(config.name).stats.in_flight == 0


def test_the_limit_is_shared_by_runs_on_different_event_loops(fake_llm, api_keys, make_registry):
    fake_llm.latency_s = 0.2
    config = agent_config("openai", fake_llm, max_concurrency=3)
    registry = make_registry(config)
    errors: list[BaseException] = []

    async def one_run(offset: int) -> None:
        agent = registry.get(config.name)
        await asyncio.gather(*(agent.complete(_request(offset + i)) for i in range(4)))

    def thread_main(offset: int) -> None:
        try:
            asyncio.run(one_run(offset))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=(n * 10,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(fake_llm.posts()) == 12
    assert fake_llm.max_in_flight == 3


async def test_cancelled_waiters_give_their_slot_back():
    limit = ConcurrencyLimit(1)
    await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0.01)
    assert limit.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limit.waiting == 0
    limit.release()
    assert limit.in_use == 0
    async with limit.slot():
        assert limit.in_use == 1
    assert limit.in_use == 0


async def test_a_waiter_cancelled_after_being_granted_does_not_leak_the_slot():
    limit = ConcurrencyLimit(1)
    await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0.01)
    limit.release()  # grant scheduled for the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.sleep(0.01)
    assert limit.in_use == 0 and limit.waiting == 0
