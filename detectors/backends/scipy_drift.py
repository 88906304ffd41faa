"""Permissive univariate drift: SciPy's two-sample Kolmogorov-Smirnov test per feature.

The BSD-licensed stand-in for alibi-detect's KSDrift (same test, `ks_2samp` in asymptotic
mode, same Bonferroni / FDR corrections), so drift detection works without alibi-detect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.backends.folder import write_manifest
from infertap.detectors.result import DetectionResult, FeatureScore

X_REF = "x_ref.npy"


class ScipyKS(DetectorBackend):
    """Params: `p_val` (default 0.05), `correction` ('bonferroni' or 'fdr')."""

    kind = "drift"
    PARAMS = ("p_val", "correction")

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(list(feature_names), dict(params))
        for key in self.params:
            if key not in self.PARAMS:
                raise ValueError(f"ScipyKS: unknown parameter {key!r} (known: {', '.join(self.PARAMS)})")
        self.p_val = float(self.params.get("p_val", 0.05))
        if not 0 < self.p_val < 1:
            raise ValueError(f"ScipyKS: parameter 'p_val' must lie between 0 and 1 (got {self.p_val})")
        self.correction = self.params.get("correction", "bonferroni")
        if self.correction not in ("bonferroni", "fdr"):
            raise ValueError(f"ScipyKS: parameter 'correction' must be 'bonferroni' or 'fdr' (got {self.correction!r})")
        self.x_ref: np.ndarray | None = None

    def fit(self, x_ref: np.ndarray) -> None:
        x_ref = np.asarray(x_ref, dtype=np.float64)
        self.x_ref = x_ref.reshape(-1, 1) if x_ref.ndim == 1 else x_ref

    def threshold(self, p_vals: np.ndarray) -> float:
        """The corrected p-value cut-off for this window."""
        d = len(p_vals)
        if self.correction == "bonferroni" or d == 1:
            return self.p_val / d
        # Benjamini-Hochberg: the largest p_(k) with p_(k) <= k/d * q; below the smallest cut-off when none passes
        ranked = np.sort(p_vals)
        passing = ranked <= self.p_val * np.arange(1, d + 1) / d
        return float(np.nextafter(ranked[np.nonzero(passing)[0].max()], 1.0)) if passing.any() else self.p_val / d

    def predict(self, x: np.ndarray) -> DetectionResult:
        from scipy.stats import ks_2samp

        if self.x_ref is None:
            raise RuntimeError("ScipyKS is not fitted: call fit(x_ref) or load(path) first")
        x = np.asarray(x, dtype=np.float64)
        x = x.reshape(-1, 1) if x.ndim == 1 else x
        if x.shape[1] != self.x_ref.shape[1]:
            raise ValueError(f"ScipyKS: {x.shape[1]} features, the reference has {self.x_ref.shape[1]}")
        tests = [ks_2samp(self.x_ref[:, j], x[:, j], method="asymp") for j in range(x.shape[1])]
        p_vals = np.array([t.pvalue for t in tests])
        threshold = self.threshold(p_vals)
        names = self.feature_names if len(self.feature_names) == x.shape[1] else [f"f{j}" for j in range(x.shape[1])]
        features = [
            FeatureScore(
                name=n, p_val=float(t.pvalue), distance=float(t.statistic), is_drift=bool(t.pvalue < threshold)
            )
            for n, t in zip(names, tests, strict=True)
        ]
        return DetectionResult(
            kind="drift",
            detector="ScipyKS",
            n=int(x.shape[0]),
            is_drift=any(f.is_drift for f in features),
            p_val=float(p_vals.min()),
            distance=max(float(t.statistic) for t in tests),
            threshold=threshold,
            features=features,
        )

    def save(self, path: Path) -> None:
        if self.x_ref is None:
            raise RuntimeError("ScipyKS is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / X_REF, self.x_ref)
        write_manifest(path, "ScipyKS", self.feature_names, self.params)

    def load(self, path: Path) -> None:
        self.x_ref = np.load(Path(path) / X_REF, allow_pickle=False)
