"""XGBoost Boosters saved as JSON or UBJSON (also what the sklearn wrapper's save_model writes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from infertap.serving.runtimes.tabular import TabularRuntime, labels_and_probabilities

_CLASSIFIERS = ("binary:logistic", "multi:softprob")


class XGBoostRuntime(TabularRuntime):
    """Classifiers answer labels (or probabilities with predict_proba); other objectives their raw prediction."""

    platform = "xgboost"

    def _load(self, path: Path) -> None:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(str(path))
        self._booster = booster
        self._objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        self.has_proba = self._objective in _CLASSIFIERS
        self.n_features = booster.num_features() or None
        self._describe()

    def _predict_sync(self, X: np.ndarray, proba: bool) -> np.ndarray:
        # inplace_predict skips the DMatrix copy and is safe to call from several threads.
        raw = self._booster.inplace_predict(X, validate_features=False)
        if self._objective in _CLASSIFIERS:
            return labels_and_probabilities(raw, proba)
        if self._objective == "multi:softmax":
            return raw.astype(np.int64)
        return raw
