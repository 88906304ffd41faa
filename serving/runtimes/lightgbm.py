"""LightGBM Boosters saved as text (`model.txt`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infertap.serving.runtimes.tabular import TabularRuntime, labels_and_probabilities

_CLASSIFIERS = ("binary", "multiclass", "multiclassova", "cross_entropy")


class LightGBMRuntime(TabularRuntime):
    """Classifiers answer labels (or probabilities with predict_proba); other objectives their raw prediction."""

    platform = "lightgbm"

    def _load(self, path: Path) -> None:
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(path))
        self._booster = booster
        self._objective = str(booster.dump_model(num_iteration=0).get("objective", "")).split(" ")[0]
        self.has_proba = self._objective in _CLASSIFIERS
        self.n_features = booster.num_feature() or None
        self._describe()

    def _predict_sync(self, X: np.ndarray, proba: bool) -> np.ndarray:
        # One thread per call: rows per request are few, and concurrent requests already run in parallel.
        # Dense input without pred_contrib: always an ndarray (the sparse/list returns need sparse contributions).
        raw = np.asarray(self._booster.predict(X, num_threads=1))
        if self._objective in _CLASSIFIERS:
            return labels_and_probabilities(raw, proba)
        return raw
