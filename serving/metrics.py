"""Prometheus metrics of one model server, in its own registry (several apps may live in one process)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_BASE = ("inference_service", "component", "model")


class ServerMetrics:
    """`infertap_requests_total`, `infertap_request_duration_seconds`, `infertap_batch_size`, `infertap_model_ready`.

    Labels: inference_service, component, model, endpoint (v1_predict, v2_infer) and code
    (HTTP status). Label children are cached, so the hot path does one dict lookup.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, inference_service: str = "", component: str = "predictor"):
        self._base = (inference_service, component)
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "infertap_requests",
            "Inference requests by model, endpoint and HTTP status.",
            (*_BASE, "endpoint", "code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "infertap_request_duration_seconds",
            "Inference request latency in seconds.",
            (*_BASE, "endpoint", "code"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "infertap_batch_size",
            "Rows per model call under dynamic batching.",
            _BASE,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_ready = Gauge(
            "infertap_model_ready", "1 when the model is loaded and serving.", _BASE, registry=self.registry
        )
        self._children: dict[tuple, tuple] = {}
        self.kserve = KServeHistograms(self.registry)

    def observe_request(self, model: str, endpoint: str, code: int, seconds: float) -> None:
        key = (model, endpoint, code)
        children = self._children.get(key)
        if children is None:
            labels = (*self._base, model, endpoint, str(code))
            children = self._children[key] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def batch_observer(self, model: str):
        """A callable recording the rows of each merged model call of `model`."""
        return self.batch_size.labels(*self._base, model).observe

    def set_ready(self, model: str, ready: bool) -> None:
        self.model_ready.labels(*self._base, model).set(1 if ready else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


KSERVE_LABELS = ("model_name",)  # python/kserve/kserve/metrics.py: PROM_LABELS


class KServeHistograms:
    """KServe's Python server's latency histograms, under its names, labels and (default)
    buckets, beside infertap's own, so dashboards built for KServe (grafana.com 17969,
    "KServe ModelServer Latency") keep working: `request_preprocess_seconds` (reading and
    decoding the request into tensors), `request_predict_seconds` (the model call),
    `request_postprocess_seconds` (encoding the reply), `request_explain_seconds`, each
    labelled `model_name` only. `stages(model)` gives the three observers of a model,
    cached (one dict lookup per request)."""

    def __init__(self, registry: CollectorRegistry):
        self.preprocess = Histogram(
            "request_preprocess_seconds", "pre-process request latency", KSERVE_LABELS, registry=registry
        )
        self.postprocess = Histogram(
            "request_postprocess_seconds", "post-process request latency", KSERVE_LABELS, registry=registry
        )
        self.predict = Histogram("request_predict_seconds", "predict request latency", KSERVE_LABELS, registry=registry)
        self.explain = Histogram("request_explain_seconds", "explain request latency", KSERVE_LABELS, registry=registry)
        self._stages: dict[str, tuple] = {}

    def stages(self, model: str) -> tuple:
        """(preprocess, predict, postprocess) `observe` callables of `model`."""
        stages = self._stages.get(model)
        if stages is None:
            stages = self._stages[model] = (
                self.preprocess.labels(model).observe,
                self.predict.labels(model).observe,
                self.postprocess.labels(model).observe,
            )
        return stages
