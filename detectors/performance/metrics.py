"""Prometheus metrics of a performance worker (prefix `infertap_performance_`).

The figures themselves are `infertap_performance_metric{kind="realised"}` (`gauges.py`, shared
with the estimators). Beside them, what the join did: predictions and labels by outcome, what
fell out of the bounded state, what waits, the windows, the share of labelled predictions and
the label delay of the latest window. Labels are bounded: `outcome`, `kind`, `reason` and
`quantile` take fixed sets of values. One registry per worker.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from infertap.detectors.performance.gauges import PerformanceGauge
from infertap.detectors.performance.scores import DELAY_QUANTILES


class PerformanceMetrics:
    """Every metric of one performance worker, its `inference_service` and `detector` labels bound."""

    def __init__(
        self,
        inference_service: str,
        detector: str,
        classes: list[str] | None = None,
        registry: CollectorRegistry | None = None,
    ):
        self.registry = r = registry or CollectorRegistry()
        base = ("inference_service", "detector")
        self._labels = (inference_service, detector)
        self._children: dict[tuple[str, str], Any] = {}
        self.figures = PerformanceGauge(r, inference_service, detector, classes)
        self.predictions = Counter(
            "infertap_performance_predictions",
            "Logged responses read, by outcome: read (a new prediction), duplicate (its id was seen), rejected "
            "(dead-lettered), ignored (a request event, a failed response, or no id to join on).",
            base + ("outcome",),
            registry=r,
        )
        self.labels = Counter(
            "infertap_performance_labels",
            "Feedback records read, by outcome: joined (to its prediction, also when it came first), early (came "
            "before its prediction: waits for it), duplicate (its prediction already has a label: the first counts), "
            "rejected (dead-lettered).",
            base + ("outcome",),
            registry=r,
        )
        self.evicted = Counter(
            "infertap_performance_evicted",
            "Fell out of the bounded state unjoined: kind prediction (never labelled) or label (its id never seen), "
            "reason age (max_age_s) or count (max_pending, max_pending_labels).",
            base + ("kind", "reason"),
            registry=r,
        )
        self.pending = Gauge(
            "infertap_performance_pending",
            "Held in the state: kind prediction (awaiting a label) or label (awaiting its prediction).",
            base + ("kind",),
            registry=r,
        )
        self.windows = Counter(
            "infertap_performance_windows", "Windows of labelled predictions published.", base, registry=r
        )
        self.rows = Counter(
            "infertap_performance_labelled_rows", "Labelled predictions (rows) in published windows.", base, registry=r
        )
        self.share = Gauge(
            "infertap_performance_labelled_share",
            "Latest window: share of the predictions made in its span (by minute) that have a label.",
            base,
            registry=r,
        )
        self.delay = Gauge(
            "infertap_performance_label_delay_seconds",
            "Latest window: label delay quantiles (label time minus prediction time, event times).",
            base + ("quantile",),
            registry=r,
        )
        self.dead = Counter(
            "infertap_performance_dead_lettered",
            "Records sent to the dead-letter topic, by reason.",
            base + ("reason",),
            registry=r,
        )

    def prediction(self, outcome: str, n: int = 1) -> None:
        child = self._children.get(("p", outcome))
        if child is None:  # resolved once per outcome: labels() costs more than the join of a record
            child = self._children[("p", outcome)] = self.predictions.labels(*self._labels, outcome)
        child.inc(n)

    def label(self, outcome: str, n: int = 1) -> None:
        child = self._children.get(("l", outcome))
        if child is None:
            child = self._children[("l", outcome)] = self.labels.labels(*self._labels, outcome)
        child.inc(n)

    def evict(self, kind: str, reasons: dict[str, int]) -> None:
        for reason, n in reasons.items():
            if n:
                self.evicted.labels(*self._labels, kind, reason).inc(n)

    def held(self, predictions: int, labels: int) -> None:
        self.pending.labels(*self._labels, "prediction").set(predictions)
        self.pending.labels(*self._labels, "label").set(labels)

    def dead_letter(self, reason: str) -> None:
        self.dead.labels(*self._labels, reason).inc()

    def window(self, body: dict) -> None:
        """One published window: its figures, share and delays."""
        self.windows.labels(*self._labels).inc()
        self.rows.labels(*self._labels).inc(body["n"])
        if body["task"] == "classification":
            self.figures.set_classification("realised", body)
        else:
            self.figures.set_regression("realised", body)
        if body.get("labelled_share") is not None:
            self.share.labels(*self._labels).set(body["labelled_share"])
        delays = body.get("label_delay_seconds") or {}
        for level in DELAY_QUANTILES:
            value = delays.get(f"p{round(level * 100)}")
            if value is not None:
                self.delay.labels(*self._labels, f"{level:g}").set(value)
