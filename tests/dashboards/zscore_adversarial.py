"""A user-supplied adversarial backend (`detector.name: tests.dashboards.zscore_adversarial:ZScoreAdversarial`).

It feeds the dashboards' adversarial panels in the stack test without TensorFlow, through the
worker's documented `package.module:Class` hook: rows whose largest per-feature z-score
against the reference exceeds `threshold` are flagged.
"""

from __future__ import annotations

import numpy as np

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.result import DetectionResult


class ZScoreAdversarial(DetectorBackend):
    kind = "adversarial"

    def fit(self, x_ref: np.ndarray) -> None:
        self.mean = x_ref.mean(axis=0)
        self.std = x_ref.std(axis=0) + 1e-9

    def predict(self, x: np.ndarray) -> DetectionResult:
        scores = np.abs((x - self.mean) / self.std).max(axis=1)
        threshold = float(self.params.get("threshold", 3.0))
        return DetectionResult(
            kind="adversarial",
            detector=type(self).__name__,
            n=len(x),
            threshold=threshold,
            is_adversarial=(scores > threshold).tolist(),
            instance_scores=scores.tolist(),
        )
