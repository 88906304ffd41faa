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

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["REGISTRY", "CONTENT_TYPE_LATEST", "DeliveryMetrics", "default_metrics", "render", "OUTCOMES"]

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

    def for_sink(self, inference_service: str, component: str, sink: str) -> SinkMetrics:
        """Children bound to one sink's labels (resolved once: labels() is not free per event)."""
        return SinkMetrics(self, (inference_service, component, sink))


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
