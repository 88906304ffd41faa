"""The logger sidecar's routing: a reverse proxy in front of a model server that taps traffic.

Every path is forwarded unchanged (V1, V2, `/openai/...`, health, the model server's own
`/metrics`): method, raw path and query, headers minus hop-by-hop ones (the Host header is
kept, as KServe's Go agent keeps it), and the body. Responses come back with their status,
headers minus hop-by-hop ones and their body bytes as produced: chunked and SSE responses
are streamed to the client chunk by chunk from a pooled keep-alive connection
(`infertap.sidecar.upstream`, a lean httptools-based client driven by callbacks, `infertap.sidecar.forward`;
httpx still carries HEAD requests and https explainers), and teed (up to
`max_event_body_bytes`) into the response event. The HTTP server side is `infertap.sidecar.front`.

Decisions:

- **Metrics.** The sidecar serves its own metrics at `settings.metrics_path`, by default
  `GET /infertap/metrics` (proxy counts and latency, `infertap_proxy_*`, and the delivery's
  `infertap_logger_*`). `GET /metrics` is the model server's, forwarded like every other
  path: the sidecar stays transparent, and scraping the sidecar's port sees both.
- **Explain routing.** `^/v1/models/[\\w-]+:explain$` goes to `explainer_url` when set (what
  KServe's ingress does), and so does V2 explain, `^/v2/models/[\\w-]+-explainer/infer$`
  (the explainer's V2 model name); otherwise to the model server. Routed explain calls are
  not logged as inference events: in KServe the predictor's agent never sees them (the
  explainer has a logger block of its own: `infertap up` puts that sidecar in front of the
  explainer and routes to it), and detectors would count them as traffic.
- **Ingest.** `POST /` carrying a CloudEvent (`ce-specversion` or structured content type)
  is taken by `infertap.logger.ingest`; any other `POST /` is proxied.
- **Feedback.** `POST /v1/models/{name}/feedback` (ground truth for logged ids, JSON or an
  `io.infertap.feedback` CloudEvent) is the sidecar's own, guarded like the ingest, and taken
  by `infertap.logger.feedback` (to `<isvc>-feedback`); so are feedback CloudEvents at `POST /`.
- **Errors.** Upstream unreachable: 502 `{"error": ...}`; upstream timeout
  (`upstream_timeout_s`): 504; request body over `max_request_bytes`: 413. An upstream that
  fails after the response started cannot change its status: the connection is closed.
- **Probes** are not logged (see `infertap.sidecar.tap`).

Logging never blocks a request: events go to `Delivery.submit`, which only enqueues.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import REGISTRY as PROCESS_REGISTRY

from infertap.logger import ingest
from infertap.logger.metrics import REGISTRY, MetricsRenderer
from infertap.sidecar import sniff
from infertap.sidecar.forward import HOP_BY_HOP, Forward
from infertap.sidecar.front import ClientConnection, ClientGone, Request
from infertap.sidecar.kserve_agent import QueueProbe
from infertap.sidecar.settings import LoggerSettings
from infertap.sidecar.tap import Tap
from infertap.sidecar.upstream import UpstreamConnection, UpstreamPool

log = logging.getLogger("infertap.logger.proxy")

# V1 `:explain` (KServe's ingress route) and V2 explain (`/v2/models/{name}-explainer/infer`, the
# explainer's V2 model name, as MLServer names it)
FEEDBACK_PATH = re.compile(r"^/v1/models/[^/]+/feedback$")
EXPLAIN_PATH = re.compile(r"^/v1/models/[\w-]+:explain$|^/v2/models/[\w-]+-explainer/infer$")
# content-length is recomputed; expect: the body is already read, no 100-continue dance upstream
_REQUEST_DROP = HOP_BY_HOP | {b"content-length", b"expect"}
_JSON_HEADERS = [(b"content-type", b"application/json")]


class ReverseProxy:
    """Routes each request of a `infertap.sidecar.front.ProxyServer`: forwards it to the model server
    (or the explainer) and taps it into a `Delivery`.

    `delivery=None` (no `--log-url`) proxies without logging. `startup()` and `shutdown()`
    start and stop the delivery and the upstream connection pools.
    """

    def __init__(self, settings: LoggerSettings, delivery: Any = None, feedback: Any = None):
        """`feedback`: the `infertap.logger.feedback.FeedbackIngest` behind the feedback endpoint
        (None: it answers 503)."""
        self.settings = settings
        self.delivery = delivery
        self.feedback = feedback
        self.tap = Tap.from_settings(settings, delivery)
        self.upstream = f"http://{settings.component_host}:{settings.component_port}"
        self._upstream_url = httpx.URL(self.upstream)
        self._explainer_url = httpx.URL(settings.explainer_url.rstrip("/")) if settings.explainer_url else None
        # a base URL's own path (an explainer behind a path prefix) goes before the request's
        self._upstream_prefix = self._upstream_url.raw_path.rstrip(b"/")
        self._explainer_prefix = self._explainer_url.raw_path.rstrip(b"/") if self._explainer_url else b""
        self.ingest_authorization = ingest.expected_authorization(settings.ingest_auth_token)
        self.metrics_path = settings.metrics_path
        # rendered in a thread: a scrape never stalls the traffic on this event loop
        self._metrics = MetricsRenderer(REGISTRY, PROCESS_REGISTRY)
        # compared with the request target as sent: a percent-encoded spelling of it is proxied
        self._metrics_path = settings.metrics_path.encode()
        # targets the sidecar answers itself (metrics, ingest) or routes elsewhere (explain):
        # never passed as they came
        self._not_presend = {
            "excluded": (self._metrics_path, b"/?"),
            "exact": (b"/",),
            # the feedback endpoint is the sidecar's own (`/v1/models/{name}/feedback`)
            "inside": (b"/feedback", b":explain", b"-explainer/infer")
            if self._explainer_url is not None
            else (b"/feedback",),
        }
        self._presend_ok = not self._upstream_prefix
        try:  # `K-Network-Probe` requests, as KServe's agent answers them (`infertap.sidecar.kserve_agent`)
            self.queue_probe = QueueProbe.from_env(settings.component_port)
        except ValueError as exc:
            log.warning("%s; the readiness probe checks nothing", exc)
            self.queue_probe = QueueProbe([])
        self.client: httpx.AsyncClient | None = None
        self.pool: UpstreamPool | None = None
        self._explainer_pool: UpstreamPool | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def startup(self) -> None:
        timeout = httpx.Timeout(self.settings.upstream_timeout_s, connect=min(10.0, self.settings.upstream_timeout_s))
        limits = httpx.Limits(
            max_connections=1024, max_keepalive_connections=256, keepalive_expiry=self.settings.upstream_keepalive_s
        )
        self.client = httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False, trust_env=False)
        # transparent proxy: send only the client's headers, not httpx's defaults
        for name in list(self.client.headers.keys()):
            del self.client.headers[name]
        connect = min(10.0, self.settings.upstream_timeout_s)
        keepalive = self.settings.upstream_keepalive_s
        self.pool = UpstreamPool(
            self.settings.component_host,
            self.settings.component_port,
            connect,
            self.settings.upstream_timeout_s,
            keepalive_expiry=keepalive,
        )
        ex = self._explainer_url
        if ex is not None and ex.scheme == "http":
            self._explainer_pool = UpstreamPool(
                ex.host, ex.port or 80, connect, self.settings.upstream_timeout_s, keepalive_expiry=keepalive
            )
        if self.delivery is not None:
            await self.delivery.start()
        if self.feedback is not None:
            await self.feedback.start()

    async def shutdown(self) -> None:
        self.tap.submit_requests()  # held back for a response head that did not come
        self.tap.flush()
        stops = []
        otel = self.tap.llm.otel
        if otel is not None:  # flush the queued spans (blocking in the SDK: in a thread), beside the delivery's
            stops.append(asyncio.to_thread(otel.shutdown))
        if self.delivery is not None:
            stops.append(self.delivery.stop())
        if self.feedback is not None:
            stops.append(self.feedback.stop())
        await asyncio.gather(*stops)
        for pool in (self.pool, self._explainer_pool):
            if pool is not None:
                pool.close()
        if self.client is not None:
            await self.client.aclose()

    # --- requests ------------------------------------------------------------------------

    def presend(self, data: bytes, client: ClientConnection) -> tuple[UpstreamConnection | None, bytes] | None:
        """Whether the request in `data` is the common case that is forwarded as it came
        (`infertap.sidecar.sniff`): then (connection, payload), the payload already sent on the
        connection when a pooled one was idle (else None: `dispatch` connects). None when the
        request must be parsed first."""
        pool = self.pool
        if not self._presend_ok or pool is None:
            return None
        payload = sniff.request_to_pass(data, self.settings.max_request_bytes, client.client, **self._not_presend)
        if payload is None:
            return None
        conn = pool.acquire()
        if conn is not None:
            pool.send(conn, payload, None)
        return conn, payload

    def dispatch(self, request: Request, client: ClientConnection) -> None:
        """Answer one request through `client` (called by the connection; must not block)."""
        started = time.perf_counter()
        method, headers = request.method, request.headers
        if request.too_large:
            client.respond_json(413, {"error": f"request body exceeds {self.settings.max_request_bytes} bytes"})
            self.tap.metrics.observe(request.path, 413, time.perf_counter() - started)
            return
        if method == "GET":
            probe = QueueProbe.header(headers)
            if probe is not None:  # Knative's probes are the sidecar's to answer, as KServe's agent does
                self._answer_probe(probe, headers, client)
                return
        if method == "GET" and request.path_is(self._metrics_path):
            client.handler = _TaskHandler(asyncio.get_running_loop().create_task(self._serve_metrics(client)))
            return
        if method == "POST" and request.path_is(b"/") and ingest.is_cloudevent(headers):
            if not ingest.authorized(headers, self.ingest_authorization):
                client.respond_json(
                    401, {"error": ingest.UNAUTHORIZED}, [(b"www-authenticate", b'Bearer realm="infertap"')]
                )
            else:
                status, answer = ingest.accept(headers, request.body, self.delivery, self.feedback)
                client.respond_json(status, answer)
            return
        if method == "POST" and b"/feedback" in request.url and FEEDBACK_PATH.match(request.path):
            self._answer_feedback(request, client)
            return
        explain = self._explainer_url is not None and EXPLAIN_PATH.match(request.path)
        prefix = self._explainer_prefix if explain else self._upstream_prefix
        pool = self._explainer_pool if explain else self.pool
        if request.sent is not None:  # already on its way (`presend`)
            assert self.pool is not None and request.raw is not None  # `presend` used the pool and set `raw`
            Forward(self, self.pool, client, request, request.raw, self.tap.enabled, started).adopt(request.sent)
            return
        if pool is not None and method != "HEAD":
            if request.raw is not None:  # forwarded as it came (`presend`: never a routed or prefixed one)
                payload = request.raw
            else:
                payload = pool.request_bytes(
                    method, prefix + request.target, _forward_headers(headers, request.client), request.body
                )
            Forward(self, pool, client, request, payload, not explain and self.tap.enabled, started).start()
            return
        path = request.path
        exchange = None if explain else self.tap.begin(method, path, headers, request.body)
        base = self._explainer_url if explain else self._upstream_url
        assert base is not None  # `explain` implies an explainer URL
        task = asyncio.get_running_loop().create_task(
            self._forward_httpx(
                client,
                base.copy_with(raw_path=prefix + request.target),
                method,
                path,
                _forward_headers(headers, request.client),
                request.body,
                exchange,
                started,
            )
        )
        client.handler = _TaskHandler(task)

    def _answer_feedback(self, request: Request, client: ClientConnection) -> None:
        """Ground truth for logged ids (`infertap.logger.feedback`), guarded as the ingest is."""
        if not ingest.authorized(request.headers, self.ingest_authorization):
            client.respond_json(
                401, {"error": ingest.UNAUTHORIZED}, [(b"www-authenticate", b'Bearer realm="infertap"')]
            )
            return
        if self.feedback is None:
            client.respond_json(503, {"error": "this logger takes no feedback (no feedback sink)"})
            return
        status, answer = self.feedback.accept(request.headers, request.body)
        client.respond_json(status, answer)

    def _answer_probe(self, value: bytes, headers: list[tuple[bytes, bytes]], client: ClientConnection) -> None:
        now = self.queue_probe.answer_now(value, headers)
        if now is not None:
            status, body, extra = now
            client.respond(status, body, [(b"content-type", b"text/plain; charset=utf-8"), *extra])
            return
        task = asyncio.get_running_loop().create_task(self.queue_probe.respond(client, self._probe_get))
        client.handler = _TaskHandler(task)

    async def _probe_get(self, url: str, headers: list[tuple[str, str]], timeout: float) -> int:
        """One GET of `$SERVING_READINESS_PROBE` (httpGet), on the proxy's httpx client."""
        assert self.client is not None  # startup() made it
        response = await self.client.get(url, headers=headers, timeout=timeout)
        return response.status_code

    async def _serve_metrics(self, client: ClientConnection) -> None:
        """The sidecar's own metrics, rendered off the event loop (`MetricsRenderer`)."""
        body = await self._metrics.render()
        client.respond(200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])

    async def _forward_httpx(
        self,
        client: ClientConnection,
        url: httpx.URL,
        method: str,
        path: str,
        headers: list,
        body: bytes,
        exchange: Any,
        started: float,
    ) -> None:
        """HEAD requests and https explainers."""
        assert self.client is not None  # startup() made it
        if exchange is not None:
            exchange.submit_request()
        status = 0
        try:
            request = self.client.build_request(
                method, url, headers=headers, content=body if body or method not in ("GET", "HEAD") else None
            )
            try:
                response = await self.client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                status = self.fail(
                    client, exchange, 504, "timeout", f"upstream {url.host}:{url.port} timed out: {exc!r}"
                )
                return
            except httpx.HTTPError as exc:
                status = self.fail(
                    client, exchange, 502, "unreachable", f"upstream {url.host}:{url.port} unreachable: {exc!r}"
                )
                return
            try:
                status = response.status_code
                if exchange is not None:
                    exchange.response_start(status)
                client.start_response(status, [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP])
                if method != "HEAD":
                    async for chunk in response.aiter_raw():
                        if exchange is not None:
                            exchange.response_chunk(chunk)
                        client.write_body(chunk)
                        await client.drain()
                client.end_response()
            except httpx.HTTPError as exc:
                log.warning("upstream %s:%s failed mid-response: %r", url.host, url.port, exc)
                self.tap.metrics.upstream_error("broken_stream")
                client.abort()
            finally:
                await response.aclose()
        except (ClientGone, asyncio.CancelledError):
            status = status or 499
        finally:
            if exchange is not None:
                exchange.finish()
            self.tap.metrics.observe(path, status, time.perf_counter() - started)

    def fail(self, client: ClientConnection, exchange: Any, status: int, reason: str, message: str) -> int:
        """Answer an upstream failure (502/504) with a JSON reason, logged as the response event."""
        log.warning("%s", message)
        self.tap.metrics.upstream_error(reason)
        payload = json.dumps({"error": message}).encode()
        if exchange is not None:  # the client got this status: log it as the response
            exchange.response_start(status)
            exchange.response_chunk(payload)
            exchange.finish()
        client.respond(status, payload, _JSON_HEADERS)
        return status


class _TaskHandler:
    """The connection's view of a request answered by a task: a client that leaves cancels it
    (flow control is `ClientConnection.drain()` inside the task)."""

    __slots__ = ("task",)

    def __init__(self, task: asyncio.Task):
        self.task = task

    def client_paused(self) -> None:
        pass

    def client_resumed(self) -> None:
        pass

    def client_gone(self) -> None:
        self.task.cancel()


def _forward_headers(headers: list[tuple[bytes, bytes]], client: str | None) -> list[tuple[bytes, bytes]]:
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
    if client:
        ip = client.encode()
        out.append((b"x-forwarded-for", xff + b", " + ip if xff else ip))
    elif xff:
        out.append((b"x-forwarded-for", xff))
    return out


def create_app(settings: LoggerSettings, delivery: Any = None) -> ReverseProxy:
    """The sidecar's proxy. Without `delivery`, one is built from `settings.log_url` by
    `infertap.logger.delivery.build_delivery` (none when no URL is given: proxy only)."""
    if delivery is None and settings.log_url:
        from infertap.logger.delivery import build_delivery

        delivery = build_delivery(settings)
    from infertap.logger.feedback import FeedbackIngest

    return ReverseProxy(settings, delivery, FeedbackIngest.from_settings(settings))
