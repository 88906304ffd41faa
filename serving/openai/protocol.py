"""OpenAI API request and response bodies (the subset infertap serves), as typed pydantic models.

Requests accept OpenAI's other fields (`user`, `metadata`, `store`, ...) and ignore them, as
OpenAI-compatible servers do; values out of OpenAI's documented ranges are refused (400).
vLLM's extra sampling parameters (`top_k`, `min_tokens`, `ignore_eos`, `repetition_penalty`)
are accepted too; the `openai` client sends them in `extra_body`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOP_SEQUENCES = 4


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The served model name (KServe's --model_name).")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = Field(default=False, description="Send a last chunk with `usage` and no choices.")


class _Sampling(_Request):
    max_tokens: int | None = Field(default=None, ge=1, description="Most tokens to generate.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="0: greedy. Default: the model's, else 1.")
    top_p: float | None = Field(default=None, gt=0, le=1, description="Nucleus sampling. Default: the model's, else 1.")
    n: int = Field(default=1, ge=1, le=16, description="Completions per prompt.")
    stop: str | list[str] | None = Field(default=None, description="Up to 4 sequences that end the completion.")
    seed: int | None = Field(default=None, description="Seeds sampling (reproducible when requests do not overlap).")
    stream: bool = Field(default=False, description="Server-sent events, one chunk per token.")
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=-2, le=2, description="Only 0 is supported.")
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2, description="Only 0 is supported.")
    logit_bias: dict[str, float] | None = Field(default=None, description="Not supported (empty only).")
    # vLLM's extra sampling parameters
    top_k: int | None = Field(default=None, ge=-1, description="vLLM extra: top-k sampling (-1 or 0: off).")
    min_tokens: int = Field(default=0, ge=0, description="vLLM extra: generate at least this many tokens.")
    ignore_eos: bool = Field(default=False, description="vLLM extra: keep generating past end-of-sequence.")
    repetition_penalty: float | None = Field(default=None, gt=0, le=2, description="vLLM extra.")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        return value

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ChatCompletionRequest(_Sampling):
    """`POST /openai/v1/chat/completions` (and `/v1/chat/completions`)."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, description="Newer name of max_tokens.")
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    """`POST /openai/v1/completions` (and `/v1/completions`)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)


class EmbeddingRequest(_Request):
    """`POST /openai/v1/embeddings` (and `/v1/embeddings`)."""

    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, description="Only the model's own width.")
    user: str | None = None


# --- responses ----------------------------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


class Completion(BaseModel):
    """A completion, and (with `usage` left out until the end) each chunk of a streamed one."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32.")
    index: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "infertap"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`."""

    error: ErrorDetail


SCHEMA_MODELS: list[type[BaseModel]] = [
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    EmbeddingResponse,
    ModelList,
    ModelCard,
    ErrorResponse,
]
