"""XGBoost's own SHAP (`Booster.predict(pred_contribs=True)`), on CUDA when the build and a GPU allow.

The same TreeSHAP values as shap.TreeExplainer (path-dependent, margin space), computed
inside XGBoost; with `device=cuda` it runs on the GPU (GPUTreeShap). `device: auto` uses
CUDA when this xgboost build has it and a GPU answers, else CPU.
"""

from __future__ import annotations

import logging

import numpy as np

from infertap.explainers.backends.base import Explainer, ExplainOptions, floats, pick_target, select
from infertap.explainers.errors import ExplainerLoadError
from infertap.explainers.explanation import InstanceExplanation
from infertap.explainers.models import load_tree_model

log = logging.getLogger("infertap.explainers")


def xgboost_device(requested: str) -> str:
    """'cuda' when asked for (auto or cuda), built in and working, else 'cpu'."""
    import xgboost as xgb

    if requested == "cpu":
        return "cpu"
    has_cuda = bool(xgb.build_info().get("USE_CUDA"))
    if not has_cuda:
        if requested == "cuda":
            log.warning("device cuda requested but this xgboost build has no CUDA; running on cpu")
        return "cpu"
    try:
        probe = xgb.train({"device": "cuda", "tree_method": "hist"}, xgb.DMatrix(np.zeros((2, 1)), label=[0, 1]), 1)
        probe.predict(xgb.DMatrix(np.zeros((1, 1))))
        return "cuda"
    except xgb.core.XGBoostError as err:
        log.warning("xgboost cannot use CUDA here (%s); running on cpu", err)
        return "cpu"


class XGBoostShapExplainer(Explainer):
    type_name = "XGBoostShap"
    kind = "whitebox"

    def _load(self) -> None:
        if self.settings.model_format != "xgboost":
            raise ExplainerLoadError(
                f"XGBoostShap explains xgboost models (got model_format {self.settings.model_format!r})"
            )
        self._booster = load_tree_model(self.settings.storage_uri, "xgboost", self.type_name)
        self.device = xgboost_device(self.settings.device)
        self._booster.set_param({"device": self.device})
        if self.feature_shape is None and self._booster.num_features():
            self.feature_shape = (self._booster.num_features(),)

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(contributions incl. the bias column, margins) for rows X."""
        import xgboost as xgb

        matrix = xgb.DMatrix(X)
        return (self._booster.predict(matrix, pred_contribs=True), self._booster.predict(matrix, output_margin=True))

    def explain(self, X: np.ndarray, options: ExplainOptions) -> list[InstanceExplanation]:
        flat = X.reshape(len(X), -1)
        contribs, margins = self.contributions(flat)
        # (n, M+1) for one output, (n, K, M+1) for K classes: last column is the bias.
        values = contribs[..., :-1]
        bias = contribs[..., -1]
        if values.ndim == 3:
            values = values.transpose(0, 2, 1)  # -> (n, M, K) as shap gives
        names = self.feature_names(flat.shape[1])
        out = []
        for i in range(len(flat)):
            target, prediction = pick_target(margins[i], options.target)
            vals, base = select(values[i], bias[i], target)
            out.append(
                InstanceExplanation(
                    feature_names=names,
                    values=floats(vals),
                    base_value=base,
                    prediction=prediction,
                    target=target,
                    output_space="margin",
                    raw={
                        "contributions": np.asarray(contribs[i]).tolist(),
                        "margin": floats(margins[i]),
                        "device": self.device,
                    },
                )
            )
        return out
