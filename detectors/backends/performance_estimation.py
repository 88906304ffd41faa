"""Performance without labels: the family base of the estimators (CBPE for classifiers, DLE for regressors).

An estimator is fitted on labelled reference data (`fit_labelled(x, y)`: `infertap fit` reads
the target column `params.target` of a csv or parquet reference) and then judges windows
without labels: per metric, an estimated value, a confidence band and alert thresholds.

- **Band**: value ± `band_std` (3) × the sampling error of the metric at the window's size,
  computed as NannyML does it: the standard deviation of the per-observation metric on the
  reference, scaled by 1/sqrt(n × share of the rows the metric counts) (ROC AUC: DeLong's
  variance components). It is where the realised figure of a window of n rows is expected
  to fall, so the band covers the realised line when the estimate is right.
- **Thresholds**: the reference is cut into chunks of `chunk_size` rows (the spec's window
  size, when it counts events; else a tenth of the reference), the realised metric of each
  chunk is computed from the labels, and the thresholds are their mean ± `threshold_std`
  (3) × their standard deviation (NannyML's default), clipped to the metric's range. A window
  whose estimate falls outside is an alert.

Figures are keyed (metric, class): `class` is `_all` for a figure of the whole window
(accuracy, MAE, RMSE), `_macro` for a mean over the classes, else a class, as the
performance gauge labels them (`infertap.detectors.performance.gauges`), so an estimate and
the realised figure of one metric are one series apart (`kind`). `headline` are the figures
a window's `is_alert` is judged on (CBPE's `average`).

Subclasses implement the model (`_fit_model`, `estimate`, `realised`, `_components`,
`_sampling_error`, `_state`, `_restore`, `_save_model`); this class does the chunking,
thresholds, result, and the saved state (JSON beside the manifest, no pickles).
"""

from __future__ import annotations

import json
import math
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.backends.folder import read_manifest, write_manifest
from infertap.detectors.result import DetectionResult, MetricEstimate

#: (metric, class): class is ALL, MACRO or a class name
Key = tuple[str, str]
ALL, MACRO = "_all", "_macro"

#: the file beside the manifest holding the fitted summary (thresholds, sampling-error components)
STATE = "estimator.json"
COMMON_PARAMS = ("target", "metrics", "chunk_size", "threshold_std", "band_std")
#: fewest reference chunks thresholds are computed from
MIN_CHUNKS = 2


class PerformanceEstimator(DetectorBackend):
    """Estimates a model's performance per window from its outputs alone; fitted with labels."""

    kind = "performance"
    labelled = True
    #: metrics the estimator can give, in the order it reports them
    METRICS: ClassVar[tuple[str, ...]]
    #: (lowest, highest) value of each metric
    BOUNDS: ClassVar[dict[str, tuple[float, float]]]
    #: the estimator's own params (beside COMMON_PARAMS)
    PARAMS: ClassVar[tuple[str, ...]] = ()
    #: "binary", "multiclass" or "regression" (set when fitted or loaded)
    problem: str = ""

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(list(feature_names), dict(params))
        name = type(self).__name__
        known = COMMON_PARAMS + self.PARAMS
        for key in self.params:
            if key not in known:
                raise ValueError(f"{name}: unknown parameter {key!r} (known: {', '.join(known)})")
        self.target = str(self.params.get("target", "target"))
        metrics = self.params.get("metrics", list(self.METRICS))
        if isinstance(metrics, str):
            metrics = [metrics]
        if not isinstance(metrics, list) or not metrics or any(m not in self.METRICS for m in metrics):
            raise ValueError(
                f"{name}: parameter 'metrics' must be a list of {', '.join(self.METRICS)} (got {metrics!r})"
            )
        self.metrics: list[str] = [m for m in self.METRICS if m in metrics]
        self.chunk_size: int | None = _positive_int(self.params.get("chunk_size"), name, "chunk_size")
        self.threshold_std = _non_negative(self.params.get("threshold_std", 3), name, "threshold_std")
        self.band_std = _non_negative(self.params.get("band_std", 3), name, "band_std")
        self.thresholds: dict[Key, tuple[float | None, float | None]] = {}
        #: the figures a window is judged on (set when fitted)
        self.headline: list[Key] = []
        self.reference: dict[str, Any] = {}
        self.fitted = False

    # --- fitting ------------------------------------------------------------------------

    def fit(self, x_ref: np.ndarray) -> None:
        raise ValueError(
            f"{type(self).__name__} is fitted on labelled reference data: a csv or parquet reference with the "
            f"target column {self.target!r} (params.target)"
        )

    def fit_labelled(self, x_ref: np.ndarray, y_ref: np.ndarray) -> None:
        """Fit the model on the reference rows and their labels, then the thresholds from its chunks."""
        x_ref = self._frame(x_ref)
        y_ref = np.asarray(y_ref)
        if len(y_ref) != len(x_ref):
            raise ValueError(f"{len(x_ref)} reference rows but {len(y_ref)} targets")
        y = self._fit_model(x_ref, y_ref)
        self._components(x_ref, y)
        size = self.chunk_size or max(1, len(x_ref) // 10)
        chunks = len(x_ref) // size
        if chunks < MIN_CHUNKS:
            raise ValueError(
                f"the reference has {len(x_ref)} rows, fewer than {MIN_CHUNKS} chunks of {size} "
                "(the window size) to set thresholds from: give more rows or params.chunk_size"
            )
        realised = [
            self.realised(x_ref[i * size : (i + 1) * size], y[i * size : (i + 1) * size]) for i in range(chunks)
        ]
        whole = self.realised(x_ref, y)
        for key in whole:
            values = np.array([r.get(key, math.nan) for r in realised], dtype=np.float64)
            self.thresholds[key] = self._threshold(key[0], values)
        self.reference = {
            "rows": int(len(x_ref)),
            "chunk_size": int(size),
            "chunks": int(chunks),
            "realised": [[m, c, _finite(v)] for (m, c), v in whole.items()],
        }
        self.fitted = True

    def _threshold(self, metric: str, values: np.ndarray) -> tuple[float | None, float | None]:
        values = values[np.isfinite(values)]
        if not len(values):
            return None, None
        low, high = self.BOUNDS[metric]
        mean, std = float(values.mean()), float(values.std())
        lower = max(low, mean - self.threshold_std * std)
        upper = min(high, mean + self.threshold_std * std)
        return lower, upper

    # --- judging ------------------------------------------------------------------------

    def predict(self, x: np.ndarray) -> DetectionResult:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit_labelled(x, y) or load(path) first")
        x = self._frame(x)
        n = int(x.shape[0])
        values = self.estimate(x) if n else {}
        errors = self._sampling_error(n) if n else {}
        metrics = [self._metric(key, values.get(key, math.nan), errors.get(key, math.nan)) for key in self.thresholds]
        headline = set(self.headline)
        return DetectionResult(
            kind="performance",
            detector=type(self).__name__,
            n=n,
            performance_kind="estimated",
            problem=self.problem,
            metrics=metrics,
            is_alert=any(m.alert for m in metrics if (m.name, m.klass) in headline),
        )

    def realised_result(self, x: np.ndarray, y: np.ndarray) -> DetectionResult:
        """The realised figures of rows `x` whose labels `y` came back (`target_codes` of them), judged
        against the same thresholds as the estimates: the line a board draws beside the estimate."""
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        x = self._frame(x)
        values = self.realised(x, np.asarray(y)) if len(y) else {}
        metrics = []
        for key in self.thresholds:
            figure = self._metric(key, values.get(key, math.nan), math.nan)
            metrics.append(figure.model_copy(update={"sampling_error": None, "lower": None, "upper": None}))
        headline = set(self.headline)
        return DetectionResult(
            kind="performance",
            detector=type(self).__name__,
            n=int(len(y)),
            performance_kind="realised",
            problem=self.problem,
            metrics=metrics,
            is_alert=any(m.alert for m in metrics if (m.name, m.klass) in headline),
        )

    def _metric(self, key: Key, value: float, error: float) -> MetricEstimate:
        name, klass = key
        low, high = self.BOUNDS[name]
        lower_threshold, upper_threshold = self.thresholds.get(key, (None, None))
        finite = math.isfinite(value)
        spread = self.band_std * error if math.isfinite(error) else None
        alert = finite and (
            (lower_threshold is not None and value < lower_threshold)
            or (upper_threshold is not None and value > upper_threshold)
        )
        return MetricEstimate.model_validate(
            {
                "name": name,
                "class": klass,
                "headline": key in self.headline,
                "value": value if finite else None,
                "sampling_error": error if math.isfinite(error) else None,
                "lower": max(low, value - spread) if finite and spread is not None else None,
                "upper": min(high, value + spread) if finite and spread is not None else None,
                "lower_threshold": lower_threshold,
                "upper_threshold": upper_threshold,
                "alert": bool(alert),
            }
        )

    def _frame(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        x = x.reshape(-1, 1) if x.ndim == 1 else x
        if self.feature_names and x.shape[1] != len(self.feature_names):
            raise ValueError(f"{type(self).__name__}: {x.shape[1]} columns, the spec names {len(self.feature_names)}")
        return x

    def column(self, name: str, what: str) -> int:
        """The index of the feature `name`; ValueError naming the param when the spec has no such feature."""
        if name not in self.feature_names:
            raise ValueError(
                f"{type(self).__name__}: {what} {name!r} is not one of the spec's features ({', '.join(self.feature_names)})"
            )
        return self.feature_names.index(name)

    # --- the model (subclasses) ---------------------------------------------------------

    @abstractmethod
    def _fit_model(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Fit on the reference, set `headline`; return the targets as `realised` takes them (class indices)."""

    @abstractmethod
    def estimate(self, x: np.ndarray) -> dict[Key, float]:
        """Estimated value of each figure on the rows `x` (no labels)."""

    @abstractmethod
    def realised(self, x: np.ndarray, y: np.ndarray) -> dict[Key, float]:
        """Realised value of each figure on rows `x` with targets `y` (as `_fit_model` returned them)."""

    @abstractmethod
    def _components(self, x: np.ndarray, y: np.ndarray) -> None:
        """Keep what `_sampling_error` needs from the reference."""

    @abstractmethod
    def _sampling_error(self, n: int) -> dict[Key, float]:
        """The sampling error of each figure in a window of `n` rows."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The model's JSON-able state (arrays go to files `_save_model` writes)."""

    @abstractmethod
    def _restore(self, state: dict[str, Any], path: Path) -> None:
        """Rebuild the model from `_state` and the files in `path`."""

    def _save_model(self, path: Path) -> None:
        """Write the model's own files (none by default)."""

    def target_codes(self, y: np.ndarray) -> np.ndarray:
        """Targets as the estimator reads them (identity; classifiers map labels to class indices)."""
        return y

    # --- folders ------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._save_model(path)
        state = {
            "problem": self.problem,
            "metrics": self.metrics,
            "headline": [list(k) for k in self.headline],
            "thresholds": [[m, c, lo, hi] for (m, c), (lo, hi) in self.thresholds.items()],
            "reference": self.reference,
            "model": self._state(),
        }
        (path / STATE).write_text(json.dumps(_jsonable(state), indent=2) + "\n")
        write_manifest(path, type(self).__name__, self.feature_names, self.params)

    def load(self, path: Path) -> None:
        path = Path(path)
        if read_manifest(path) is None or not (path / STATE).is_file():
            raise ValueError(f"{path}: not a saved {type(self).__name__} (no {STATE})")
        state = json.loads((path / STATE).read_text())
        self.problem = state["problem"]
        self.metrics = list(state["metrics"])
        self.headline = [(m, c) for m, c in state["headline"]]
        self.thresholds = {(m, c): (lo, hi) for m, c, lo, hi in state["thresholds"]}
        self.reference = state["reference"]
        self._restore(state["model"], path)
        self.fitted = True


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _positive_int(value: Any, name: str, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: parameter {key!r} must be a whole number of rows, at least 1 (got {value!r})")
    return value


def _non_negative(value: Any, name: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(
            f"{name}: parameter {key!r} must be a number of standard deviations, 0 or more (got {value!r})"
        )
    return float(value)
