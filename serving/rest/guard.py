"""Request guards as pure ASGI middleware: a body size limit (413) and optional bearer-token auth (401).

Used by the servers that take bodies from the network without the model server's own body
reader (the explainer, the detector's HTTP ingress). Both answer `{"error": ...}` JSON.

- Size: a declared Content-Length over the limit is refused before any byte is read; a
  chunked body is counted as it arrives and refused once it passes the limit.
- Auth: with a token set, every request that is not a GET or HEAD (health, readiness,
  metrics: what probes and Prometheus read) must carry `Authorization: Bearer <token>`,
  compared with `hmac.compare_digest` (constant time).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

TOKEN_ENV = "INFERTAP_AUTH_TOKEN"


def token_from_env(explicit: str | None) -> str | None:
    """The token given on the command line, else `$INFERTAP_AUTH_TOKEN`, else None (no auth)."""
    return explicit or os.environ.get(TOKEN_ENV) or None


class _TooLarge(Exception):
    pass


class RequestGuard:
    """Wraps an ASGI app: 413 past `max_body_bytes`, 401 without the bearer token (when one is set)."""

    def __init__(self, app: Any, max_body_bytes: int | None = None, token: str | None = None):
        self.app, self.limit = app, max_body_bytes
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.expected is not None and scope["method"] not in ("GET", "HEAD"):
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _json(
                    send,
                    401,
                    "missing or wrong bearer token (Authorization: Bearer <token>)",
                    [(b"www-authenticate", b'Bearer realm="infertap"')],
                )
                return
        if self.limit is None:
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await _json(send, 413, f"request body of {int(declared)} bytes exceeds the limit of {self.limit} bytes")
            return
        await self._counted(scope, receive, send, self.limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        seen, started = 0, False

        async def counting_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _json(send, 413, f"request body exceeds the limit of {limit} bytes")


async def _json(send: Send, status: int, error: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    import json

    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})
