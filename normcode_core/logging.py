"""structlog setup: JSON lines on stdout in production, readable console lines in development.

Standard-library loggers (hypercorn, alembic, sqlalchemy, plugins) go through the same processors,
so in production every stdout line is one JSON object. A redaction processor removes the values
of agents' key variables and anything that looks like a credential from every line.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import EventDict, Processor, WrappedLogger

from normcode_core.settings import REDACTED, SECRET_KEY_PATTERN, Settings

# Credential shapes redacted even when they are not a configured secret.
_CREDENTIAL_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{12,}"),  # OpenAI / Anthropic / DashScope style keys
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{6,}"),
    re.compile(r"(?i)([?&](?:token|api_key|key)=)[^&\s]+"),
    re.compile(r"(?i)(://[^:/@\s]+:)[^@\s]+(@)"),  # password inside a URL
)
# Loggers whose own handlers would print plain text: their records go to the root handler instead.
_ROUTED_LOGGERS = ("hypercorn.error", "hypercorn.access", "alembic", "sqlalchemy", "uvicorn", "asyncio")


class Redactor:
    """A structlog processor replacing known secret values and credential-shaped strings with '***'."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self._clean(key, value) for key, value in event_dict.items()}

    def _clean(self, key: Any, value: Any) -> Any:
        if isinstance(key, str) and SECRET_KEY_PATTERN.search(key) and value:
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._clean(k, v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._clean(None, v) for v in value]
        return value

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in _CREDENTIAL_PATTERNS:
            if pattern.groups:
                text = pattern.sub(lambda m: m.group(1) + REDACTED + (m.group(2) if pattern.groups > 1 else ""), text)
            else:
                text = pattern.sub(REDACTED, text)
        return text


_redactor = Redactor()
_LEADING_KEYS = ("timestamp", "level", "logger", "event")


def _leading_keys_first(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """timestamp, level, logger, event first: JSON lines read left to right."""
    ordered = {key: event_dict[key] for key in _LEADING_KEYS if key in event_dict}
    ordered.update((key, value) for key, value in event_dict.items() if key not in ordered)
    return ordered


def configure_logging(settings: Settings | None = None, *, level: str | None = None, fmt: str | None = None) -> None:
    """(Re)configure structlog and the root stdlib logger from settings (idempotent)."""
    if settings is not None:
        level = level or settings.get("logging.level", "INFO")
        fmt = fmt or settings.get("logging.format", "json")
        _redactor.secrets = Redactor(settings.secret_values()).secrets
    level = (level or "INFO").upper()
    renderer: Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt != "console":
        final += [structlog.processors.format_exc_info, _leading_keys_first]
    final += [_redactor, renderer]

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_normcode", False):
            root.removeHandler(existing)
    handler._normcode = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in _ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        routed.handlers.clear()
        routed.propagate = True
        routed.setLevel(logging.NOTSET)
    # SQLAlchemy echoes SQL at INFO when asked; keep it at WARNING unless debugging.
    logging.getLogger("sqlalchemy").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING if level != "DEBUG" else logging.DEBUG)
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def redact(text: str) -> str:
    """`text` with configured secrets and credential-shaped strings replaced (for use outside logs)."""
    return _redactor.text(text)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


class RequestLogMiddleware:
    """Gives every request an id (X-Request-ID in and out) and logs one structured line when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.logger = get_logger("normcode.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500 if scope["type"] == "http" else 101
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
            elif message["type"] == "websocket.close" and status == 101:
                status = 403  # closed before accepting
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            fields: dict[str, Any] = {
                "method": scope.get("method", "WEBSOCKET"),
                "path": scope.get("path", ""),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "client": scope["client"][0] if scope.get("client") else None,
            }
            query = scope.get("query_string", b"").decode("latin-1")
            if query:
                fields["query"] = redact(query)
            # Probes hit /health every few seconds; a healthy probe is not worth an INFO line.
            quiet = fields["path"] in _PROBE_PATHS and status < 400
            (self.logger.debug if quiet else self.logger.info)("request", **fields)
            structlog.contextvars.reset_contextvars(**tokens)


_PROBE_PATHS = frozenset({"/health", "/ready"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _REQUEST_ID.match(text) else None
    return None
