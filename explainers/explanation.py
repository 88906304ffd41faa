"""What an explanation looks like on the wire (V1 body, or the JSON inside V2's `explanation` output)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infertap.serving.codec import InferenceRequest


class InstanceExplanation(BaseModel):
    """One explained instance.

    `values` are the attributions of the `target` output, one per feature (images and other
    tensors flattened in C order, `shape` says how to fold them back); `base_value +
    sum(values)` approximates `prediction` for additive methods (SHAP, IG). Anchors give no
    values: their answer is in `raw`, alibi's Explanation JSON `{"meta", "data"}`.
    """

    feature_names: list[str]
    values: list[float] | None = None
    base_value: float | None = None
    prediction: float | None = None
    target: int | None = Field(
        default=None, description="Output column explained (class index); None for single-output models."
    )
    output_space: str = Field(
        default="raw", description="What `prediction` is: probability, margin, logit, label or raw."
    )
    shape: list[int] | None = Field(default=None, description="Shape of one instance when it is not a flat row.")
    raw: dict[str, Any] = Field(default_factory=dict, description="The backend's own output for this instance.")


class ExplainResponse(BaseModel):
    """`POST /v1/models/{name}:explain` reply: one explanation per instance, in order."""

    model_name: str
    explainer: str
    explanations: list[InstanceExplanation]


# Request bodies, for the OpenAPI document only: the server reads raw bodies with
# infertap.serving.codec and checks the options in ExplainService.options.


class ExplainParameters(BaseModel):
    """Per-request options; keys other than these three go to the backend (e.g. anchors' `threshold`)."""

    model_config = ConfigDict(extra="allow")

    nsamples: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Kernel nsamples, Permutation max_evals, IG steps, GradientShap samples; at most the server's max_samples."
        ),
    )
    target: int | None = Field(default=None, description="Output column to explain; default: the predicted class.")
    deadline_s: float | None = Field(
        default=None, gt=0, description=("Seconds for this request, at most the server's deadline_s; past it: 504.")
    )


class ExplainInstancesBody(BaseModel):
    """`POST /v1/models/{name}:explain` body: the V1 predict body, rows only."""

    instances: list[Any] = Field(
        min_length=1, description="Rows to explain (lists of numbers; strings for AnchorText)."
    )
    parameters: ExplainParameters | None = None


class ExplainInputsBody(BaseModel):
    """The same in V1's `inputs` spelling (a list of rows; named columns are refused)."""

    inputs: list[Any] = Field(min_length=1)
    parameters: ExplainParameters | None = None


class ExplainInferParameters(ExplainParameters):
    """V2 request `parameters`: the options themselves, or MLServer's `explain_parameters` holding them."""

    explain_parameters: ExplainParameters | None = None


class ExplainInferRequest(InferenceRequest):
    """`POST /v2/models/{name}-explainer/infer` body: one input tensor, options in `parameters`."""

    parameters: ExplainInferParameters | None = None  # type: ignore[assignment]
