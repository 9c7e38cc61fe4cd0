"""A fake LLM server on 127.0.0.1 speaking the OpenAI and Anthropic HTTP protocols.

Replies come from the shared fixture's `fake_llm.reply_for` (the same pure function of the
prompt the oracle corpus was recorded with). On top of it: every request is captured (path,
headers, JSON body), faults can be queued (an HTTP status with headers, or a delay longer than
the client's timeout), every reply can be slowed down, and the most requests in flight at once
is measured, as are the TCP connections (to check keep-alive: each request names its connection).
Like the shared fixture, replies go out as two writes (headers, then body) with Nagle on.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"
if str(FIXTURES_DIR) not in sys.path:
    sys.path.insert(0, str(FIXTURES_DIR))

with warnings.catch_warnings():  # the fixture's docstring has an invalid escape (a compile-time warning)
    warnings.simplefilter("ignore", DeprecationWarning)
    from fake_llm import normalize_prompt, reply_for  # noqa: E402

OPENAI_PATHS = ("/v1/chat/completions", "/chat/completions", "/compatible-mode/v1/chat/completions")
ANTHROPIC_PATHS = ("/v1/messages", "/messages")


@dataclass(frozen=True)
class Fault:
    """What the next request gets instead of a normal reply."""

    status: int | None = None  # answer with this HTTP error
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait this long first (longer than the client's timeout = a timeout)


@dataclass(frozen=True)
class CapturedRequest:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]
    fault: Fault | None
    connection: int = 0  # 1, 2, ...: which TCP connection, in the order the server accepted them


class FakeLLMServer:
    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.requests: list[CapturedRequest] = []
        self.faults: deque[Fault] = deque()
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0  # accepted so far
        self.open_connections = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ----------------------------------------------------------------------------
    def start(self) -> FakeLLMServer:
        server = self

        class Handler(_Handler):
            fake = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Root URL: the Anthropic SDK's base_url (it appends /v1/messages)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """The OpenAI SDK's base_url (it appends /chat/completions)."""
        return f"{self.url}/v1"

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each request takes the next one until none are left."""
        with self._lock:
            self.faults.extend(faults)

    def posts(self) -> list[CapturedRequest]:
        with self._lock:
            return list(self.requests)

    # -- handling (called on the server's threads) ------------------------------------------
    def _connected(self) -> int:
        with self._lock:
            self.connections += 1
            self.open_connections += 1
            return self.connections

    def _disconnected(self) -> None:
        with self._lock:
            self.open_connections -= 1

    def _begin(self, captured_path: str, headers: dict[str, str], body: dict[str, Any],
               connection: int) -> Fault | None:
        with self._lock:
            fault = self.faults.popleft() if self.faults else None
            self.requests.append(CapturedRequest(captured_path, headers, body, fault, connection))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return fault

    def _end(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeLLMServer
    connection_no: int  # not `connection`: StreamRequestHandler keeps the socket there

    # One handler per TCP connection: it serves every request sent on it (keep-alive).
    def setup(self) -> None:
        super().setup()
        self.connection_no = self.fake._connected()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._disconnected()

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._send(200, {"ok": True})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        body = json.loads(raw or b"{}")
        path = self.path.split("?")[0].rstrip("/")
        headers = {name.lower(): value for name, value in self.headers.items()}
        fault = self.fake._begin(path, headers, body, self.connection_no)
        try:
            if fault is not None and fault.delay_s:
                time.sleep(fault.delay_s)
            if self.fake.latency_s:
                time.sleep(self.fake.latency_s)
            if fault is not None and fault.status is not None:
                reply = (fault.status, _error_body(path, fault.status), fault.headers)
            elif path in OPENAI_PATHS:
                reply = (200, _openai_reply(body), {})
            elif path in ANTHROPIC_PATHS:
                reply = (200, _anthropic_reply(body), {})
            else:
                reply = (404, {"error": {"message": f"unknown path {path}"}}, {})
        finally:
            # No longer in flight once the reply is about to leave: the client may send its next
            # request the moment it has this one, before this thread runs again.
            self.fake._end()
        try:
            self._send(*reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _tokens(messages: list[dict[str, Any]], text: str) -> tuple[int, int]:
    return max(1, len(normalize_prompt(messages)) // 4), max(1, len(text) // 4)


def usage_of(request: CapturedRequest) -> tuple[int, int]:
    """The (input, output) tokens this server reported for a request it answered normally."""
    if request.fault is not None and request.fault.status is not None:
        return 0, 0
    messages = request.body.get("messages", [])
    text, _ = reply_for(request.body.get("model", "nc-fake-v1"), messages)
    return _tokens(messages, text)


def _openai_reply(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model", "nc-fake-v1")
    text, info = reply_for(model, body.get("messages", []))
    prompt_tokens, completion_tokens = _tokens(body.get("messages", []), text)
    return {
        "id": "chatcmpl-" + info["hash"][:24], "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _anthropic_reply(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model", "nc-fake-v1")
    text, info = reply_for(model, body.get("messages", []))
    input_tokens, output_tokens = _tokens(body.get("messages", []), text)
    return {
        "id": "msg_" + info["hash"][:24], "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def _error_body(path: str, status: int) -> dict[str, Any]:
    message = f"injected HTTP {status}"
    if path in ANTHROPIC_PATHS:
        kind = {429: "rate_limit_error", 400: "invalid_request_error", 401: "authentication_error"}.get(
            status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": "injected", "code": status}}
