"""Explainer backends behind one interface (`Explainer`), picked by `explainer_type`.

Backend modules import their library (shap, xgboost, captum, alibi, ART) lazily, so a KernelShap
server never imports torch and nothing imports alibi unless an anchor explainer is asked for.
"""

from __future__ import annotations

from importlib import import_module

from infertap.explainers.backends.base import Explainer, ExplainOptions
from infertap.explainers.errors import ExplainerLoadError, MissingExtra
from infertap.explainers.extras import EXTRAS, extra_of, find_missing
from infertap.explainers.predictor import HTTPPredictor
from infertap.explainers.settings import ExplainerSettings

# explainer_type -> "module:Class" (licence of the library behind it in the comment)
BACKENDS: dict[str, str] = {
    "KernelShap": "infertap.explainers.backends.kernel_shap:KernelShapExplainer",  # shap, MIT
    "PermutationShap": "infertap.explainers.backends.permutation_shap:PermutationShapExplainer",  # shap, MIT
    "TreeShap": "infertap.explainers.backends.tree_shap:TreeShapExplainer",  # shap, MIT
    "XGBoostShap": "infertap.explainers.backends.xgboost_shap:XGBoostShapExplainer",  # xgboost, Apache-2.0
    "IntegratedGradients": "infertap.explainers.backends.integrated_gradients:IntegratedGradientsExplainer",  # captum, BSD-3
    "GradientShap": "infertap.explainers.backends.gradient_shap:GradientShapExplainer",  # captum, BSD-3
    "DeepLift": "infertap.explainers.backends.deeplift:DeepLiftExplainer",  # captum, BSD-3
    "AnchorTabular": "infertap.explainers.backends.anchor_tabular:AnchorTabularExplainer",  # alibi, BSL 1.1
    "AnchorText": "infertap.explainers.backends.anchor_text:AnchorTextExplainer",  # alibi, BSL 1.1
    "AnchorImages": "infertap.explainers.backends.anchor_image:AnchorImageExplainer",  # alibi, BSL 1.1
    "SquareAttack": "infertap.explainers.backends.square_attack:SquareAttackExplainer",  # ART, MIT
    "TextShap": "infertap.explainers.backends.text_shap:TextShapExplainer",  # shap, MIT
    "TextIntegratedGradients": "infertap.explainers.backends.text_integrated_gradients:TextIntegratedGradientsExplainer",  # captum, BSD-3
    "LLMFeatureAblation": "infertap.explainers.backends.llm_feature_ablation:LLMFeatureAblationExplainer",  # captum, BSD-3
    "LLMIntegratedGradients": "infertap.explainers.backends.llm_integrated_gradients:LLMIntegratedGradientsExplainer",  # captum, BSD-3
}


def backend_class(explainer_type: str) -> type[Explainer]:
    """The backend class for `explainer_type`; MissingExtra names the extra to install when a library
    it needs is not installed (looked up, not imported: the planner of `infertap up` calls this)."""
    try:
        module, cls = BACKENDS[explainer_type].split(":")
    except KeyError:
        raise ExplainerLoadError(f"unknown explainer type {explainer_type!r}; known: {', '.join(BACKENDS)}") from None
    try:
        found: type[Explainer] = getattr(import_module(module), cls)
    except ModuleNotFoundError as err:
        raise MissingExtra(
            f"{explainer_type} needs {err.name}: pip install 'infertap[{extra_of(err.name or '')}]'"
        ) from None
    missing = find_missing(explainer_type, found.requires)
    if missing is not None:
        raise MissingExtra(missing)
    return found


def create_explainer(settings: ExplainerSettings, on_request=None) -> Explainer:
    """An unloaded backend for `settings`, with an HTTP predictor when `predictor_url` is set."""
    cls = backend_class(settings.explainer_type)
    predictor = None
    if settings.predictor_url:
        predictor = HTTPPredictor(
            settings.predictor_url,
            settings.target_model,
            settings.protocol,
            settings.predict_proba,
            settings.max_rows_per_request,
            on_request=on_request,
        )
    return cls(settings, predictor)


__all__ = ["BACKENDS", "EXTRAS", "ExplainOptions", "Explainer", "backend_class", "create_explainer"]
