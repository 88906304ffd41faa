"""What an explanation looks like on the wire (V1 body, or the JSON inside V2's `explanation` output)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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
    target: int | None = Field(default=None, description="Output column explained (class index); None for single-output models.")
    output_space: str = Field(default="raw", description="What `prediction` is: probability, margin, logit, label or raw.")
    shape: list[int] | None = Field(default=None, description="Shape of one instance when it is not a flat row.")
    raw: dict[str, Any] = Field(default_factory=dict, description="The backend's own output for this instance.")


class ExplainResponse(BaseModel):
    """`POST /v1/models/{name}:explain` reply: one explanation per instance, in order."""

    model_name: str
    explainer: str
    explanations: list[InstanceExplanation]
