"""Small permissive backends for the worker tests, loaded as `tests.detectors.plugin_backends:Name`.

They exercise the worker's plumbing (windows, offsets, state) independently of the alibi-detect
backends, which have their own tests; the end-to-end tests use the real registry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.result import DetectionResult, FeatureScore


class KSBackend(DetectorBackend):
    """Two-sample KS per feature with Bonferroni correction; `sleep` param slows predict (kill tests)."""

    kind = "drift"

    def fit(self, x_ref: np.ndarray) -> None:
        self.x_ref = np.asarray(x_ref, dtype=float)

    def predict(self, x: np.ndarray) -> DetectionResult:
        time.sleep(float(self.params.get("sleep", 0)))
        p_val = float(self.params.get("p_val", 0.05))
        threshold = p_val / x.shape[1]
        scores = [stats.ks_2samp(self.x_ref[:, j], x[:, j]) for j in range(x.shape[1])]
        names = self.feature_names or [f"f{j}" for j in range(x.shape[1])]
        features = [
            FeatureScore(
                name=n, p_val=float(s.pvalue), distance=float(s.statistic), is_drift=bool(s.pvalue < threshold)
            )
            for n, s in zip(names, scores, strict=True)
        ]
        return DetectionResult(
            kind="drift",
            detector="KSBackend",
            n=int(x.shape[0]),
            threshold=threshold,
            is_drift=any(f.is_drift for f in features),
            p_val=min(f.p_val for f in features),
            distance=max(f.distance for f in features),
            features=features,
        )


class CountingOnline(DetectorBackend):
    """An 'online detector' whose state is how many rows it has seen and their sum."""

    kind = "drift"
    online = True

    def fit(self, x_ref: np.ndarray) -> None:
        self.t, self.total = 0, 0.0

    def predict(self, x: np.ndarray) -> DetectionResult:
        self.t += x.shape[0]
        self.total += float(x.sum())
        return DetectionResult(
            kind="drift",
            detector="CountingOnline",
            n=int(x.shape[0]),
            is_drift=False,
            raw={"t": self.t, "total": self.total},
        )

    def save(self, path: Path) -> None:
        (Path(path) / "state.json").write_text(json.dumps({"t": self.t, "total": self.total}))

    def load(self, path: Path) -> None:
        state = json.loads((Path(path) / "state.json").read_text())
        self.t, self.total = state["t"], state["total"]
