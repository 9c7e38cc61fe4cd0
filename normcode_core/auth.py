"""Optional bearer-token auth (`server.api_token`; empty means none).

The API (/api/*, /ws/*) needs `Authorization: Bearer <token>`, or `?token=<token>` for clients
that cannot set headers (EventSource, browser WebSocket). /health, /ready and the web UI are open.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from normcode_core.errors import error_response

PROTECTED_PREFIXES = ("/api/", "/ws/")


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, token: str = "") -> None:
        self.app = app
        self.token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.token or scope["type"] not in ("http", "websocket") or not _protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # Refuse before accepting: the client sees the handshake fail (HTTP 403).
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
            return
        response = error_response(
            401,
            "unauthorized",
            "send 'Authorization: Bearer <token>' (or ?token=<token> for event streams)",
            headers={"WWW-Authenticate": 'Bearer realm="normcode"'},
        )
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token):
                    return True
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return any(hmac.compare_digest(candidate.encode("utf-8"), self.token) for candidate in query.get("token", []))


def _protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES) or path in ("/api", "/ws")
