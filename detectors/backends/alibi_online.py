"""Online drift detectors from alibi-detect, fed one event at a time: MMDDriftOnline,
LSDDDriftOnline (pytorch backend, CUDA when available) and CVMDriftOnline.

alibi-detect is under the Business Source License 1.1 (see `alibi_common`); it is imported
lazily. "Fitting" is alibi-detect's threshold configuration for the expected run time
(`ert`) and window size(s), a bootstrap that takes seconds to minutes; it runs once (at
`fit`, or `infertap fit`) and is kept when saving: `save` writes the whole detector,
thresholds and running state (`t`, the test window) included, so a restored worker goes on
with the same test-statistic sequence instead of re-simulating thresholds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from infertap.detectors.backends.alibi_common import AlibiBackend, finite, floats, torch_device
from infertap.detectors.result import DetectionResult, FeatureScore


class OnlineDrift(AlibiBackend):
    """`predict` takes one row (or several, fed in order) and judges the window ending there."""

    kind = "drift"
    online = True
    alibi_module = "alibi_detect.cd"
    store = "dill"
    required: ClassVar[tuple[str, ...]] = ("ert",)

    def check_params(self) -> None:
        super().check_params()
        for name in self.required:
            if name not in self.params:
                raise ValueError(f"{self.name()}: parameter {name!r} is required")

    def defaults(self) -> dict[str, Any]:
        return {"verbose": False}

    def fit(self, x_ref: np.ndarray) -> None:
        self.detector = self.construct(np.asarray(x_ref, dtype=np.float32))

    def predict(self, x: np.ndarray) -> DetectionResult:
        detector = self.require_fitted()
        rows = np.asarray(x, dtype=np.float32)
        rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
        if rows.shape[0] == 0:
            raise ValueError("no rows to judge")
        flagged = []
        for i, row in enumerate(rows):
            data = detector.predict(row, return_test_stat=True)["data"]
            if data["is_drift"]:
                flagged.append(i)
        return self.result(data, n=int(rows.shape[0]), flagged=flagged)

    def result(self, data: dict[str, Any], n: int, flagged: list[int]) -> DetectionResult:
        return DetectionResult(
            kind="drift",
            detector=self.name(),
            n=n,
            is_drift=bool(flagged),
            distance=finite(data.get("test_stat")),
            threshold=finite(data.get("threshold")),
            raw={
                "time": int(data["time"]),
                "ert": finite(data.get("ert")),
                "test_stat": finite(data.get("test_stat")),
                "drift_rows": flagged,
            },
        )

    @property
    def t(self) -> int:
        """Events seen since the detector was configured (alibi-detect's `t`)."""
        return int(self.require_fitted().t)

    def reset_state(self) -> None:
        """Start over at t=0 with the same thresholds (e.g. after drift was acted upon)."""
        self.require_fitted().reset_state()


class TorchOnlineDrift(OnlineDrift):
    required = ("ert", "window_size")

    def defaults(self) -> dict[str, Any]:
        return {"verbose": False, "backend": "pytorch", "device": torch_device()}

    def check_params(self) -> None:
        super().check_params()
        if self.params.get("backend", "pytorch") != "pytorch":
            raise ValueError(f"{self.name()}: backend must be 'pytorch' here")


class MMDDriftOnline(TorchOnlineDrift):
    """Online MMD with thresholds configured for `ert` and `window_size`."""


class LSDDDriftOnline(TorchOnlineDrift):
    """Online LSDD with thresholds configured for `ert` and `window_size`."""


class CVMDriftOnline(OnlineDrift):
    """Online Cramér-von Mises per feature over several `window_sizes`.

    Its test statistic is windows x features; a feature counts as drifted when any window's
    statistic for it exceeds that window's threshold. Threshold configuration is
    O(N_ref^2); alibi-detect's docs advise a reference of a few hundred rows.
    """

    required = ("ert", "window_sizes")

    def result(self, data: dict[str, Any], n: int, flagged: list[int]) -> DetectionResult:
        stats = np.atleast_2d(np.asarray(data["test_stat"], dtype=float))  # windows x features
        thresholds = np.asarray(data["threshold"], dtype=float).reshape(-1, 1)  # per window
        with np.errstate(invalid="ignore"):
            over = (stats > thresholds).any(axis=0)
            per_feature = np.nanmax(np.where(np.isnan(stats), -np.inf, stats), axis=0)
        per_feature[np.isinf(per_feature)] = np.nan
        features = [
            FeatureScore(name=name, distance=d, is_drift=bool(o))
            for name, d, o in zip(self.names_for(stats.shape[1]), floats(per_feature), over, strict=True)
        ]
        known = [f.distance for f in features if f.distance is not None]
        return DetectionResult(
            kind="drift",
            detector=self.name(),
            n=n,
            is_drift=bool(flagged),
            distance=max(known) if known else None,
            threshold=finite(np.nanmin(thresholds)) if not np.isnan(thresholds).all() else None,
            features=features,
            raw={
                "time": int(data["time"]),
                "ert": finite(data.get("ert")),
                "thresholds": floats(thresholds),
                "drift_rows": flagged,
            },
        )
