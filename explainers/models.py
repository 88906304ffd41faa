"""Model files for white-box explainers, read the way the model server reads them.

sklearn (joblib), xgboost (Booster JSON/UBJSON), lightgbm (text Booster) and TorchScript.
Joblib files are pickles too, but they are the model the predictor already serves from
the same storageUri (KServe's sklearn convention), so no extra opt-in is asked for them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from infertap.explainers.errors import ExplainerLoadError
from infertap.serving.errors import ModelLoadError
from infertap.serving.storage import resolve_model_file


def model_file(uri: str | None, model_format: str | None, explainer: str) -> Path:
    if not uri or not model_format:
        raise ExplainerLoadError(f"{explainer} is a white-box explainer: give storage_uri and model_format")
    try:
        return resolve_model_file(uri, model_format)
    except ModelLoadError as err:
        raise ExplainerLoadError(str(err)) from None


def load_tree_model(uri: str | None, model_format: str | None, explainer: str) -> Any:
    """The tree model object shap.TreeExplainer takes (sklearn estimator, xgboost or lightgbm Booster)."""
    path = model_file(uri, model_format, explainer)
    try:
        if model_format == "sklearn":
            import joblib

            return joblib.load(path)
        if model_format == "xgboost":
            import xgboost as xgb

            booster = xgb.Booster()
            booster.load_model(str(path))
            return booster
        if model_format == "lightgbm":
            import lightgbm as lgb

            return lgb.Booster(model_file=str(path))
    except Exception as err:  # noqa: BLE001 - any library's own error for a corrupt file
        raise ExplainerLoadError(f"cannot load {model_format} model {path}: {type(err).__name__}: {err}") from None
    raise ExplainerLoadError(f"{explainer} explains sklearn, xgboost or lightgbm tree models (got {model_format!r})")


def load_torchscript(uri: str | None, device: str, explainer: str):
    """A TorchScript model on `device`, in eval mode."""
    import torch

    path = model_file(uri, "pytorch", explainer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except Exception as err:  # noqa: BLE001
        raise ExplainerLoadError(f"cannot load TorchScript model {path}: {type(err).__name__}: {err}") from None
