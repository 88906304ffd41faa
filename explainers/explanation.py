"""What an explanation looks like on the wire (V1 body, or the JSON inside V2's `explanation` output)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from infertap.serving.codec import InferenceRequest
from infertap.serving.openai.protocol import ChatMessage


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


class TextExplanation(BaseModel):
    """One explained text of a sequence classifier (`TextShap`, `TextIntegratedGradients`).

    `tokens` are the tokenizer's pieces of `text` (special tokens left out), each the slice
    `text[start:end]` of its `offsets` entry, so a page can highlight the text as written;
    `attributions` one score per token towards `target`. They add up as the method promises:
    `base_value + sum(attributions) == prediction` exactly for shap's partition explainer (Owen
    values), and up to `convergence_delta` for integrated gradients (`prediction - base_value` is
    then the model's output at the text minus at the baseline, pad tokens in place of every token).
    """

    kind: Literal["text"] = "text"
    method: str = Field(description="PartitionShap (shap's partition explainer) or LayerIntegratedGradients.")
    text: str
    tokens: list[str]
    offsets: list[tuple[int, int]] = Field(description="(start, end) of each token in `text`, in characters.")
    attributions: list[float]
    target: int = Field(description="Class explained (the predicted one unless the request asks for another).")
    target_label: str | None = Field(default=None, description="The class's name (the model config's id2label).")
    prediction: float = Field(description="The model's output for `target` in `output_space`.")
    base_value: float = Field(description="The output with every token masked (shap) or at the baseline (IG).")
    output_space: Literal["probability", "logit"]
    convergence_delta: float | None = Field(
        default=None, description="IG: sum(attributions) - (prediction - base_value); None for shap (exact)."
    )
    raw: dict[str, Any] = Field(default_factory=dict, description="Outputs of every class, steps, evaluations.")


class PromptSegment(BaseModel):
    """One part of an LLM prompt that was attributed: a word, a sentence or a whole message's content."""

    text: str
    role: str = Field(description="Role of the message it is in (`prompt` for a completions prompt).")
    message: int = Field(description="Index of the message it is in (0 for a completions prompt).")
    start: int = Field(description="Offset of `text` in the message's content, in characters.")
    attribution: float


class CompletionExplanation(BaseModel):
    """How much each segment of a prompt contributed to one completion (`LLMFeatureAblation`,
    `LLMIntegratedGradients`), towards the completion's log-probability given the prompt.

    FeatureAblation: a segment's attribution is `target_log_prob` minus the log-probability of
    the same completion with that segment removed from the prompt. LayerIntegratedGradients (on
    the input embeddings, pad tokens as baseline, summed over a segment's tokens): the
    attributions add up to `target_log_prob - base_value` within `convergence_delta`.
    """

    kind: Literal["llm"] = "llm"
    method: str = Field(description="FeatureAblation or LayerIntegratedGradients.")
    segmentation: Literal["words", "sentences", "messages"]
    segments: list[PromptSegment]
    completion: str
    completion_tokens: list[str]
    generated: bool = Field(description="True when the explainer generated the completion (greedy), not the caller.")
    target_log_prob: float = Field(description="log p(completion | prompt), summed over the completion's tokens.")
    base_value: float | None = Field(
        default=None, description="IG: the log-probability at the baseline prompt; None for FeatureAblation."
    )
    convergence_delta: float | None = Field(
        default=None, description="IG: sum of attributions - (target_log_prob - base_value)."
    )
    prompt_tokens: int
    raw: dict[str, Any] = Field(default_factory=dict, description="Per completion token: log-probs, attributions.")


Explanation = InstanceExplanation | TextExplanation | CompletionExplanation


class ExplainResponse(BaseModel):
    """`POST /v1/models/{name}:explain` reply: one explanation per instance, in order."""

    model_name: str
    explainer: str
    explanations: list[Explanation]


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


class LLMExplainInstance(BaseModel):
    """One completion to explain: a chat (`messages`) or a completions `prompt`, and the `completion`
    (generated greedily by the explainer when absent)."""

    model_config = ConfigDict(extra="allow")  # an OpenAI body's other fields (model, temperature, ...)

    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    prompt: str | None = None
    completion: str | None = Field(default=None, description="The answer to explain; default: generated greedily.")
    max_tokens: int | None = Field(default=None, ge=1, description="Tokens to generate when no completion is given.")
    max_completion_tokens: int | None = Field(default=None, ge=1, description="Newer name of max_tokens.")


class LLMExplainBody(LLMExplainInstance):
    """`POST /v1/models/{name}:explain` body of the LLM explainers: one completion
    (`{"messages": [...]}` or `{"prompt": ...}`, with `completion`), or `instances` of them."""

    instances: list[LLMExplainInstance] | None = Field(default=None, min_length=1)
    parameters: ExplainParameters | None = None


class ExplainInferParameters(ExplainParameters):
    """V2 request `parameters`: the options themselves, or MLServer's `explain_parameters` holding them."""

    explain_parameters: ExplainParameters | None = None


class ExplainInferRequest(InferenceRequest):
    """`POST /v2/models/{name}-explainer/infer` body: one input tensor, options in `parameters`."""

    parameters: ExplainInferParameters | None = None  # type: ignore[assignment]
