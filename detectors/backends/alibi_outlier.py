"""Outlier detectors from alibi-detect that need no TensorFlow: IForest and Mahalanobis.

alibi-detect is under the Business Source License 1.1 (see `alibi_common`); it is imported
lazily. Both get their threshold from the reference data: the `threshold_perc` percentile
of the reference rows' scores (default 95), unless `threshold` is given. alibi-detect's
`save_detector` needs TensorFlow for these two, so they are saved as one dill file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from infertap.detectors.backends.alibi_common import AlibiBackend, finite, import_alibi, scores
from infertap.detectors.result import DetectionResult

THRESHOLD_PERC = {"threshold_perc": "percentile of the reference rows' scores used as the threshold (default 95)"}


class OutlierBackend(AlibiBackend):
    """Per-row scores and flags; `fit` trains (where the detector trains) and infers the threshold."""

    kind = "outlier"
    alibi_module = "alibi_detect.od"
    store = "dill"
    own_params = THRESHOLD_PERC

    def check_params(self) -> None:
        super().check_params()
        perc = self.params.get("threshold_perc", 95)
        if not isinstance(perc, (int, float)) or not 0 < perc < 100:
            raise ValueError(
                f"{self.name()}: parameter 'threshold_perc' must be a number between 0 and 100 (got {perc!r})"
            )

    def fit(self, x_ref: np.ndarray) -> None:
        x_ref = np.asarray(x_ref, dtype=np.float64)
        detector = self.construct()
        self.train(detector, x_ref)
        if self.params.get("threshold") is None:
            detector.infer_threshold(x_ref, threshold_perc=float(self.params.get("threshold_perc", 95)))
        self.detector = detector

    def train(self, detector: Any, x_ref: np.ndarray) -> None:
        """Train `detector` on the reference rows (nothing by default)."""

    def predict(self, x: np.ndarray) -> DetectionResult:
        detector = self.require_fitted()
        x = np.asarray(x, dtype=np.float64)
        data = detector.predict(x, return_instance_score=True)["data"]
        return DetectionResult(
            kind="outlier",
            detector=self.name(),
            n=int(x.shape[0]),
            threshold=finite(detector.threshold),
            is_outlier=[bool(v) for v in np.asarray(data["is_outlier"]).reshape(-1)],
            instance_scores=scores(data["instance_score"]),
        )


class IForest(OutlierBackend):
    """scikit-learn's isolation forest behind alibi-detect's IForest."""

    def train(self, detector: Any, x_ref: np.ndarray) -> None:
        detector.fit(x_ref)


class Mahalanobis(OutlierBackend):
    """Mahalanobis distance in the top `n_components` principal directions, with running
    mean and covariance (alibi-detect updates them with every scored batch); `fit` feeds the
    reference rows through once so the first window is judged against them."""

    def train(self, detector: Any, x_ref: np.ndarray) -> None:
        detector.score(x_ref)


def load_legacy(path: Path) -> Any:
    """An IForest or Mahalanobis from alibi-detect's legacy folder (meta.dill + <Name>.dill), without
    TensorFlow: alibi-detect's own legacy loader lives in its TensorFlow module and refuses
    to run without it, though these two detectors hold only numpy and scikit-learn state."""
    import dill

    od = import_alibi("alibi_detect.od")
    with open(Path(path) / "meta.dill", "rb") as fh:
        name = dill.load(fh)["name"]
    if name not in ("IForest", "Mahalanobis"):
        raise ValueError(f"{path}: {name} is not an IForest or Mahalanobis folder")
    with open(Path(path) / f"{name}.dill", "rb") as fh:
        state = dill.load(fh)
    if name == "IForest":
        detector = od.IForest(threshold=state["threshold"])
        detector.isolationforest = state["isolationforest"]
        return detector
    detector = od.Mahalanobis(
        **{k: state[k] for k in ("threshold", "n_components", "std_clip", "start_clip", "max_n", "cat_vars", "ohe")}
    )
    for key in ("d_abs", "clip", "mean", "C", "n"):
        setattr(detector, key, state[key])
    return detector
