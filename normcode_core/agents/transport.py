"""An async HTTP client for provider SDKs whose TCP sockets acknowledge replies at once.

Servers that write a reply's headers and body in two send()s with Nagle on (Python's http.server,
many local model servers) hold the body until the headers are ACKed, and Linux delays that ACK on a
kept-alive connection: every call stalls ~40 ms. Re-arming TCP_QUICKACK before each read removes it.
"""

from __future__ import annotations

import socket
import ssl
import sys
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2
from httpx2._utils import get_environment_proxies  # the SDKs' own proxy lookup; httpx2 has no public one

SocketOption = tuple[int, int, int]

# Linux only; elsewhere the client below is a plain httpx2 client.
TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class QuickAckStream(httpcore2.AsyncNetworkStream):
    """A connection that re-arms TCP_QUICKACK before every read (the kernel clears it as it goes)."""

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._sock is not None and TCP_QUICKACK is not None:
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
            except OSError:
                pass  # a closed or non-TCP socket: the read itself reports what matters
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return QuickAckStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class QuickAckBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's anyio backend, handing out TCP connections wrapped in `QuickAckStream`."""

    def __init__(self) -> None:
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return QuickAckStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        # No delayed ACKs on a unix socket: nothing to wrap.
        return await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class QuickAckTransport(httpx2.AsyncHTTPTransport):
    """`httpx2.AsyncHTTPTransport` (default TLS, HTTP/1.1, no retries) over `QuickAckBackend`."""

    def __init__(self, *, limits: httpx2.Limits, socket_options: Iterable[SocketOption] | None = None) -> None:
        options = list(socket_options or [])
        ssl_context = httpx2.create_ssl_context()  # as httpx2's default: verify, SSL_CERT_FILE/DIR honoured
        super().__init__(verify=ssl_context, limits=limits, socket_options=options)
        # httpx2's transport takes no network backend, so its (private) pool is replaced here by one
        # with the same settings it was just given plus our backend; requests, responses and the
        # mapping of httpcore2's errors to httpx2's (which the SDKs rely on) stay httpx2's own.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            retries=0,
            socket_options=options,
            network_backend=QuickAckBackend(),
        )


def _keepalive_socket_options() -> list[SocketOption]:
    """TCP keep-alive probes after 60 s idle, as the `anthropic` SDK's default client sets them."""
    options: list[SocketOption] = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    if hasattr(socket, "TCP_KEEPINTVL"):
        options.append((socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 60))
    elif sys.platform == "darwin":
        options.append((socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPALIVE", 0x10), 60))
    if hasattr(socket, "TCP_KEEPCNT"):
        options.append((socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5))
    if hasattr(socket, "TCP_KEEPIDLE"):
        options.append((socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60))
    return options


def quick_ack_http_client(
    timeout: float, *, limits: httpx2.Limits, tcp_keepalive: bool = False
) -> httpx2.AsyncClient:
    """A client with the SDKs' defaults (limits, redirects, proxies from the environment) whose
    direct connections ACK at once; a plain httpx2 client where TCP_QUICKACK does not exist.

    `tcp_keepalive` adds the keep-alive probes the `anthropic` SDK's default client sets.
    """
    options = _keepalive_socket_options() if tcp_keepalive else []
    transport: httpx2.AsyncBaseTransport = (
        QuickAckTransport(limits=limits, socket_options=options)
        if TCP_QUICKACK is not None
        else httpx2.AsyncHTTPTransport(limits=limits, socket_options=options)
    )
    # Passing a transport turns off httpx2's own proxy lookup, so the environment's proxies
    # (and NO_PROXY exceptions, as None) are mounted here, as the SDKs' default clients do.
    mounts: dict[str, httpx2.AsyncBaseTransport | None] = {
        pattern: None if proxy is None else httpx2.AsyncHTTPTransport(proxy=proxy, limits=limits,
                                                                     socket_options=options)
        for pattern, proxy in get_environment_proxies().items()
    }
    return httpx2.AsyncClient(
        timeout=timeout, limits=limits, follow_redirects=True, transport=transport, mounts=mounts
    )
