"""The providers' HTTP client keeps connections alive without the delayed-ACK stall.

The fake server writes each reply's headers and body in two send()s with Nagle on, as Python's
http.server and many local model servers do: on a reused connection the body waits for the
client's ACK of the headers, which Linux delays ~40 ms unless the client sets TCP_QUICKACK.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx2
import pytest

from normcode_core.agents import LLMRequest
from normcode_core.agents.transport import QuickAckBackend, quick_ack_http_client

from .conftest import agent_config
from .fake_servers import reply_for

CALLS = 20
LIMITS = httpx2.Limits(max_connections=10, max_keepalive_connections=5)
needs_quickack = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux-only")


def _request(i: int) -> LLMRequest:
    return LLMRequest(messages=({"role": "user", "content": f"question number {i}"},))


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


@pytest.mark.parametrize("provider", ["openai", "dashscope", "anthropic"])
async def test_sequential_calls_share_one_connection_and_do_not_stall(
    fake_llm, api_keys, make_registry, provider
):
    config = agent_config(provider, fake_llm)
    agent = make_registry(config).get(config.name)

    responses = [await agent.complete(_request(i)) for i in range(CALLS)]

    for i, response in enumerate(responses):
        assert response.text == reply_for("nc-fake-v1", list(_request(i).messages))[0]
        assert response.attempts == 1
    # Keep-alive kept: every request came over the first TCP connection.
    assert [sent.connection for sent in fake_llm.posts()] == [1] * CALLS
    assert fake_llm.connections == 1
    if hasattr(socket, "TCP_QUICKACK"):
        # The stall is >= 40 ms (Linux's minimum delayed-ACK time) on every reused-connection call;
        # an unstalled local call takes a few ms. The median ignores a call slowed by a busy machine.
        assert statistics.median(r.latency_ms for r in responses[1:]) < 20.0

    # Closing the agent closes the SDK client, and with it the HTTP client and its connection.
    await agent.inner.aclose()
    assert await _until(lambda: fake_llm.open_connections == 0)


@pytest.fixture
def setsockopt_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int, int, object]]]:
    """Every setsockopt on any socket, as (fd, level, option, value), still applied for real."""
    calls: list[tuple[int, int, int, object]] = []
    real = socket.socket.setsockopt

    def recording(sock: socket.socket, level: int, option: int, value: object, *rest: object) -> None:
        calls.append((sock.fileno(), level, option, value))
        real(sock, level, option, value, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "setsockopt", recording)
    yield calls


def _quickacks(calls: list[tuple[int, int, int, object]]) -> list[tuple[int, int, int, object]]:
    return [c for c in calls if c[1] == socket.IPPROTO_TCP and c[2] == socket.TCP_QUICKACK]


@needs_quickack
async def test_the_stream_sets_tcp_quickack_before_every_read(fake_llm, setsockopt_calls):
    stream = await QuickAckBackend().connect_tcp("127.0.0.1", fake_llm.port, timeout=5.0)
    fd = stream.get_extra_info("socket").fileno()
    try:
        for _ in range(3):  # three requests on the one connection
            await stream.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n", timeout=5.0)
            received, reads = b"", 0
            while not received.endswith(b'{"ok": true}'):
                before = len(_quickacks(setsockopt_calls))
                received += await stream.read(65536, timeout=5.0)
                reads += 1
                assert len(_quickacks(setsockopt_calls)) == before + 1
            assert received.startswith(b"HTTP/1.1 200")
    finally:
        await stream.aclose()
    assert set(_quickacks(setsockopt_calls)) == {(fd, socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)}
    assert fake_llm.connections == 1


@needs_quickack
async def test_without_tcp_quickack_the_client_is_a_plain_one(fake_llm, setsockopt_calls, monkeypatch):
    monkeypatch.setattr("normcode_core.agents.transport.TCP_QUICKACK", None)  # as on macOS or Windows
    async with quick_ack_http_client(5.0, limits=LIMITS) as client:
        replies = [await client.get(fake_llm.url) for _ in range(3)]

    assert [r.json() for r in replies] == [{"ok": True}] * 3
    assert _quickacks(setsockopt_calls) == []
    assert fake_llm.connections == 1


async def test_proxies_from_the_environment_are_still_used(fake_llm, monkeypatch):
    for name in ("all_proxy", "https_proxy", "no_proxy", "ALL_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", fake_llm.url)
    monkeypatch.setenv("HTTP_PROXY", fake_llm.url)
    target = "http://upstream.invalid/v1/chat/completions"

    async with quick_ack_http_client(5.0, limits=LIMITS, tcp_keepalive=True) as client:
        response = await client.post(target, json={})

    # A forward proxy is sent the absolute URL; the fake server answers 404 for that path.
    assert response.status_code == 404
    [sent] = fake_llm.posts()
    assert sent.path == target and urlsplit(sent.path).hostname == "upstream.invalid"

