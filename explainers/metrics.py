"""Prometheus metrics of an explainer server or stream worker, in their own registry.

Prefix `infertap_explainer_`; labels `inference_service`, `model`, `explainer` (backend):

- `infertap_explainer_explain_seconds` (histogram): explain latency per backend;
- `infertap_explainer_requests_total{code}`: explain requests by HTTP status;
- `infertap_explainer_errors_total{reason}`: failed explanations (bad_input, deadline, predictor, internal);
- `infertap_explainer_instances_total`: instances explained;
- `infertap_explainer_mean_abs_attribution{feature}` (gauge): running mean of |attribution| per feature,
  the series dashboards and detectors watch for attribution drift;
- `infertap_explainer_predictor_requests_total` / `_predictor_rows_total` / `_predictor_seconds`:
  the black-box explainers' own predictor traffic.
"""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BASE = ("inference_service", "model", "explainer")


class ExplainerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, inference_service: str, model: str, explainer: str):
        self._base = (inference_service, model, explainer)
        r = self.registry = CollectorRegistry()
        self.latency = Histogram(
            "infertap_explainer_explain_seconds", "Explain latency by backend.", _BASE, buckets=BUCKETS, registry=r
        ).labels(*self._base)
        self.requests = Counter(
            "infertap_explainer_requests", "Explain requests by HTTP status.", (*_BASE, "code"), registry=r
        )
        self.errors = Counter(
            "infertap_explainer_errors", "Failed explanations by reason.", (*_BASE, "reason"), registry=r
        )
        self.instances = Counter("infertap_explainer_instances", "Instances explained.", _BASE, registry=r).labels(
            *self._base
        )
        self.attribution = Gauge(
            "infertap_explainer_mean_abs_attribution",
            "Running mean of |attribution| per feature over the instances explained.",
            (*_BASE, "feature"),
            registry=r,
        )
        self.predictor_requests = Counter(
            "infertap_explainer_predictor_requests", "Requests the explainer sent to the predictor.", _BASE, registry=r
        ).labels(*self._base)
        self.predictor_rows = Counter(
            "infertap_explainer_predictor_rows", "Rows the explainer sent to the predictor.", _BASE, registry=r
        ).labels(*self._base)
        self.predictor_seconds = Histogram(
            "infertap_explainer_predictor_seconds", "Predictor request latency.", _BASE, buckets=BUCKETS, registry=r
        ).labels(*self._base)
        # KServe's Python server's name for it (python/kserve/kserve/metrics.py), default buckets, so
        # KServe's dashboards keep working
        self.kserve_explain = Histogram(
            "request_explain_seconds", "explain request latency", ("model_name",), registry=r
        ).labels(model)
        self._sums: np.ndarray | None = None
        self._count = 0
        self._names: list[str] = []
        self._lock = threading.Lock()

    def on_predictor_request(self, rows: int, seconds: float) -> None:
        self.predictor_requests.inc()
        self.predictor_rows.inc(rows)
        self.predictor_seconds.observe(seconds)

    def observe_request(self, code: int) -> None:
        self.requests.labels(*self._base, str(code)).inc()

    def observe_error(self, reason: str) -> None:
        self.errors.labels(*self._base, reason).inc()

    def observe_attributions(self, names: list[str], values: list[list[float] | None]) -> None:
        """Fold explained instances into the running mean |attribution| per feature (None: not attributed)."""
        rows = [v for v in values if v is not None]
        if not rows:
            return
        block = np.abs(np.asarray(rows, dtype=np.float64))
        with self._lock:
            if self._sums is None or self._sums.shape[0] != block.shape[1]:
                self._sums, self._count, self._names = np.zeros(block.shape[1]), 0, list(names)
            self._sums += block.sum(0)
            self._count += len(block)
            means = self._sums / self._count
            for name, mean in zip(self._names, means, strict=True):
                self.attribution.labels(*self._base, name).set(float(mean))

    def mean_abs_attribution(self) -> dict[str, float]:
        with self._lock:
            if self._sums is None or not self._count:
                return {}
            return dict(zip(self._names, (self._sums / self._count).tolist(), strict=True))

    def render(self) -> bytes:
        return generate_latest(self.registry)
