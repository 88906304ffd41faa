"""scikit-learn models saved with joblib (or pickle), as KServe's sklearn server loads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infertap.serving.errors import ModelLoadError
from infertap.serving.runtimes.tabular import TabularRuntime


class SKLearnRuntime(TabularRuntime):
    """`predict`, or `predict_proba` when ModelSettings.predict_proba (KServe's PREDICT_PROBA) or asked per request."""

    platform = "sklearn"

    def _load(self, path: Path) -> None:
        import joblib

        model = joblib.load(path)
        if not hasattr(model, "predict"):
            raise ModelLoadError(f"{path} holds a {type(model).__name__}, not a scikit-learn estimator with predict()")
        self._model = model
        self.has_proba = hasattr(model, "predict_proba")
        n = getattr(model, "n_features_in_", None)
        self.n_features = int(n) if n is not None else None
        self._describe()

    def _predict_sync(self, X: np.ndarray, proba: bool) -> np.ndarray:
        return self._model.predict_proba(X) if proba else self._model.predict(X)
