"""Permissive outlier detection: scikit-learn's IsolationForest (BSD), no alibi-detect needed.

Scores are the negated `score_samples` (higher = more anomalous, as alibi-detect's IForest
reports them); the threshold is the `threshold_perc` percentile of the reference rows'
scores (default 95), as alibi-detect's `infer_threshold` sets it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.backends.folder import write_manifest
from infertap.detectors.result import DetectionResult

MODEL = "model.joblib"
FOREST_PARAMS = ("n_estimators", "max_samples", "max_features", "bootstrap", "n_jobs", "random_state")


class SklearnIForest(DetectorBackend):
    """Params: `threshold_perc` (or a fixed `threshold`) and IsolationForest's own settings."""

    kind = "outlier"
    PARAMS = ("threshold_perc", "threshold", *FOREST_PARAMS)

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(list(feature_names), dict(params))
        for key in self.params:
            if key not in self.PARAMS:
                raise ValueError(f"SklearnIForest: unknown parameter {key!r} (known: {', '.join(self.PARAMS)})")
        perc = self.params.get("threshold_perc", 95)
        if not isinstance(perc, (int, float)) or not 0 < perc < 100:
            raise ValueError(
                f"SklearnIForest: parameter 'threshold_perc' must be a number between 0 and 100 (got {perc!r})"
            )
        self.model: Any = None
        self.threshold: float | None = self.params.get("threshold")

    def fit(self, x_ref: np.ndarray) -> None:
        from sklearn.ensemble import IsolationForest

        x_ref = np.asarray(x_ref, dtype=np.float64)
        settings = {
            "n_estimators": 100,
            "random_state": 0,
            **{k: self.params[k] for k in FOREST_PARAMS if k in self.params},
        }
        self.model = IsolationForest(**settings).fit(x_ref)
        if self.params.get("threshold") is None:
            self.threshold = float(np.percentile(self.scores(x_ref), float(self.params.get("threshold_perc", 95))))

    def scores(self, x: np.ndarray) -> np.ndarray:
        return -self.model.score_samples(x)

    def predict(self, x: np.ndarray) -> DetectionResult:
        if self.model is None:
            raise RuntimeError("SklearnIForest is not fitted: call fit(x_ref) or load(path) first")
        scores = self.scores(np.asarray(x, dtype=np.float64))
        return DetectionResult(
            kind="outlier",
            detector="SklearnIForest",
            n=len(scores),
            threshold=self.threshold,
            is_outlier=[bool(s > self.threshold) for s in scores],
            instance_scores=scores.tolist(),
        )

    def save(self, path: Path) -> None:
        import joblib

        if self.model is None:
            raise RuntimeError("SklearnIForest is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.model, path / MODEL)
        write_manifest(path, "SklearnIForest", self.feature_names, self.params, threshold=self.threshold)

    def load(self, path: Path) -> None:
        import joblib

        from infertap.detectors.backends.folder import read_manifest

        self.model = joblib.load(Path(path) / MODEL)
        self.threshold = (read_manifest(path) or {}).get("threshold", self.threshold)
