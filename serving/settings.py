"""Typed settings of the model server: what `infertap serve` and `infertap up` pass in."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ModelFormat = Literal["sklearn", "xgboost", "lightgbm", "pytorch", "onnx", "huggingface"]


class ModelSettings(BaseModel):
    """One model to serve, as named by an InferenceService's `spec.predictor.model`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        description="Model name in URLs: /v1/models/{name}, /v2/models/{name}.",
        json_schema_extra={"flag": "--model-name"},
    )
    format: ModelFormat = Field(
        description="KServe `modelFormat.name`; picks the runtime.", json_schema_extra={"flag": "--model-format"}
    )
    uri: str = Field(
        description="`storageUri`: file://path, a plain path to a file, or a folder holding one model file.",
        json_schema_extra={"flag": "--storage-uri", "aliases": ["--model-dir"]},
    )
    version: str | None = Field(
        default=None, description="Version reported by V2 metadata.", json_schema_extra={"flag": "--model-version"}
    )
    predict_proba: bool = Field(
        default=False,
        description="Reply with class probabilities (sklearn/xgboost/lightgbm), as KServe's PREDICT_PROBA.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="pytorch/onnx/huggingface: CUDA when available under auto."
    )
    max_batch_size: int = Field(default=32, ge=1, description="Dynamic batching: most rows merged into one model call.")
    max_batch_wait_ms: float = Field(default=2.0, ge=0, description="Dynamic batching: longest wait for more requests.")
    dynamic_batching: bool = Field(default=True, description="pytorch: merge concurrent requests into one batch.")
    # huggingface: KServe's Hugging Face server arguments (--task, --backend, --dtype, --max_model_len).
    task: Literal["text_generation", "text_embedding", "sequence_classification"] | None = Field(
        default=None,
        description="huggingface: the task (KServe's --task); inferred from the config's `architectures` when absent.",
    )
    backend: Literal["auto", "huggingface", "vllm"] = Field(
        default="auto", description="huggingface: KServe's --backend; infertap runs transformers (auto = huggingface)."
    )
    dtype: Literal["auto", "float16", "float32", "bfloat16", "float", "half"] = Field(
        default="auto",
        description="huggingface: weight dtype; auto: the config's dtype, else float16 on CUDA and float32 on CPU.",
    )
    max_model_len: int | None = Field(
        default=None,
        ge=1,
        description="huggingface: most tokens of prompt plus completion (default: the model's max positions).",
        json_schema_extra={"aliases": ["--max-length"]},
    )


class ServerSettings(BaseSettings):
    """The model server process; environment variables INFERTAP_SERVING_<FIELD> (see infertap/flags.py)."""

    model_config = SettingsConfigDict(env_prefix="INFERTAP_SERVING_", extra="forbid")

    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0: all).")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0: any free port).")
    models: list[ModelSettings] = Field(
        min_length=1,
        description="Models to serve; on the command line one, from the model flags (several: --config).",
        json_schema_extra={"flatten": True},
    )
    server_name: str = Field(default="infertap", description="Server name in V2 server metadata.")
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1, description="Larger bodies get 413.")
    inference_service: str = Field(
        default="", description="Metrics label `inference_service` (the InferenceService name)."
    )
    component: str = Field(default="predictor", description="Metrics label `component`.")
    log_level: str = Field(default="info", description="Server log level (uvicorn's access log stays off).")
