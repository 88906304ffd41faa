"""Prometheus metrics of a detector worker (prefix `infertap_detector_`).

Labels: `inference_service`, `detector`, and `feature` on per-feature gauges, `reason` on
dead letters, `partition` on lag. One registry per worker so the HTTP ingress and tests can
serve or read it alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from infertap.detectors.result import DetectionResult

if TYPE_CHECKING:
    from infertap.detectors.estimate_metrics import EstimateMetrics
    from infertap.detectors.quality.metrics import QualityMetrics

SCORE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 1000)
SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class DetectorMetrics:
    """Every metric of one worker, with its `inference_service` and `detector` labels bound."""

    def __init__(self, inference_service: str, detector: str, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r, base = self.registry, ("inference_service", "detector")
        self._labels = {"inference_service": inference_service, "detector": detector}
        self._estimates: EstimateMetrics | None = None  # made at the first performance window
        self._quality: QualityMetrics | None = None  # made at the first data-quality window
        self.events = Counter(
            "infertap_detector_events_consumed_total",
            "Records read, by outcome (used; ignored: other event type; rejected: dead-lettered; excluded: in a "
            "window but left out of its frame, as a response that failed or rows all missing).",
            base + ("outcome",),
            registry=r,
        )
        self.windows = Counter(
            "infertap_detector_windows_evaluated_total", "Windows the detector judged.", base, registry=r
        )
        self.rows = Counter("infertap_detector_rows_evaluated_total", "Rows the detector judged.", base, registry=r)
        self.dead = Counter(
            "infertap_detector_dead_lettered_total",
            "Records sent to the dead-letter topic, by reason.",
            base + ("reason",),
            registry=r,
        )
        self.excluded = Counter(
            "infertap_detector_excluded_total",
            "Left out of windows before judging, by reason: failed_response (events whose response status was "
            "not 2xx), missing_value (rows holding a null, NaN or infinity, dropped).",
            base + ("reason",),
            registry=r,
        )
        self.published = Counter(
            "infertap_detector_detections_published_total",
            "Detection events published, by sink.",
            base + ("sink", "outcome"),
            registry=r,
        )
        self.p_value = Gauge(
            "infertap_detector_drift_p_value",
            "Latest drift p-value per feature ('_all': the window's).",
            base + ("feature",),
            registry=r,
        )
        self.distance = Gauge(
            "infertap_detector_drift_distance",
            "Latest drift distance per feature ('_all': the window's).",
            base + ("feature",),
            registry=r,
        )
        self.drift = Gauge(
            "infertap_detector_drift",
            "1 when the latest window drifted, per feature ('_all': the window).",
            base + ("feature",),
            registry=r,
        )
        self.feature_value = Gauge(
            "infertap_detector_feature_value",
            "The latest window's own value of a feature, where the detector gives one (text descriptors: the "
            "window's mean; LLM response signals: the share or mean, e.g. refusal_share).",
            base + ("feature",),
            registry=r,
        )
        self.outliers = Counter("infertap_detector_outliers_total", "Rows flagged as outliers.", base, registry=r)
        self.adversarial = Counter(
            "infertap_detector_adversarial_total", "Rows flagged as adversarial.", base, registry=r
        )
        self.outlier_score = Histogram(
            "infertap_detector_outlier_score", "Outlier instance scores.", base, buckets=SCORE_BUCKETS, registry=r
        )
        self.adversarial_score = Histogram(
            "infertap_detector_adversarial_score",
            "Adversarial instance scores.",
            base,
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.predict_seconds = Histogram(
            "infertap_detector_predict_seconds", "Detector time per window.", base, buckets=SECONDS_BUCKETS, registry=r
        )
        self.lag = Gauge(
            "infertap_detector_consumer_lag",
            "Records behind the partition's high watermark.",
            base + ("partition",),
            registry=r,
        )

    def count_events(self, outcome: str, n: int = 1) -> None:
        if n:
            self.events.labels(**self._labels, outcome=outcome).inc(n)

    def count_excluded(self, reason: str, n: int) -> None:
        if n:
            self.excluded.labels(**self._labels, reason=reason).inc(n)

    def count_dead(self, reason: str) -> None:
        self.dead.labels(**self._labels, reason=reason).inc()

    def count_published(self, sink: str, outcome: str) -> None:
        self.published.labels(**self._labels, sink=sink, outcome=outcome).inc()

    def set_lag(self, partition: int, lag: int) -> None:
        self.lag.labels(**self._labels, partition=str(partition)).set(lag)

    def forget_lag(self, partition: int) -> None:
        """A partition moved to another worker: its lag is theirs to report."""
        try:
            self.lag.remove(self._labels["inference_service"], self._labels["detector"], str(partition))
        except KeyError:
            pass

    def observe(self, result: DetectionResult, seconds: float, window: bool = True) -> None:
        """Record one window's result (`window=False`: a further result on a window already counted)."""
        labels = self._labels
        if window:
            self.windows.labels(**labels).inc()
            self.rows.labels(**labels).inc(result.n)
            self.predict_seconds.labels(**labels).observe(seconds)
        if result.kind == "drift":
            self._drift(result)
            return
        if result.kind == "performance":
            self._performance(result)
            return
        if result.kind == "dataquality":
            self._data_quality(result)
            return
        flags = result.is_outlier if result.kind == "outlier" else result.is_adversarial
        counter = self.outliers if result.kind == "outlier" else self.adversarial
        histogram = self.outlier_score if result.kind == "outlier" else self.adversarial_score
        if flags:
            counter.labels(**labels).inc(sum(bool(f) for f in flags))
        child = histogram.labels(**labels)
        for score in result.instance_scores or ():
            child.observe(score)

    def _performance(self, result: DetectionResult) -> None:
        """CBPE / DLE windows: the performance gauge (kind estimated), bands, thresholds, alerts."""
        if self._estimates is None:
            from infertap.detectors.estimate_metrics import EstimateMetrics

            self._estimates = EstimateMetrics(self.registry, **self._labels)
        self._estimates.observe(result)

    def _data_quality(self, result: DetectionResult) -> None:
        """DataQuality windows: shares and violations per feature and check (infertap.detectors.quality.metrics)."""
        if self._quality is None:
            from infertap.detectors.quality.metrics import QualityMetrics

            self._quality = QualityMetrics(self.registry, **self._labels)
        self._quality.observe(result)

    def _drift(self, result: DetectionResult) -> None:
        labels = self._labels
        if result.is_drift is not None:
            self.drift.labels(**labels, feature="_all").set(int(result.is_drift))
        if result.p_val is not None:
            self.p_value.labels(**labels, feature="_all").set(result.p_val)
        if result.distance is not None:
            self.distance.labels(**labels, feature="_all").set(result.distance)
        for feature in result.features:
            if feature.p_val is not None:
                self.p_value.labels(**labels, feature=feature.name).set(feature.p_val)
            if feature.distance is not None:
                self.distance.labels(**labels, feature=feature.name).set(feature.distance)
            if feature.value is not None:
                self.feature_value.labels(**labels, feature=feature.name).set(feature.value)
            if feature.is_drift is not None:
                self.drift.labels(**labels, feature=feature.name).set(int(feature.is_drift))
