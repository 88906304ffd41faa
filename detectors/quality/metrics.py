"""Prometheus series of a DataQuality worker's windows.

    infertap_data_quality_share{inference_service, detector, feature, check}           latest window
    infertap_data_quality_violation{inference_service, detector, feature, check}       1: violated
    infertap_data_quality_violations_total{inference_service, detector, feature, check}  windows violated
    infertap_data_quality_failed_rows_total{inference_service, detector, feature, check} rows failing

`check` is one of `CHECKS` (missing, type, range, unseen, constant, empty, duplicate), `feature`
a feature of the schema (the spec's features, never a value a client sent) or `_all` (duplicate
rows); at most `MAX_FEATURE_LABELS` distinct features per worker, so the labels stay bounded
even for a backend of one's own that names more. The share gauge is set every window for the
checks that have a share (missing, type, range, unseen of every feature the check applies to;
duplicate), 0 when clean, so a board draws the line; the violation gauge is set for every
(feature, check) the window judged.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from infertap.detectors.quality.schema import CHECKS, NUMERIC_TYPES
from infertap.detectors.result import DetectionResult, FeatureQuality

LABELS = ("inference_service", "detector", "feature", "check")
ALL = "_all"
MAX_FEATURE_LABELS = 500


class QualityMetrics:
    """One worker's data-quality series; `observe` each judged window."""

    def __init__(self, registry: CollectorRegistry, inference_service: str, detector: str):
        self._base = (inference_service, detector)
        self._features: set[str] = set()
        self.share = Gauge(
            "infertap_data_quality_share",
            "Share of the latest window's rows failing a data-quality check (missing, type, range, unseen; "
            "duplicate with feature _all).",
            LABELS,
            registry=registry,
        )
        self.violation = Gauge(
            "infertap_data_quality_violation",
            "1 when the latest window violates the check on the feature (above its threshold).",
            LABELS,
            registry=registry,
        )
        self.violations = Counter(
            "infertap_data_quality_violations_total",
            "Windows that violated a data-quality check, by feature and check.",
            LABELS,
            registry=registry,
        )
        self.failed_rows = Counter(
            "infertap_data_quality_failed_rows_total",
            "Rows failing a data-quality check (violated or not), by feature and check.",
            LABELS,
            registry=registry,
        )

    def observe(self, result: DetectionResult) -> None:
        """One window's figures and violations."""
        violated = {(v.feature, v.check) for v in result.violations}
        for feature in result.quality:
            name = self._label(feature.name)
            if name is None:
                continue
            for check, rows in _counts(feature).items():
                self._set(name, check, rows / feature.rows if feature.rows else 0.0, rows)
            for check in ("constant", "empty"):
                self.violation.labels(*self._base, name, check).set(int((feature.name, check) in violated))
        duplicates = result.raw.get("duplicates") if isinstance(result.raw, dict) else None
        if isinstance(duplicates, dict):
            rows = int(duplicates.get("rows") or 0)
            self._set(ALL, "duplicate", float(duplicates.get("share") or 0.0), rows)
        for v in result.violations:
            name = v.feature if v.feature == ALL else self._label(v.feature)
            if name is not None and v.check in CHECKS:
                self.violations.labels(*self._base, name, v.check).inc()
                self.violation.labels(*self._base, name, v.check).set(1)

    def _set(self, name: str, check: str, share: float, rows: int) -> None:
        self.share.labels(*self._base, name, check).set(share)
        self.violation.labels(*self._base, name, check).set(0)  # the violations loop sets the 1s
        if rows:
            self.failed_rows.labels(*self._base, name, check).inc(rows)

    def _label(self, feature: str) -> str | None:
        """The feature as a label value, or None once MAX_FEATURE_LABELS others have one."""
        if feature in self._features:
            return feature
        if len(self._features) >= MAX_FEATURE_LABELS:
            return None
        self._features.add(feature)
        return feature


def _counts(feature: FeatureQuality) -> dict[str, int]:
    """Rows failing each check with a share, for the checks that apply to the feature's type."""
    counts = {"missing": feature.missing, "type": feature.type_violations}
    if feature.type in NUMERIC_TYPES:
        counts["range"] = feature.out_of_range
    if feature.type == "categorical":
        counts["unseen"] = feature.unseen
    return counts
