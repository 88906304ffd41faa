"""The tap shared by the reverse proxy and the ASGI middleware: which exchanges are logged,
capturing their bodies, and handing the two CloudEvents to the delivery.

Policy (KServe's agent semantics, with the differences DESIGN asks for):

- `mode` all / request / response. In `request` mode the response is not buffered at all
  (KServe buffers it anyway, kserve#6179).
- A response event for *every* status, with `statuscode` (KServe logs only 200s, #2722).
- Not logged: requests carrying `infertap-skip-logging: true` (the explainer's own calls;
  the header is still forwarded), and health probes: any request whose User-Agent is
  `kube-probe/...` (what KServe skips), plus GET/HEAD requests with no body to a health
  path (`/`, `/healthz`, `/readyz`, `/livez`, `/v2/health/live|ready`,
  `/v2/models/{m}[/versions/{v}]/ready`, `/v1/models/{m}`, `/metrics`), so local
  supervisors and Prometheus probing through the sidecar do not flood the topic.
- Logging never blocks or fails a request: `Delivery.submit` only, guarded.
- A streamed response is logged up to `max_event_body_bytes`; beyond that the event carries
  the prefix and the extension `bodytruncated: "true"`.

Proxy metrics (`infertap_proxy_*`, `infertap_tap_*`) live here too, so both taps count the same
way; they are registered on `infertap.logger.metrics.REGISTRY` beside the delivery's. Their labels
are bounded whatever clients send: a model name gets its own label only once the model server
answered for it (not 404), at most `ModelNames.CAP` names; the rest count as `_unknown`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import zlib
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from infertap.logger.events import EventBuilder, now
from infertap.logger.metrics import REGISTRY
from infertap.sidecar.llm_otel import LLMSpans
from infertap.sidecar.llm_tap import LLMTap
from infertap.sidecar.openai_capture import OPERATIONS

log = logging.getLogger("infertap.logger.tap")

SKIP_HEADER = b"infertap-skip-logging"
_HEALTH_PATH = re.compile(
    r"^/(?:|healthz|readyz|livez|metrics|v2/health/(?:live|ready)"
    r"|v2/models/[^/]+(?:/versions/[^/]+)?/ready|v1/models/[^/:]+)$"
)
_MODEL_ROUTE = re.compile(r"^/v([12])/models/([^/:]+)(?:/versions/[^/]+)?(?::(\w+)|/(\w+))?")


class EventSink(Protocol):
    """What the tap needs of `infertap.logger.delivery.Delivery`."""

    def submit(self, event: Any) -> None: ...


class _RandomBytes:
    """os.urandom read 4 KiB at a time: one getrandom syscall per 256 event ids instead of
    one per id (a syscall costs several microseconds on a virtual machine; this runs on every
    logged request). Same source, same unpredictability; a forked child starts afresh."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._pool, self._pos = b"", 0

    def take16(self) -> bytes:
        with self._lock:
            pos = self._pos
            if pos + 16 > len(self._pool):
                self._pool, pos = os.urandom(self.SIZE), 0
            self._pos = pos + 16
            return self._pool[pos : pos + 16]


_random = _RandomBytes()


def new_event_id() -> str:
    """A random UUID4 string, as `str(uuid.uuid4())` gives, without building a UUID object
    (a quarter of the cost; it runs on every logged request)."""
    b = bytearray(_random.take16())
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# --- metrics -------------------------------------------------------------------------------

_LABELS = ("inference_service", "component", "model", "endpoint")
REQUESTS = Counter(
    "infertap_proxy_requests_total",
    "Requests through the logger sidecar, by status code.",
    _LABELS + ("code",),
    registry=REGISTRY,
)
LATENCY = Histogram(
    "infertap_proxy_request_duration_seconds",
    "Time from request arrival to the end of the response body, through the sidecar.",
    _LABELS,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    "infertap_proxy_upstream_errors_total",
    "Upstream failures answered by the sidecar (502/504).",
    ("inference_service", "component", "reason"),
    registry=REGISTRY,
)
EVENTS_SUBMITTED = Counter(
    "infertap_tap_events_submitted_total",
    "CloudEvents handed to the delivery, by type.",
    ("inference_service", "component", "type"),
    registry=REGISTRY,
)
EVENTS_SKIPPED = Counter(
    "infertap_tap_requests_not_logged_total",
    "Requests not logged, by reason.",
    ("inference_service", "component", "reason"),
    registry=REGISTRY,
)


UNKNOWN_MODEL = "_unknown"
"""The `model` label of requests for names the model server does not serve (as the model server's own metrics)."""

# Endpoint label values: the verb of a model route is client-chosen text, so only these get a label of their own
_VERBS = {
    "1": frozenset({"predict", "explain", "metadata"}),
    "2": frozenset({"infer", "ready", "generate", "generate_stream", "metadata"}),
}


def route_of(path: str) -> tuple[str, str]:
    """(model, endpoint) labels for a path: `/v2/models/iris/infer` -> ("iris", "v2_infer").

    The endpoint is bounded: an unknown verb is `v1_other`/`v2_other`, anything but a model
    route ("", "openai") or ("", "other"). The model name is the client's: `ProxyMetrics`
    bounds it (`ModelNames`) before it becomes a label.
    """
    m = _MODEL_ROUTE.match(path)
    if m:
        version, verb = m.group(1), m.group(3) or m.group(4) or "metadata"
        return m.group(2), f"v{version}_{verb if verb in _VERBS[version] else 'other'}"
    if path.startswith("/openai/"):
        return "", "openai"
    return "", "other"


class ModelNames:
    """Which model names get a `model` label of their own: those the model server answered for.

    A name is learned when the upstream answered a request for it with a status below 500
    other than 404 (404 is how a model server says "no such model"; 413 and 499 are the
    sidecar's own; 5xx may be the sidecar's 502/504), up to `cap` names. Every other name is
    `UNKNOWN_MODEL`, so clients choosing names cannot grow the metrics without bound
    (issue 19: 20,000 names grew a scrape to 64 MiB).
    """

    CAP = 32
    _NOT_SERVED = frozenset({404, 413, 499})

    def __init__(self, cap: int = CAP):
        self.cap = cap
        self._known: set[str] = set()

    def label(self, model: str, status: int) -> tuple[str, bool]:
        """(label, learned): the label for `model` after an answer of `status`, and whether
        this answer taught the name."""
        if not model or model in self._known:
            return model, False
        if 100 <= status < 500 and status not in self._NOT_SERVED and len(self._known) < self.cap:
            self._known.add(model)
            return model, True
        return UNKNOWN_MODEL, False


class ProxyMetrics:
    """Label children cached per (path, code): one dict lookup per request instead of the
    route regex and two `.labels()` calls (each costs more than the increment itself).

    Every label is bounded although paths come from clients: model names by `ModelNames`,
    endpoints by `route_of`, the cache by `_MAX_CACHED`.
    """

    _MAX_CACHED = 4096  # distinct (path, code) pairs kept; past that, resolved per request

    def __init__(self, inference_service: str, component: str, model_cap: int = ModelNames.CAP):
        self.isvc, self.component = inference_service, component
        self.models = ModelNames(model_cap)
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._errors: dict[str, Any] = {}

    def observe(self, path: str, status: int, seconds: float) -> None:
        children = self._children.get((path, status))
        if children is None:
            children = self._resolve(path, status)
        children[0].observe(seconds)
        children[1].inc()

    def _resolve(self, path: str, status: int) -> tuple[Any, Any]:
        name, endpoint = route_of(path)
        model, learned = self.models.label(name, status)
        if learned:  # cached pairs of this name (other codes) were counted as unknown: resolve them again
            self._children.clear()
        children = (
            LATENCY.labels(self.isvc, self.component, model, endpoint),
            REQUESTS.labels(self.isvc, self.component, model, endpoint, str(status)),
        )
        if len(self._children) < self._MAX_CACHED:  # paths come from clients: bound the cache
            self._children[(path, status)] = children
        return children

    def upstream_error(self, reason: str) -> None:
        child = self._errors.get(reason)
        if child is None:
            child = self._errors[reason] = UPSTREAM_ERRORS.labels(self.isvc, self.component, reason)
        child.inc()


# --- the tap -------------------------------------------------------------------------------


class Exchange:
    """One logged request/response pair: the response body is teed here as it streams."""

    __slots__ = (
        "tap",
        "id",
        "content_type",
        "metadata",
        "status",
        "started",
        "chunks",
        "size",
        "truncated",
        "log_response",
        "done",
        "request_body",
        "capture",
        "sampled",
        "requested",
    )

    def __init__(
        self,
        tap: Tap,
        event_id: str,
        content_type: str | None,
        metadata: str,
        log_response: bool,
        request_body: bytes | None,
        capture: Any = None,
        sampled: bool = True,
    ):
        self.tap, self.id, self.content_type, self.metadata = tap, event_id, content_type, metadata
        self.capture = capture  # an `openai_capture.Capture` on the OpenAI paths, else None
        self.sampled = sampled  # False: sampled out, logged only if it fails (status >= 400)
        self.log_response = log_response
        self.request_body = request_body  # None: the request is not logged (mode), or already was
        self.status = 0
        self.started: Any = None  # datetime of the response (its end), for the event's time
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.done = False
        self.requested: Any = None  # the request event's time, when its building is deferred

    def submit_request(self) -> None:
        """Submit the request event (once). The proxy has it called at the response's head
        (`Tap.submit_request_later`), so that building the event overlaps the model server's
        work instead of delaying its read of the request; `finish` calls it first."""
        if not self.sampled:  # sampled out: `finish` logs it only if the exchange failed
            return
        body, self.request_body = self.request_body, None
        if body is not None:
            tap = self.tap
            if self.capture is None and not tap.redact_all:
                event = tap.builder.request(self.id, body, self.content_type, self.metadata, self.requested)
            else:  # an OpenAI call, or redaction on for all traffic (infertap.sidecar.llm_tap)
                event = tap.llm.request_event(self, body)
            tap.submit(event, "request")

    def response_start(self, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        if self.capture is not None and headers is not None:
            self.capture.response_head(next((v for k, v in headers if k.lower() == b"content-type"), None))

    def interrupted(self, reason: str) -> None:
        """The response stopped early (`client_disconnected`, `upstream_error`): an OpenAI
        stream's partial completion is logged with that finish reason."""
        if self.capture is not None:
            self.capture.interrupt(reason)

    def response_end(self) -> None:
        """The response's `time`: when its body ended, as KServe's agent stamps it (`handler.go`)."""
        if self.started is None:
            self.started = now()

    def response_chunk(self, chunk: bytes) -> None:
        """Keep a copy of a body chunk for the event, up to the cap."""
        if self.capture is not None and chunk:
            self.capture.feed(chunk)  # an OpenAI answer: parsed as it streams (bounded, never raises)
        if not self.log_response or not chunk:
            return
        room = self.tap.max_body - self.size
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[:room]
            if not chunk:
                return
        self.chunks.append(bytes(chunk))
        self.size += len(chunk)

    def finish(self) -> None:
        """Submit the response event (once); a no-op in `request` mode or before any status."""
        if self.done:
            return
        self.done = True
        if self.started is None:
            self.started = now()
        if not self.sampled:
            if self.status < 400:  # sampled out and not failed: neither event is logged
                self.tap._skipped("sampled_out")
                if self.capture is not None:  # the GenAI metrics count every call
                    self.log_response = False
                    self.tap.llm.response_event(self, b"")
                return
            self.sampled = True  # failures are always logged, request and response
        self.submit_request()  # a no-op when already submitted
        if self.capture is not None or self.tap.redact_all:
            body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            event = self.tap.llm.response_event(self, body)
            if event is not None:
                self.tap.submit(event, "response")
            return
        if not self.log_response or not self.status:
            return
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.tap.submit(
            self.tap.builder.response(
                self.id, body, self.content_type, self.metadata, self.status, self.started, self.truncated
            ),
            "response",
        )


class Tap:
    """Decides what to log and builds the events; shared by proxy and middleware."""

    def __init__(
        self,
        builder: EventBuilder,
        delivery: EventSink | None,
        mode: str = "all",
        max_body: int = 16 * 1024 * 1024,
        inference_service: str = "",
        component: str = "",
        request_id_header: str = "",
        sample_rate: float = 1.0,
        redact: str = "openai",
        redact_patterns: Any = (),
        keep_raw_sse: bool = False,
        llm_prices: Any = None,
        otel: LLMSpans | None = None,
    ):
        """`otel`: the span exporter of the OpenAI calls (`llm_otel.LLMSpans`); with it and no
        `delivery`, the OpenAI calls are traced and nothing is logged."""
        self.builder, self.delivery = builder, delivery
        self.log_requests = mode in ("all", "request")
        self.log_responses = mode in ("all", "response")
        self.max_body = max_body
        self.isvc, self.component = inference_service, component
        self.metrics = ProxyMetrics(inference_service, component)
        self.request_id_header = request_id_header.strip().lower().encode("latin-1") or None
        # sampling (`log_sample_rate`): kept when crc32(id) < threshold, so both events of an id go together
        self.sample_threshold = None if sample_rate >= 1.0 else int(max(sample_rate, 0.0) * 2**32)
        self.redact_all = redact == "all"
        self.llm = LLMTap(
            builder,
            max_body,
            inference_service,
            component,
            redact,
            redact_patterns,
            keep_raw_sse,
            llm_prices,
            ModelNames(),  # the GenAI metrics' own bounded model labels
            otel,
        )
        self._submitted = {t: EVENTS_SUBMITTED.labels(inference_service, component, t) for t in ("request", "response")}
        self._finished: list[tuple[Exchange | None, str, int, float]] = []
        self._requests: list[Exchange] = []  # request events held back (`submit_request_later`)
        self._requests_due = False  # `submit_requests` is queued on the loop
        self._flush_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # Response events of exchanges that ended wait for the proxy's next idle moment: at most
    # this long, or until the next request has been forwarded (see `finish_later`).
    FLUSH_AFTER_S = 0.005

    def finish_later(self, exchange: Exchange | None, path: str, status: int, seconds: float) -> None:
        """Submit `exchange`'s response event (when logged) and count the request in the proxy
        metrics, when the proxy is next idle.

        Why: a client that sends its next request as soon as the response arrived (a
        concurrency-1 caller) would otherwise find the sidecar still building the previous
        event. The proxy calls `flush()` right after forwarding a request, while the model
        server works on it; a timer catches the last exchanges when traffic stops.
        """
        if exchange is not None:
            exchange.response_end()  # its time is now, not when the deferred event is built
        self._finished.append((exchange, path, status, seconds))
        if self._flush_timer is None:  # left armed by `flush`: one timer per 5 ms, not one per request
            self._flush_timer = self._running_loop().call_later(self.FLUSH_AFTER_S, self._on_timer)

    def submit_request_later(self, exchange: Exchange) -> None:
        """Submit `exchange`'s request event once a response's head has been passed on
        (`submit_requests_soon`), or when the flush timer fires (at most `FLUSH_AFTER_S`),
        whichever comes first.

        Why: the proxy has just written the request upstream; building and redacting the
        event then held the CPU while the model server (on the same few cores) read it. At
        the head the server is computing the answer. Order and loss are unchanged:
        `Exchange.finish` submits the request event first when it has not been yet (a
        failure, a client gone), and the timer logs the request of an upstream that never
        answers. The event's time is now, when the request has been forwarded, as before."""
        exchange.requested = now()
        self._requests.append(exchange)
        if self._flush_timer is None:
            self._flush_timer = self._running_loop().call_later(self.FLUSH_AFTER_S, self._on_timer)

    def submit_requests_soon(self) -> None:
        """`submit_requests` once the callback running now (a response head's read, which
        may hold the whole answer) has returned: not between a head and its body."""
        if self._requests and not self._requests_due:
            self._requests_due = True
            self._running_loop().call_soon(self.submit_requests)

    def submit_requests(self) -> None:
        """Submit the request events `submit_request_later` held back (each once)."""
        self._requests_due = False
        if self._requests:
            requests, self._requests = self._requests, []
            for exchange in requests:
                exchange.submit_request()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():  # asking asyncio each time costs a getpid syscall
            loop = self._loop = asyncio.get_running_loop()
        return loop

    @property
    def unflushed(self) -> bool:
        return bool(self._finished)

    def _on_timer(self) -> None:
        self._flush_timer = None
        self.submit_requests()
        self.flush()

    def flush(self) -> None:
        """Submit what `finish_later` held back."""
        finished, self._finished = self._finished, []
        observe = self.metrics.observe
        for exchange, path, status, seconds in finished:
            if exchange is not None:
                exchange.finish()
            observe(path, status, seconds)

    @classmethod
    def from_settings(cls, settings, delivery: EventSink | None) -> Tap:
        return cls(
            EventBuilder.from_settings(settings),
            delivery,
            settings.log_mode,
            settings.max_event_body_bytes,
            settings.inference_service,
            settings.component,
            getattr(settings, "request_id_header", ""),
            getattr(settings, "log_sample_rate", 1.0),
            getattr(settings, "redact", "openai"),
            getattr(settings, "redact_patterns", ()),
            getattr(settings, "keep_raw_sse", False),
            getattr(settings, "llm_prices", None),
            LLMSpans.from_settings(settings),  # None unless otel_endpoint is set
        )

    @property
    def enabled(self) -> bool:
        return self.delivery is not None or self.llm.otel is not None

    def begin(self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> Exchange | None:
        """Start logging one exchange, or None if it is not logged. The request event is
        submitted by `Exchange.submit_request()`."""
        logged = self.delivery is not None
        if not logged and (self.llm.otel is None or path not in OPERATIONS):
            return None  # nothing to log, and no span to export
        event_id = content_type = user_agent = request_id = None
        rid = self.request_id_header
        for name, value in headers:
            if name == b"ce-id":
                event_id = value.decode("latin-1")
            elif name == rid:
                request_id = value
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == SKIP_HEADER:
                if value.strip().lower() in (b"true", b"1"):
                    self._skipped("skip_header")
                    return None
            elif name == b"user-agent":
                user_agent = value
        if user_agent is not None and user_agent.startswith(b"kube-probe/"):
            self._skipped("probe")
            return None
        if not body and method in ("GET", "HEAD") and _HEALTH_PATH.match(path):
            self._skipped("probe")
            return None
        if not event_id:
            event_id = request_id.decode("latin-1") if request_id else new_event_id()
        metadata = self.builder.metadata(headers)
        operation = OPERATIONS.get(path)  # one dict lookup: the OpenAI endpoints get a Capture
        capture = None if operation is None else self.llm.capture(operation, body, headers)
        sampled = not logged or self.sample_threshold is None or zlib.crc32(event_id.encode()) < self.sample_threshold
        return Exchange(
            self,
            event_id,
            content_type,
            metadata,
            logged and self.log_responses,
            body if logged and self.log_requests else None,
            capture,
            sampled,
        )

    def submit(self, event: Any, kind: str) -> None:
        """Hand an event to the delivery; a broken delivery is logged, never raised."""
        try:
            delivery = self.delivery
            assert delivery is not None  # an event is built only when there is a delivery (`begin`)
            delivery.submit(event)
            self._submitted[kind].inc()
        except Exception:  # the delivery promises not to raise; be sure anyway
            log.exception("delivery.submit raised; event %s dropped", event.get_id())

    def _skipped(self, reason: str) -> None:
        EVENTS_SKIPPED.labels(self.isvc, self.component, reason).inc()
