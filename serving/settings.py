"""Typed settings of the model server: what `infertap serve` and `infertap up` pass in."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ModelFormat = Literal["sklearn", "xgboost", "lightgbm", "pytorch", "onnx"]


class ModelSettings(BaseModel):
    """One model to serve, as named by an InferenceService's `spec.predictor.model`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Model name in URLs: /v1/models/{name}, /v2/models/{name}.")
    format: ModelFormat = Field(description="KServe `modelFormat.name`; picks the runtime.")
    uri: str = Field(
        description="`storageUri`: file://path, a plain path to a file, or a folder holding one model file."
    )
    version: str | None = Field(default=None, description="Version reported by V2 metadata.")
    predict_proba: bool = Field(
        default=False,
        description="Reply with class probabilities (sklearn/xgboost/lightgbm), as KServe's PREDICT_PROBA.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="pytorch/onnx: CUDA when available under auto."
    )
    max_batch_size: int = Field(default=32, ge=1, description="Dynamic batching: most rows merged into one model call.")
    max_batch_wait_ms: float = Field(default=2.0, ge=0, description="Dynamic batching: longest wait for more requests.")
    dynamic_batching: bool = Field(default=True, description="pytorch: merge concurrent requests into one batch.")


class ServerSettings(BaseModel):
    """The model server process."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    models: list[ModelSettings] = Field(min_length=1)
    server_name: str = "infertap"
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1, description="Larger bodies get 413.")
    inference_service: str = Field(
        default="", description="Metrics label `inference_service` (the InferenceService name)."
    )
    component: str = Field(default="predictor", description="Metrics label `component`.")
    log_level: str = Field(default="info", description="Server log level (uvicorn's access log stays off).")
