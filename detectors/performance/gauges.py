"""The performance gauge every performance worker and backend sets: realised (labels joined
by the performance worker) and estimated (CBPE, DLE: no labels) figures on one metric, so a
board draws both lines from one query.

    infertap_performance_metric{inference_service, detector, kind, metric, class}

- `kind`: `realised` or `estimated` (`KINDS`);
- `metric`: one of `METRICS` (accuracy, precision, recall, f1, roc_auc; mae, rmse, mape, r2);
- `class`: `_all` for a figure of the whole window (accuracy, the regression figures),
  `_macro` for a macro average, else the class (a class name; at most `MAX_CLASS_LABELS`
  distinct ones per worker unless the spec lists the classes, so the label stays bounded).

Import `PerformanceGauge` and call `set_classification` / `set_regression` with the scores
of a window (the dict shape of `infertap.detectors.performance.scores`: `accuracy`,
`precision_macro`, ..., `per_class: {class: {precision, recall, f1, roc_auc}}`), or `set`
with (metric, class) pairs. A window's figures replace the previous window's of the same
kind: a class absent from a window has no series until it is back.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

PERFORMANCE_METRIC = "infertap_performance_metric"
LABELS = ("inference_service", "detector", "kind", "metric", "class")
KINDS = ("realised", "estimated")
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse", "mape", "r2")
METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS
ALL, MACRO = "_all", "_macro"
MAX_CLASS_LABELS = 20

_gauges: weakref.WeakKeyDictionary[CollectorRegistry, Gauge] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def performance_gauge(registry: CollectorRegistry) -> Gauge:
    """The registry's `infertap_performance_metric` gauge (made once per registry)."""
    with _lock:
        gauge = _gauges.get(registry)
        if gauge is None:
            gauge = _gauges[registry] = Gauge(
                PERFORMANCE_METRIC,
                "Latest window's performance: kind realised (from joined labels) or estimated (without labels); "
                "class _all (whole window), _macro (macro average) or a class.",
                LABELS,
                registry=registry,
            )
        return gauge


class PerformanceGauge:
    """One worker's series of the performance gauge (its `inference_service` and `detector`)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        inference_service: str,
        detector: str,
        classes: Iterable[str] | None = None,
    ):
        self.gauge = performance_gauge(registry)
        self.inference_service, self.detector = inference_service, detector
        self._fixed = list(classes) if classes else None  # the spec's classes: every one is a label value
        self._seen: list[str] = []
        self._set: dict[str, set[tuple[str, str]]] = {kind: set() for kind in KINDS}

    def class_label(self, name: str) -> str | None:
        """`name` as a `class` label value, or None once the bound is reached (the figure is not exported)."""
        if self._fixed is not None:
            return name if name in self._fixed else None
        if name in self._seen:
            return name
        if len(self._seen) < MAX_CLASS_LABELS:
            self._seen.append(name)
            return name
        return None

    def set(self, kind: str, figures: Mapping[tuple[str, str], float | None]) -> None:
        """Replace the `kind` series with `figures` ((metric, class) -> value; None: not defined this window)."""
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is none of {', '.join(KINDS)}")
        now: set[tuple[str, str]] = set()
        for (metric, cls), value in figures.items():
            if metric not in METRICS:
                raise ValueError(f"metric {metric!r} is none of {', '.join(METRICS)}")
            label = cls if cls in (ALL, MACRO) else self.class_label(cls)
            if label is None or value is None:
                continue
            self.gauge.labels(self.inference_service, self.detector, kind, metric, label).set(value)
            now.add((metric, label))
        for metric, label in self._set[kind] - now:
            try:
                self.gauge.remove(self.inference_service, self.detector, kind, metric, label)
            except KeyError:
                pass
        self._set[kind] = now

    def set_classification(self, kind: str, scores: Mapping[str, Any]) -> None:
        """The figures of a classification window (see the module docstring for its shape)."""
        self.set(kind, classification_figures(scores))

    def set_regression(self, kind: str, scores: Mapping[str, Any]) -> None:
        self.set(kind, {(m, ALL): scores.get(m) for m in REGRESSION_METRICS})


def classification_figures(scores: Mapping[str, Any]) -> dict[tuple[str, str], float | None]:
    """(metric, class) -> value of a classification window's scores."""
    out: dict[tuple[str, str], float | None] = {("accuracy", ALL): scores.get("accuracy")}
    for metric in ("precision", "recall", "f1"):
        out[(metric, MACRO)] = scores.get(f"{metric}_macro")
    out[("roc_auc", MACRO)] = scores.get("roc_auc")
    for cls, figures in (scores.get("per_class") or {}).items():
        for metric in ("precision", "recall", "f1", "roc_auc"):
            if figures.get(metric) is not None:
                out[(metric, str(cls))] = figures[metric]
    return out
