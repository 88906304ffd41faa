"""Typed settings of one explainer server (what `python -m infertap.explainers`, `infertap explain` and `up` pass in)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Explainer types, named as alibi / KServe name them (MLServer's snake_case names are accepted too;
#: SquareAttack is KServe's ART explainer).
ExplainerType = Literal[
    "KernelShap",
    "PermutationShap",
    "TreeShap",
    "XGBoostShap",
    "IntegratedGradients",
    "GradientShap",
    "DeepLift",
    "AnchorTabular",
    "AnchorText",
    "AnchorImages",
    "SquareAttack",
    "TextShap",
    "TextIntegratedGradients",
    "LLMFeatureAblation",
    "LLMIntegratedGradients",
]
ALIASES = {
    "kernel_shap": "KernelShap",
    "permutation_shap": "PermutationShap",
    "tree_shap": "TreeShap",
    "xgboost_shap": "XGBoostShap",
    "integrated_gradients": "IntegratedGradients",
    "gradient_shap": "GradientShap",
    "deeplift": "DeepLift",
    "deep_lift": "DeepLift",
    "anchor_tabular": "AnchorTabular",
    "anchor_text": "AnchorText",
    "anchor_image": "AnchorImages",
    "anchor_images": "AnchorImages",
    "AnchorImage": "AnchorImages",
    "square_attack": "SquareAttack",
    "squareattack": "SquareAttack",  # KServe's ART explainer compares the type lower-cased
    "text_shap": "TextShap",
    "text_integrated_gradients": "TextIntegratedGradients",
    "llm_feature_ablation": "LLMFeatureAblation",
    "llm_integrated_gradients": "LLMIntegratedGradients",
}


def canonical_type(name: str) -> str:
    """`kernel_shap` / `KernelShap` -> `KernelShap` (unknown names are returned unchanged)."""
    return ALIASES.get(name, name)


class ExplainerSettings(BaseSettings):
    """One explainer: which backend, where the predictor or model is, its data, and its limits.

    Environment variables INFERTAP_EXPLAINER_<FIELD> set fields (flags and --help: infertap/flags.py).
    """

    model_config = SettingsConfigDict(env_prefix="INFERTAP_EXPLAINER_", extra="forbid")

    name: str = Field(
        min_length=1,
        description="Model name in URLs: /v1/models/{name}:explain, /v2/models/{name}-explainer/infer.",
        json_schema_extra={"aliases": ["--model-name"]},  # KServe's controller appends --model_name
    )
    explainer_type: ExplainerType = Field(
        description="Backend, as alibi / KServe name it (MLServer's snake_case names too: kernel_shap).",
        json_schema_extra={"aliases": ["--type"]},
    )
    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0: all).")
    http_port: int = Field(default=8082, ge=0, le=65535, description="HTTP port (0: any free port).")
    # black box
    predictor_url: str | None = Field(
        default=None,
        description="Base URL of the predictor (or the logger sidecar in front of it); host:port means http://host:port.",
        json_schema_extra={"aliases": ["--predictor-host"]},  # KServe's controller appends --predictor_host
    )
    predictor_model: str | None = Field(default=None, description="Model name at the predictor; default: `name`.")
    protocol: Literal["v1", "v2"] = Field(default="v2", description="Protocol spoken to the predictor.")
    predict_proba: bool | None = Field(
        default=None,
        description="Explain class probabilities; None: ask for them, fall back to plain predictions when the model has none.",
    )
    max_rows_per_request: int = Field(default=20_000, ge=1, description="Perturbation rows per predictor request.")
    # white box
    storage_uri: str | None = Field(default=None, description="Model file (or folder) for white-box backends.")
    model_format: Literal["sklearn", "xgboost", "lightgbm", "pytorch", "huggingface"] | None = Field(
        default=None,
        description="Format of storage_uri's model (white-box backends; the text and LLM ones read a huggingface folder).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="captum: where the model runs; auto: CUDA when available."
    )
    # data
    background: str | None = Field(
        default=None,
        description="Background / training data: .npz from `infertap fit`, or .npy rows (e.g. reference.npy).",
    )
    background_size: int = Field(default=100, ge=1, description="Rows kept from a raw .npy background (seeded sample).")
    feature_names: list[str] | None = Field(
        default=None, description="Names of the input columns, in order.", json_schema_extra={"comma_list": True}
    )
    explainer_uri: str | None = Field(
        default=None, description="A saved (dill/pickle) explainer; loaded only with allow_pickle."
    )
    allow_pickle: bool = Field(
        default=False, description="Opt in to unpickling explainer_uri (pickles run code when loaded)."
    )
    # limits
    deadline_s: float = Field(default=30.0, gt=0, description="Per-request deadline; past it the answer is 504.")
    max_instances: int = Field(default=64, ge=1, description="Most instances per explain request.")
    max_samples: int = Field(
        default=10_000, ge=1, description="Cap on nsamples / max_evals / n_steps a request may ask for."
    )
    max_sample_rows: int = Field(
        default=2_000_000,
        ge=1,
        description=(
            "Cap on the perturbed rows one request makes a backend hold at once (KernelShap and "
            "PermutationShap nsamples x background rows, GradientShap samples x instances)."
        ),
    )
    max_prompt_tokens: int = Field(
        default=512,
        ge=1,
        description="Text and LLM explainers: most tokens in one text or prompt (more: 400).",
    )
    max_target_tokens: int = Field(
        default=64,
        ge=1,
        description="LLM explainers: most completion tokens explained, given or generated (more: 400).",
    )
    # off by default: those labels would carry request text (personal data) to Prometheus
    token_metric_top_k: int = Field(
        default=0,
        ge=0,
        le=200,
        description=(
            "Text explainers: tokens exported as infertap_explainer_token_mean_abs_attribution{token} "
            "(the top k by mean |attribution|, e.g. 20; 0, the default: none, as those labels carry request text "
            "past redaction)."
        ),
    )
    workers: int = Field(default=2, ge=1, description="Explanations computed at once (threads).")
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1, description="Larger request bodies get 413.")
    auth_token: str | None = Field(
        default=None,
        description="Bearer token every POST must carry (401 otherwise); default $INFERTAP_AUTH_TOKEN, none: no auth.",
    )
    # backend defaults
    nsamples: int | None = Field(
        default=None,
        ge=1,
        description="KernelShap nsamples, PermutationShap max_evals, GradientShap n_samples; None: the backend's default.",
    )
    n_steps: int = Field(default=50, ge=2, description="IntegratedGradients steps.")
    internal_batch_size: int | None = Field(
        default=256, ge=1, description="captum: rows per forward/backward pass (bounds memory)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description='Extra backend parameters, KEY=VALUE with a JSON value (e.g. threshold=0.9, model_output="probability").',
        json_schema_extra={"aliases": ["--param"]},
    )
    inference_service: str = Field(default="", description="Metrics label `inference_service`.")
    log_level: str = Field(default="info", description="Server log level.")

    @field_validator("explainer_type", mode="before")
    @classmethod
    def _canonical_type(cls, value):
        return canonical_type(value) if isinstance(value, str) else value

    @field_validator("predictor_url", mode="before")
    @classmethod
    def _url(cls, value):
        if isinstance(value, str) and value and "://" not in value:  # KServe's --predictor_host is host:port
            return f"http://{value}"
        return value

    @property
    def target_model(self) -> str:
        return self.predictor_model or self.name
