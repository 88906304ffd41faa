"""Prometheus metrics of the logger sidecar (prefix `infertap_logger_`).

All metrics live in `REGISTRY`, a registry of our own (not prometheus_client's global
one), so that several `Delivery` objects in one process share one set of metric objects
instead of failing on duplicate registration. The server exposes them with::

    from infertap.logger.metrics import REGISTRY, CONTENT_TYPE_LATEST, render
    @app.get("/metrics")
    def metrics(): return Response(render(), media_type=CONTENT_TYPE_LATEST)

Tests that want isolated numbers build `DeliveryMetrics(CollectorRegistry())` and pass it
to `Delivery(...)`.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "REGISTRY",
    "CONTENT_TYPE_LATEST",
    "DeliveryMetrics",
    "MetricsRenderer",
    "default_metrics",
    "render",
    "OUTCOMES",
]

REGISTRY = CollectorRegistry(auto_describe=True)
"""The sidecar's registry; the tap half may register its own request metrics here too."""

OUTCOMES = ("sent", "retried", "spooled", "dropped")
_LABELS = ("inference_service", "component", "sink")


class DeliveryMetrics:
    """The delivery half's metrics, bound to one registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "infertap_logger_events",
            "Events by outcome per sink: sent (acknowledged by the sink), "
            "retried (a failed attempt, to be tried again), spooled (written to the disk spool), dropped (lost).",
            [*_LABELS, "outcome"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "infertap_logger_queue_depth",
            "Events waiting in the in-memory queue of a sink.",
            _LABELS,
            registry=self.registry,
        )
        self.queue_bytes = Gauge(
            "infertap_logger_queue_bytes",
            "Bytes of events waiting in the in-memory queue of a sink.",
            _LABELS,
            registry=self.registry,
        )
        self.spool_bytes = Gauge(
            "infertap_logger_spool_bytes", "Bytes on disk in a sink's spool.", _LABELS, registry=self.registry
        )
        self.spool_events = Gauge(
            "infertap_logger_spool_events",
            "Events in a sink's spool not yet delivered.",
            _LABELS,
            registry=self.registry,
        )
        self.sink_latency = Histogram(
            "infertap_logger_sink_latency_seconds",
            "Time a sink took to acknowledge one batch.",
            _LABELS,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )

        # read at scrape time from the sink (`unacked()`): what the Kafka client holds unacknowledged
        self.unacked_events = Gauge(
            "infertap_logger_unacked_events",
            "Events handed to a sink's client (Kafka) and not yet acknowledged by the broker.",
            _LABELS,
            registry=self.registry,
        )
        self.unacked_age = Gauge(
            "infertap_logger_oldest_unacked_age_seconds",
            "Age (since its request or response) of the oldest event a sink's client holds unacknowledged; "
            "0 when none. Grows by a second per second while the broker does not answer.",
            _LABELS,
            registry=self.registry,
        )

    def for_sink(self, inference_service: str, component: str, sink: str, source: object | None = None) -> SinkMetrics:
        """Children bound to one sink's labels (resolved once: labels() is not free per event).

        `source`: the sink object; one with `unacked() -> (events, oldest_age_s)` (the Kafka
        sink) feeds the unacknowledged gauges, read at scrape time."""
        children = SinkMetrics(self, (inference_service, component, sink))
        unacked = getattr(source, "unacked", None)
        if callable(unacked):
            labels = (inference_service, component, sink)
            self.unacked_events.labels(*labels).set_function(lambda: unacked()[0])
            self.unacked_age.labels(*labels).set_function(lambda: unacked()[1])
        return children


class SinkMetrics:
    """One sink's metric children."""

    def __init__(self, parent: DeliveryMetrics, labels: tuple[str, str, str]):
        self.labels = labels
        self.outcome = {o: parent.events.labels(*labels, o) for o in OUTCOMES}
        self.queue_depth = parent.queue_depth.labels(*labels)
        self.queue_bytes = parent.queue_bytes.labels(*labels)
        self.spool_bytes = parent.spool_bytes.labels(*labels)
        self.spool_events = parent.spool_events.labels(*labels)
        self.latency = parent.sink_latency.labels(*labels)

    def count(self, outcome: str, n: int) -> None:
        if n:
            self.outcome[outcome].inc(n)


_default: DeliveryMetrics | None = None


def default_metrics() -> DeliveryMetrics:
    """The process-wide metrics on `REGISTRY` (created once)."""
    global _default
    if _default is None:
        _default = DeliveryMetrics(REGISTRY)
    return _default


def render(registry: CollectorRegistry = REGISTRY) -> bytes:
    """Prometheus text exposition of `registry` (serve with CONTENT_TYPE_LATEST)."""
    return generate_latest(registry)


_render_pool: ThreadPoolExecutor | None = None
_render_pool_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One rendering thread per process, made on first use (renderers of several proxies share it)."""
    global _render_pool
    with _render_pool_lock:
        if _render_pool is None:
            _render_pool = ThreadPoolExecutor(1, thread_name_prefix="infertap-metrics")
        return _render_pool


class MetricsRenderer:
    """Renders registries for a scrape in a worker thread, never on the event loop.

    Why: `generate_latest` is pure Python and takes time in proportion to the series it
    writes; run on the proxy's event loop, a scrape stalls every request in flight meanwhile
    (issue 19: 8.2 s for a 64 MiB rendering, a predict waited as long). Scrapes that arrive
    while a rendering runs share it, so a burst of scrapes costs one rendering, not a queue
    of them.
    """

    def __init__(self, *registries: CollectorRegistry):
        self._registries = registries
        self._pending: asyncio.Future[bytes] | None = None

    def render_now(self) -> bytes:
        """The exposition text of every registry, rendered in the calling thread."""
        return b"".join(generate_latest(r) for r in self._registries)

    async def render(self) -> bytes:
        """The exposition text, rendered in the metrics thread (shared with concurrent callers)."""
        pending = self._pending
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = self._pending = asyncio.get_running_loop().run_in_executor(_pool(), self.render_now)
            pending.add_done_callback(self._done)
        return await asyncio.shield(pending)  # a scraper that leaves must not cancel the others' rendering

    def _done(self, future: asyncio.Future[bytes]) -> None:
        if self._pending is future:
            self._pending = None
