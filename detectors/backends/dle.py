"""DLE: direct loss estimation of a regressor's error, without labels.

The method is NannyML's (Apache-2.0; this is our own code): on the labelled reference, a
LightGBM regressor learns the model's error per row from what the stream shows of it, the
features and the prediction: one model of the absolute error |y - ŷ| (for MAE), one of the
squared error (y - ŷ)² (for RMSE). A window's MAE is the mean of the first's predictions
(floored at 0), its RMSE the square root of the mean of the second's. Where the model is
less sure (inputs it has seen rarely, regions where it erred on the reference), the error
model says so, which is why the estimate moves when the inputs do.

Sampling error (the band): MAE, std(|e|) / sqrt(n); RMSE, by the delta method,
sqrt(var(e²) / (4 n mean(e²))), both from the reference's errors, as NannyML computes them.

The models are saved as LightGBM's text format (`mae.txt`, `rmse.txt`), no pickles. Needs the
`lightgbm` extra.

Params: `prediction` (the feature holding the model's prediction, default "prediction"),
`features` (the features the error model reads, default every feature), `model_params`
(LightGBM parameters over the defaults: 100 rounds, learning rate 0.1, 31 leaves), and the
family's `target`, `metrics`, `chunk_size`, `threshold_std`, `band_std`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from infertap.detectors.backends.performance_estimation import ALL, Key, PerformanceEstimator

#: LightGBM's defaults as LGBMRegressor has them (what NannyML trains), quiet and seeded
DEFAULT_MODEL = {
    "objective": "regression",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "num_boost_round": 100,
    "verbosity": -1,
    "seed": 0,
    "deterministic": True,
    "num_threads": 1,
}


def import_lightgbm() -> Any:
    """lightgbm, or ImportError naming the extra."""
    try:
        import lightgbm
    except ImportError:
        raise ImportError("DLE needs LightGBM: pip install 'infertap[lightgbm]'") from None
    return lightgbm


class DLE(PerformanceEstimator):
    """Params: `prediction`, `features`, `model_params`, and the family's."""

    METRICS = ("mae", "rmse")
    BOUNDS = {"mae": (0.0, math.inf), "rmse": (0.0, math.inf)}
    PARAMS = ("prediction", "features", "model_params")
    problem = "regression"

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(feature_names, params)
        p = self.params
        self.prediction = str(p.get("prediction", "prediction"))
        inputs = p.get("features", list(self.feature_names))
        if not isinstance(inputs, list) or not inputs:
            raise ValueError(f"DLE: parameter 'features' must list the features the error model reads (got {inputs!r})")
        model = p.get("model_params", {})
        if not isinstance(model, dict):
            raise ValueError(f"DLE: parameter 'model_params' must be a mapping of LightGBM parameters (got {model!r})")
        self.model_params = {**DEFAULT_MODEL, **model}
        if feature_names:
            self.prediction_column = self.column(self.prediction, "prediction")
            self.input_columns = [self.column(str(n), "feature") for n in inputs]
            if self.prediction_column not in self.input_columns:
                self.input_columns.append(self.prediction_column)
        self.models: dict[str, Any] = {}
        self.components: dict[str, list[float]] = {}
        self.headline = [(m, ALL) for m in self.metrics]

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        return x[:, self.input_columns]

    def _fit_model(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        lgb = import_lightgbm()
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"the target column {self.target!r} is not numeric: DLE estimates a regressor") from None
        if not np.isfinite(y).all():
            raise ValueError(f"the target column {self.target!r} holds empty or infinite values")
        error = y - x[:, self.prediction_column]
        params = dict(self.model_params)
        rounds = int(params.pop("num_boost_round"))
        inputs = self._inputs(x)
        for metric in self.metrics:
            loss = np.abs(error) if metric == "mae" else error**2
            self.models[metric] = lgb.train(params, lgb.Dataset(inputs, loss), num_boost_round=rounds)
        return y

    def estimate(self, x: np.ndarray) -> dict[Key, float]:
        inputs = self._inputs(x)
        out = {}
        for metric in self.metrics:
            loss = np.maximum(0.0, self.models[metric].predict(inputs))
            out[(metric, ALL)] = float(loss.mean()) if metric == "mae" else math.sqrt(float(loss.mean()))
        return out

    def realised(self, x: np.ndarray, y: np.ndarray) -> dict[Key, float]:
        error = np.asarray(y, dtype=np.float64) - x[:, self.prediction_column]
        if not len(error):
            return {}
        figures = {"mae": float(np.abs(error).mean()), "rmse": math.sqrt(float((error**2).mean()))}
        return {(m, ALL): figures[m] for m in self.metrics}

    def _components(self, x: np.ndarray, y: np.ndarray) -> None:
        error = np.asarray(y, dtype=np.float64) - x[:, self.prediction_column]
        squared = error**2
        self.components = {
            "mae": [float(np.abs(error).std())],
            "rmse": [float(squared.std()), float(squared.mean())],
        }

    def _sampling_error(self, n: int) -> dict[Key, float]:
        out = {}
        for metric in self.metrics:
            if metric == "mae":
                out[(metric, ALL)] = self.components["mae"][0] / math.sqrt(n)
            else:
                std, mean = self.components["rmse"]
                out[(metric, ALL)] = math.sqrt(std**2 / (4 * n * mean)) if mean else math.nan
        return out

    def _save_model(self, path: Path) -> None:
        for metric, model in self.models.items():
            model.save_model(str(path / f"{metric}.txt"))

    def _state(self) -> dict[str, Any]:
        return {"components": self.components, "models": {m: f"{m}.txt" for m in self.models}}

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        lgb = import_lightgbm()
        self.components = state["components"]
        self.models = {m: lgb.Booster(model_file=str(path / file)) for m, file in state["models"].items()}
