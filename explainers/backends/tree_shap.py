"""shap.TreeExplainer (MIT): exact white-box SHAP values for sklearn, xgboost and lightgbm trees.

Loads the model file the predictor serves. Without background data it uses the
path-dependent algorithm (no data needed, output in the model's raw space: log-odds for
xgboost/lightgbm classifiers, probabilities for sklearn forests). With background data
and `params.feature_perturbation: interventional` it uses the background, and
`params.model_output` (e.g. `probability`) picks the explained space.
shap 0.49.1 cannot read models saved by xgboost >= 3.1 (environment.md); 3.0.5 works.
"""

from __future__ import annotations

import numpy as np

from infertap.explainers.backends.base import Explainer, ExplainOptions, floats, pick_target, select
from infertap.explainers.explanation import InstanceExplanation
from infertap.explainers.models import load_tree_model


class TreeShapExplainer(Explainer):
    type_name = "TreeShap"
    kind = "whitebox"

    def _load(self) -> None:
        import shap

        self._model = model = load_tree_model(self.settings.storage_uri, self.settings.model_format, self.type_name)
        params = self.settings.params
        perturbation = params.get("feature_perturbation", "tree_path_dependent")
        data = None
        if perturbation == "interventional" and self.background is not None:
            data = self.background.data.reshape(len(self.background.data), -1)
        self._model_output = params.get("model_output", "raw")
        self._explainer = shap.TreeExplainer(
            model, data=data, feature_perturbation=perturbation, model_output=self._model_output
        )
        n = getattr(model, "n_features_in_", None) or _n_features(model)
        if self.feature_shape is None and n:
            self.feature_shape = (int(n),)

    def explain(self, X: np.ndarray, options: ExplainOptions) -> list[InstanceExplanation]:
        flat = X.reshape(len(X), -1).astype(np.float64)
        with self._lock:
            values = np.asarray(self._explainer.shap_values(flat, check_additivity=False))
            expected = np.asarray(self._explainer.expected_value, dtype=np.float64).reshape(-1)
            outputs = self._outputs(flat, values)
        names = self.feature_names(flat.shape[1])
        space = {"raw": "margin", "probability": "probability"}.get(self._model_output, self._model_output)
        if self.settings.model_format == "sklearn" and hasattr(self._model, "predict_proba") and values.ndim == 3:
            space = "probability"  # shap's raw output of a forest classifier is its class probabilities
        out = []
        for i in range(len(flat)):
            target, prediction = pick_target(outputs[i], options.target)
            vals, base = select(values[i], expected, target)
            out.append(
                InstanceExplanation(
                    feature_names=names,
                    values=floats(vals),
                    base_value=base,
                    prediction=prediction,
                    target=target,
                    output_space=space,
                    raw={
                        "shap_values": np.asarray(values[i]).T.tolist() if values[i].ndim > 1 else floats(values[i]),
                        "expected_value": floats(expected),
                        "model_output": floats(outputs[i]),
                    },
                )
            )
        return out

    def _outputs(self, X: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The model's own output in the explained space (the libraries' native calls)."""
        raw = self._model_output == "raw"
        fmt = self.settings.model_format
        if fmt == "xgboost":
            import xgboost as xgb

            return np.asarray(self._model.predict(xgb.DMatrix(X), output_margin=raw))
        if fmt == "lightgbm":
            return np.asarray(self._model.predict(X, raw_score=raw))
        out = np.asarray(self._explainer.model.predict(X, output=self._model_output))
        if values.ndim == 3 and out.ndim == 1 and hasattr(self._model, "predict_proba"):
            out = self._model.predict_proba(X)  # shap explains a forest classifier's class probabilities
        return out


def _n_features(model) -> int | None:
    for attr in ("num_features", "num_feature"):
        fn = getattr(model, attr, None)
        if callable(fn):
            try:
                return int(fn())
            except Exception:  # noqa: BLE001
                return None
    return None
