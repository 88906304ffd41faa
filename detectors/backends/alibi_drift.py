"""Offline (window) drift detectors from alibi-detect: univariate tests and kernel / classifier tests.

alibi-detect is under the Business Source License 1.1 (see `alibi_common`); it is imported
lazily. Univariate detectors (KSDrift, CVMDrift, ChiSquareDrift, TabularDrift) report a
p-value and distance per feature, and a feature counts as drifted when its p-value is below
the window's corrected threshold (Bonferroni by default), so the flagged features are the
ones that explain the window's verdict. MMDDrift and LSDDDrift use alibi-detect's pytorch
backend, on CUDA when torch sees a GPU. ClassifierDrift uses its sklearn backend with a
named scikit-learn classifier.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from infertap.detectors.backends.alibi_common import AlibiBackend, finite, floats, scalar_raw, torch_device
from infertap.detectors.result import DetectionResult, FeatureScore


class UnivariateDrift(AlibiBackend):
    """Feature-wise two-sample tests with a multiple-testing correction."""

    kind = "drift"
    alibi_module = "alibi_detect.cd"

    def fit(self, x_ref: np.ndarray) -> None:
        self.detector = self.construct(self.prepare(x_ref))

    def prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return x.reshape(-1, 1) if x.ndim == 1 else x

    def predict(self, x: np.ndarray) -> DetectionResult:
        detector = self.require_fitted()
        x = self.prepare(x)
        data = detector.predict(x, drift_type="batch", return_p_val=True, return_distance=True)["data"]
        p_vals, distances = floats(data["p_val"]), floats(data["distance"])
        threshold = finite(data["threshold"])
        features = [
            FeatureScore(
                name=name, p_val=p, distance=dist, is_drift=p is not None and threshold is not None and p < threshold
            )
            for name, p, dist in zip(self.names_for(len(p_vals)), p_vals, distances, strict=True)
        ]
        known_p = [p for p in p_vals if p is not None]
        known_d = [d for d in distances if d is not None]
        return DetectionResult(
            kind="drift",
            detector=self.name(),
            n=int(x.shape[0]),
            is_drift=bool(data["is_drift"]),
            p_val=min(known_p) if known_p else None,
            distance=max(known_d) if known_d else None,
            threshold=threshold,
            features=features,
            raw={"p_val_setting": finite(getattr(detector, "p_val", None))},
        )


class KSDrift(UnivariateDrift):
    """Kolmogorov-Smirnov per feature."""


class CVMDrift(UnivariateDrift):
    """Cramér-von Mises per feature."""


class ChiSquareDrift(UnivariateDrift):
    """Chi-squared per (categorical) feature; `categories_per_feature` {column: n categories}."""

    def alibi_kwargs(self) -> dict[str, Any]:
        return _int_keys(super().alibi_kwargs())


class TabularDrift(UnivariateDrift):
    """KS on numeric features, chi-squared on those named in `categories_per_feature`."""

    def alibi_kwargs(self) -> dict[str, Any]:
        kwargs = _int_keys(super().alibi_kwargs())
        # alibi-detect warns and treats every feature as numeric without it (its #588): say so explicitly.
        kwargs.setdefault("categories_per_feature", {})
        return kwargs


def _int_keys(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`categories_per_feature` keys back to column indices (YAML and JSON make them strings)."""
    cats = kwargs.get("categories_per_feature")
    if isinstance(cats, dict):
        kwargs["categories_per_feature"] = {int(k): (None if v is None else int(v)) for k, v in cats.items()}
    return kwargs


class MultivariateDrift(AlibiBackend):
    """One test statistic for the whole window (no per-feature figures)."""

    kind = "drift"
    alibi_module = "alibi_detect.cd"
    extra_predict: ClassVar[dict[str, Any]] = {}

    def fit(self, x_ref: np.ndarray) -> None:
        self.detector = self.construct(np.asarray(x_ref, dtype=np.float32))

    def predict(self, x: np.ndarray) -> DetectionResult:
        detector = self.require_fitted()
        x = np.asarray(x, dtype=np.float32)
        data = detector.predict(x, return_p_val=True, return_distance=True, **self.extra_predict)["data"]
        raw = scalar_raw(data)
        for key in ("is_drift", "p_val", "distance", "threshold"):
            raw.pop(key, None)
        return DetectionResult(
            kind="drift",
            detector=self.name(),
            n=int(x.shape[0]),
            is_drift=bool(data["is_drift"]),
            p_val=finite(data.get("p_val")),
            distance=finite(data.get("distance")),
            threshold=finite(data.get("threshold")),
            raw=raw,
        )


class TorchKernelDrift(MultivariateDrift):
    """Permutation tests on the pytorch backend (CUDA when available)."""

    def defaults(self) -> dict[str, Any]:
        return {"backend": "pytorch", "device": torch_device()}

    def check_params(self) -> None:
        super().check_params()
        if self.params.get("backend", "pytorch") != "pytorch":
            raise ValueError(
                f"{self.name()}: backend must be 'pytorch' here (TensorFlow detectors live in the detectors-tf extra)"
            )


class MMDDrift(TorchKernelDrift):
    """Maximum Mean Discrepancy, Gaussian kernel (median-heuristic bandwidth), permutation test."""


class LSDDDrift(TorchKernelDrift):
    """Least-Squares Density Difference, permutation test."""


#: scikit-learn classifiers ClassifierDrift may be given by name in a spec
SKLEARN_CLASSIFIERS = {
    "random_forest": ("sklearn.ensemble", "RandomForestClassifier", {"n_estimators": 50, "max_depth": 6}),
    "gradient_boosting": ("sklearn.ensemble", "HistGradientBoostingClassifier", {"max_iter": 50}),
    "logistic_regression": ("sklearn.linear_model", "LogisticRegression", {"max_iter": 500}),
}


class ClassifierDrift(MultivariateDrift):
    """A domain classifier (scikit-learn) trained to tell reference from window, inside each predict.

    `model` names the classifier (random_forest, gradient_boosting, logistic_regression;
    default random_forest); `model_params` are its own keyword arguments.
    """

    own_params = {"model_params": "keyword arguments of the scikit-learn classifier"}
    extra_predict = {"return_probs": False}

    def check_params(self) -> None:
        super().check_params()
        model = self.params.get("model", "random_forest")
        if model not in SKLEARN_CLASSIFIERS:
            raise ValueError(
                f"ClassifierDrift: parameter 'model' must be one of {', '.join(SKLEARN_CLASSIFIERS)} (got {model!r})"
            )
        if self.params.get("backend", "sklearn") != "sklearn":
            raise ValueError("ClassifierDrift: backend must be 'sklearn' here")

    def defaults(self) -> dict[str, Any]:
        return {"backend": "sklearn", "n_folds": 5}

    def alibi_kwargs(self) -> dict[str, Any]:
        import importlib

        kwargs = super().alibi_kwargs()
        module, cls, settings = SKLEARN_CLASSIFIERS[kwargs.pop("model", "random_forest")]
        estimator = getattr(importlib.import_module(module), cls)(**{**settings, **self.params.get("model_params", {})})
        if "n_folds" in kwargs:
            kwargs.setdefault("train_size", None)  # alibi-detect warns when both are set
        return {"model": estimator, **kwargs}
