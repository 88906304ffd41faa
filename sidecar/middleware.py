"""The tap as pure ASGI middleware: a Python model server logs in-process, with no extra hop.

    app = InferenceLoggerMiddleware(app, LoggerSettings(log_url=["kafka://..."], ...))
    # or, with a delivery you own and start yourself:
    app = InferenceLoggerMiddleware(app, delivery=my_delivery, inference_service="iris")

Same events and policy as the sidecar (`infertap.sidecar.tap`): modes, skip header, probes, every
status logged with `statuscode`. The request body is read in full first (it is the request
event, submitted before the app runs, as KServe's agent does) and replayed to the app
unchanged; the response is passed through message by message, so streaming and SSE
responses are not held back, and teed up to `max_event_body_bytes`.

When the middleware builds the delivery from settings, the app's lifespan starts and stops
it (and it is started on the first request if the server runs without a lifespan).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from infertap.logger.events import EventBuilder
from infertap.sidecar.settings import LoggerSettings
from infertap.sidecar.tap import Tap

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class InferenceLoggerMiddleware:
    """Wraps an ASGI app; logs each HTTP exchange as KServe-style CloudEvents."""

    def __init__(
        self, app: ASGIApp, settings: LoggerSettings | None = None, *, delivery: Any = None, **event_config: Any
    ):
        """`settings`: a LoggerSettings (its `log_url` builds the delivery unless `delivery`
        is given). Without settings, `event_config` holds LoggerSettings fields
        (`inference_service`, `component`, `log_mode`, `metadata_headers`, ...)."""
        self.app = app
        settings = settings or LoggerSettings(**event_config)
        self._owns_delivery = delivery is None and bool(settings.log_url)
        if self._owns_delivery:
            from infertap.logger.delivery import build_delivery

            delivery = build_delivery(settings)
        self.delivery = delivery
        self.tap = Tap(
            EventBuilder.from_settings(settings),
            delivery,
            settings.log_mode,
            settings.max_event_body_bytes,
            settings.inference_service,
            settings.component,
        )
        self._started = not self._owns_delivery
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan" and self._owns_delivery:
            await self.app(scope, self._lifespan_receive(receive), send)
        elif kind != "http" or self.delivery is None:
            await self.app(scope, receive, send)
        else:
            await self._http(scope, receive, send)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        """Start the delivery before the app's startup, stop it after the app's shutdown."""

        async def wrapped() -> dict:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
            elif message["type"] == "lifespan.shutdown":
                # the app sees shutdown after this returns; flush what was logged so far
                await self.delivery.stop()
            return message

        return wrapped

    async def _start(self) -> None:
        async with self._lock:
            if not self._started:
                await self.delivery.start()
                self._started = True

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._started:
            await self._start()
        started = time.perf_counter()
        body, tail = await _read_all(receive)
        path = scope["path"]
        exchange = self.tap.begin(scope["method"], path, scope["headers"], body)
        if exchange is not None:
            exchange.submit_request()
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            if tail is not None:  # the client went away while sending
                return tail
            return await receive()

        status = 0

        async def tee(message: dict) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                if exchange is not None:
                    exchange.response_start(status)
            elif kind == "http.response.body" and exchange is not None:
                exchange.response_chunk(message.get("body", b""))
                if not message.get("more_body", False):
                    exchange.finish()
            await send(message)

        try:
            await self.app(scope, replay, tee)
        finally:
            if exchange is not None:
                exchange.finish()  # no-op when already sent; covers apps that raise mid-stream
            self.tap.metrics.observe(path, status or 500, time.perf_counter() - started)


async def _read_all(receive: Receive) -> tuple[bytes, dict | None]:
    """The request body, and the disconnect message if the client left before finishing."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(parts), message
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return (parts[0] if len(parts) == 1 else b"".join(parts)), None
