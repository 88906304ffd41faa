"""The logger sidecar: a raw-ASGI reverse proxy in front of a model server that taps traffic.

Every path is forwarded unchanged (V1, V2, `/openai/...`, health, the model server's own
`/metrics`): method, raw path and query, headers minus hop-by-hop ones (the Host header is
kept, as KServe's Go agent keeps it), and the body. Responses come back with their status,
headers minus hop-by-hop ones and their body bytes as produced: chunked and SSE responses
are streamed to the client chunk by chunk from a pooled keep-alive connection
(`logger.upstream`, a lean httptools-based client: profiling showed two thirds of the
sidecar's CPU in httpx; httpx still carries HEAD requests and https explainers), and teed (up to `max_event_body_bytes`) into the response event.

Decisions:

- **Metrics.** The sidecar serves its own metrics at `settings.metrics_path`, by default
  `GET /infertap/metrics` (proxy counts and latency, `infertap_proxy_*`, and the delivery's
  `infertap_logger_*`). `GET /metrics` is the model server's, forwarded like every other
  path: the sidecar stays transparent, and scraping the sidecar's port sees both.
- **Explain routing.** `^/v1/models/[\\w-]+:explain$` goes to `explainer_url` when set (what
  KServe's ingress does); otherwise to the model server. Routed explain calls are not
  logged as inference events: in KServe the predictor's agent never sees them (the
  explainer has a logger block of its own), and detectors would count them as traffic.
- **Ingest.** `POST /` carrying a CloudEvent (`ce-specversion` or structured content type)
  is taken by `logger.ingest`; any other `POST /` is proxied.
- **Errors.** Upstream unreachable: 502 `{"error": ...}`; upstream timeout
  (`upstream_timeout_s`): 504; request body over `max_request_bytes`: 413. An upstream that
  fails after the response started cannot change its status: the connection is closed.
- **Probes** are not logged (see `logger.tap`).

Logging never blocks a request: events go to `Delivery.submit`, which only enqueues.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any, Awaitable, Callable

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY as PROCESS_REGISTRY, generate_latest

from logger import ingest
from logger.metrics import REGISTRY
from logger.settings import LoggerSettings
from logger.tap import Tap
from logger.upstream import UpstreamError, UpstreamPool, UpstreamTimeout

log = logging.getLogger("infertap.logger.proxy")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

EXPLAIN_PATH = re.compile(r"^/v1/models/[\w-]+:explain$")
# RFC 9110 7.6.1 hop-by-hop headers, plus content-length (recomputed for the body we send)
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
                        b"te", b"trailer", b"transfer-encoding", b"upgrade", b"proxy-connection"})
# content-length is recomputed; expect: the body is already read, no 100-continue dance upstream
_REQUEST_DROP = HOP_BY_HOP | {b"content-length", b"expect"}
_JSON_HEADERS = [(b"content-type", b"application/json")]


class BodyTooLarge(Exception):
    """The request body exceeds `max_request_bytes`."""


class ReverseProxy:
    """ASGI app: forwards to the model server, taps traffic into a `Delivery`.

    `delivery=None` (no `--log-url`) proxies without logging. The lifespan starts and stops
    the delivery and the upstream connection pool.
    """

    def __init__(self, settings: LoggerSettings, delivery: Any = None):
        self.settings = settings
        self.delivery = delivery
        self.tap = Tap.from_settings(settings, delivery)
        self.upstream = f"http://{settings.component_host}:{settings.component_port}"
        self._upstream_url = httpx.URL(self.upstream)
        self._explainer_url = httpx.URL(settings.explainer_url.rstrip("/")) if settings.explainer_url else None
        # a base URL's own path (an explainer behind a path prefix) goes before the request's
        self._upstream_prefix = self._upstream_url.raw_path.rstrip(b"/")
        self._explainer_prefix = self._explainer_url.raw_path.rstrip(b"/") if self._explainer_url else b""
        self.max_request = settings.max_request_bytes
        self.ingest_authorization = ingest.expected_authorization(settings.ingest_auth_token)
        self.metrics_path = settings.metrics_path
        self.client: httpx.AsyncClient | None = None
        self._pool: UpstreamPool | None = None
        self._explainer_pool: UpstreamPool | None = None
        self._start_lock = asyncio.Lock()

    # --- lifespan ------------------------------------------------------------------------

    async def startup(self) -> None:
        timeout = httpx.Timeout(self.settings.upstream_timeout_s, connect=min(10.0, self.settings.upstream_timeout_s))
        limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256, keepalive_expiry=self.settings.upstream_keepalive_s)
        self.client = httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False, trust_env=False)
        # transparent proxy: send only the client's headers, not httpx's defaults
        for name in list(self.client.headers.keys()):
            del self.client.headers[name]
        connect = min(10.0, self.settings.upstream_timeout_s)
        keepalive = self.settings.upstream_keepalive_s
        self._pool = UpstreamPool(self.settings.component_host, self.settings.component_port, connect,
                                  self.settings.upstream_timeout_s, keepalive_expiry=keepalive)
        ex = self._explainer_url
        if ex is not None and ex.scheme == "http":
            self._explainer_pool = UpstreamPool(ex.host, ex.port or 80, connect, self.settings.upstream_timeout_s,
                                                keepalive_expiry=keepalive)
        if self.delivery is not None:
            await self.delivery.start()

    async def _ensure_started(self) -> None:
        async with self._start_lock:
            if self.client is None:
                await self.startup()

    async def shutdown(self) -> None:
        if self.delivery is not None:
            await self.delivery.stop()
        for pool in (self._pool, self._explainer_pool):
            if pool is not None:
                pool.close()
        if self.client is not None:
            await self.client.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    log.exception("sidecar startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- requests ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websockets are not proxied (no inference protocol uses them); ASGI servers answer 403

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method, path, headers = scope["method"], scope["path"], scope["headers"]
        if self.client is None:  # served without a lifespan: start on the first request
            await self._ensure_started()
        if method == "GET" and path == self.metrics_path:
            await _respond(send, 200, generate_latest(REGISTRY) + generate_latest(PROCESS_REGISTRY), [(b"content-type", CONTENT_TYPE_LATEST.encode())])
            return
        is_ingest = method == "POST" and path == "/" and ingest.is_cloudevent(headers)
        if is_ingest and not ingest.authorized(headers, self.ingest_authorization):  # before reading the body
            await _respond(send, 401, json.dumps({"error": ingest.UNAUTHORIZED}).encode(),
                           _JSON_HEADERS + [(b"www-authenticate", b'Bearer realm="infertap"')])
            return
        try:
            body = await read_body(receive, self.max_request)
        except BodyTooLarge:
            await _json(send, 413, {"error": f"request body exceeds {self.max_request} bytes"})
            self.tap.metrics.observe(path, 413, time.perf_counter() - started)
            return
        if is_ingest:
            status, answer = ingest.accept(headers, body, self.delivery)
            await _json(send, status, answer)
            return
        status = await self._forward(scope, method, path, headers, body, send)
        self.tap.metrics.observe(path, status, time.perf_counter() - started)

    async def _forward(self, scope: Scope, method: str, path: str, headers: list, body: bytes, send: Send) -> int:
        """Proxy one request; returns the status sent to the client."""
        explain = self._explainer_url is not None and EXPLAIN_PATH.match(path)
        base = self._explainer_url if explain else self._upstream_url
        raw_path = scope.get("raw_path") or path.encode()
        query = scope.get("query_string")
        if query:
            raw_path = raw_path + b"?" + query
        prefix = self._explainer_prefix if explain else self._upstream_prefix
        if prefix:
            raw_path = prefix + raw_path
        out_headers = _forward_headers(headers, scope)
        exchange = None if explain else self.tap.begin(method, path, headers, body)
        pool = self._explainer_pool if explain else self._pool
        if pool is not None and method != "HEAD":
            return await self._forward_pooled(pool, method, raw_path, out_headers, body, exchange, send)
        return await self._forward_httpx(base.copy_with(raw_path=raw_path), method, out_headers, body, exchange, send)

    async def _forward_pooled(self, pool: UpstreamPool, method: str, target: bytes, headers: list, body: bytes,
                              exchange: Any, send: Send) -> int:
        """The hot path: the lean keep-alive client of `logger.upstream`."""
        try:
            response = await pool.request(method, target, headers, body)
        except UpstreamError as exc:
            status = 504 if isinstance(exc, UpstreamTimeout) else 502
            return await self._fail(send, exchange, status, exc.reason, f"upstream {pool.host}:{pool.port}: {exc}")
        try:
            status = response.status
            if exchange is not None:
                exchange.response_start(status)
            await send({"type": "http.response.start", "status": status,
                        "headers": [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]})
            while True:
                chunk = await response.next_chunk()
                if chunk is None:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return status
                if exchange is not None:
                    exchange.response_chunk(chunk)
                if response.ended:  # the usual case: the whole body arrived with the headers
                    await send({"type": "http.response.body", "body": chunk, "more_body": False})
                    return status
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:
            # headers already sent: all we can do is cut the connection (the ASGI server does)
            self.tap.metrics.upstream_error(exc.reason)
            raise ConnectionAbortedError(f"upstream failed mid-response: {exc}") from exc
        finally:
            response.close()
            if exchange is not None:
                exchange.finish()

    async def _forward_httpx(self, url: httpx.URL, method: str, headers: list, body: bytes, exchange: Any,
                             send: Send) -> int:
        """HEAD requests and https explainers."""
        request = self.client.build_request(method, url, headers=headers,
                                            content=body if body or method not in ("GET", "HEAD") else None)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            return await self._fail(send, exchange, 504, "timeout", f"upstream {url.host}:{url.port} timed out: {exc!r}")
        except httpx.HTTPError as exc:
            return await self._fail(send, exchange, 502, "unreachable", f"upstream {url.host}:{url.port} unreachable: {exc!r}")
        try:
            status = response.status_code
            if exchange is not None:
                exchange.response_start(status)
            await send({"type": "http.response.start", "status": status,
                        "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]})
            if method == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return status
            async for chunk in response.aiter_raw():
                if exchange is not None:
                    exchange.response_chunk(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return status
        except httpx.HTTPError as exc:
            self.tap.metrics.upstream_error("broken_stream")
            raise ConnectionAbortedError(f"upstream failed mid-response: {exc!r}") from exc
        finally:
            await response.aclose()
            if exchange is not None:
                exchange.finish()

    async def _fail(self, send: Send, exchange: Any, status: int, reason: str, message: str) -> int:
        log.warning("%s", message)
        self.tap.metrics.upstream_error(reason)
        if exchange is not None:  # the client got this status: log it as the response
            payload = json.dumps({"error": message}).encode()
            exchange.response_start(status)
            exchange.response_chunk(payload)
            exchange.finish()
            await _respond(send, status, payload, _JSON_HEADERS)
        else:
            await _json(send, status, {"error": message})
        return status


def _forward_headers(headers: list[tuple[bytes, bytes]], scope: Scope) -> list[tuple[bytes, bytes]]:
    """Request headers for the upstream: hop-by-hop ones (and those `Connection` names) dropped,
    the client's address appended to `X-Forwarded-For`, as Go's ReverseProxy does."""
    drop = _REQUEST_DROP
    xff = None
    for name, value in headers:
        if name == b"connection":
            drop = drop | {t.strip().lower() for t in value.split(b",")}
        elif name == b"x-forwarded-for":
            xff = value
    out = [(n, v) for n, v in headers if n not in drop and n != b"x-forwarded-for"]
    client = scope.get("client")
    if client:
        ip = client[0].encode()
        out.append((b"x-forwarded-for", xff + b", " + ip if xff else ip))
    elif xff:
        out.append((b"x-forwarded-for", xff))
    return out


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; BodyTooLarge past `limit` bytes (checked as it arrives)."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise BodyTooLarge
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client went away while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _respond(send: Send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _json(send: Send, status: int, payload: dict) -> None:
    await _respond(send, status, json.dumps(payload).encode(), _JSON_HEADERS)


def create_app(settings: LoggerSettings, delivery: Any = None) -> ReverseProxy:
    """The sidecar as an ASGI app. Without `delivery`, one is built from `settings.log_url`
    by `logger.delivery.build_delivery` (none when no URL is given: proxy only)."""
    if delivery is None and settings.log_url:
        from logger.delivery import build_delivery
        delivery = build_delivery(settings)
    return ReverseProxy(settings, delivery)
