"""Prometheus series of a performance detector's windows (CBPE, DLE: estimated without labels).

The figures go to the performance gauge every performance worker shares
(`infertap_performance_metric{inference_service, detector, kind, metric, class}`, see
`infertap.detectors.performance.gauges`), with `kind` the result's `performance_kind`
(`estimated` here, `realised` from the performance worker), so one query draws both lines.
Beside it, for the figures a window is judged on (`headline`), what only an estimate has:

    infertap_performance_band{inference_service, detector, metric, class, bound}       lower / upper
    infertap_performance_threshold{inference_service, detector, metric, class, bound}  lower / upper
    infertap_performance_alert{inference_service, detector, metric, class}             1: outside
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from infertap.detectors.performance.gauges import PerformanceGauge
from infertap.detectors.result import DetectionResult

LABELS = ("inference_service", "detector", "metric", "class")


class EstimateMetrics:
    """One worker's performance series; `observe` each judged window."""

    def __init__(self, registry: CollectorRegistry, inference_service: str, detector: str):
        self.gauge = PerformanceGauge(registry, inference_service, detector)
        self._base = (inference_service, detector)
        self.band = Gauge(
            "infertap_performance_band",
            "Confidence band of the latest estimate (value -/+ band_std x sampling error), bound lower or upper.",
            LABELS + ("bound",),
            registry=registry,
        )
        self.threshold = Gauge(
            "infertap_performance_threshold",
            "Alert thresholds of a performance figure (the reference chunks' mean -/+ threshold_std x std).",
            LABELS + ("bound",),
            registry=registry,
        )
        self.alert = Gauge(
            "infertap_performance_alert",
            "1 when the latest window's estimate lies outside its thresholds.",
            LABELS,
            registry=registry,
        )

    def observe(self, result: DetectionResult) -> None:
        """The window's figures onto the gauges (a figure without a value this window is left out)."""
        kind = result.performance_kind or "estimated"
        self.gauge.set(kind, {(m.name, m.klass): m.value for m in result.metrics})
        for m in result.metrics:
            if not m.headline or m.value is None:
                continue
            labels = (*self._base, m.name, m.klass)
            self.alert.labels(*labels).set(int(m.alert))
            for bound, band, threshold in (
                ("lower", m.lower, m.lower_threshold),
                ("upper", m.upper, m.upper_threshold),
            ):
                if band is not None:
                    self.band.labels(*labels, bound).set(band)
                if threshold is not None:
                    self.threshold.labels(*labels, bound).set(threshold)
