"""KServe V1 (TF-Serving style) payloads: `{"instances": [...]}` or `{"inputs": ...}` in, `{"predictions": ...}` out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, Field

from infertap.serving.codec.errors import CodecError

_DUMP = orjson.OPT_SERIALIZE_NUMPY


@dataclass
class V1Request:
    """A decoded V1 request: one batch array, or named arrays for the columnar `inputs` form."""

    instances: np.ndarray | dict[str, np.ndarray]
    parameters: dict[str, Any] = field(default_factory=dict)


class V1InstancesBody(BaseModel):
    """V1 predict body in row format: `{"instances": [[...], ...]}` (schema only; `decode_v1_request` reads bodies)."""

    instances: list[Any] = Field(min_length=1, description="Rows: lists of numbers or strings, one per instance.")
    parameters: dict[str, Any] | None = Field(default=None, description="e.g. `predict_proba`.")


class V1InputsBody(BaseModel):
    """V1 predict body in columnar format: `{"inputs": [...]}` or `{"inputs": {"name": [...]}}` (schema only)."""

    inputs: list[Any] | dict[str, list[Any]] = Field(description="Rows, or named columns for multi-input models.")
    parameters: dict[str, Any] | None = None


class V1PredictResponse(BaseModel):
    """V1 predict reply: one prediction per instance, or named outputs."""

    predictions: list[Any] | dict[str, Any]


def decode_v1_request(body: bytes) -> V1Request:
    """Parse a V1 predict body. `instances` (row format) or `inputs` (list, or dict of named columns)."""
    obj = _loads(body, "request")
    if not isinstance(obj, dict):
        raise CodecError(f"V1 request must be a JSON object, got {type(obj).__name__}")
    has_instances, has_inputs = "instances" in obj, "inputs" in obj
    if has_instances == has_inputs:
        raise CodecError('V1 request needs exactly one of "instances" or "inputs"')
    key = "instances" if has_instances else "inputs"
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise CodecError('"parameters" must be a JSON object')
    value = obj[key]
    if key == "inputs" and isinstance(value, dict):
        return V1Request({name: _array(col, f"inputs.{name}") for name, col in value.items()}, params)
    if not isinstance(value, list):
        raise CodecError(f'"{key}" must be a list, got {type(value).__name__}')
    return V1Request(_array(value, key), params)


def _array(value: Any, where: str) -> np.ndarray:
    if isinstance(value, list) and not value:
        raise CodecError(f'"{where}" is empty')
    if isinstance(value, list) and isinstance(value[0], dict):
        raise CodecError(
            f'"{where}" holds objects; send rows as lists of numbers (named columns: "inputs": {{"name": [...]}})'
        )
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise CodecError(f'"{where}" is not a rectangular array: {err}') from None
    if array.dtype == object:
        raise CodecError(f'"{where}" is not a rectangular array of numbers or strings')
    return array


def encode_v1_response(predictions: np.ndarray | dict[str, np.ndarray] | list) -> bytes:
    """`{"predictions": ...}` with numpy arrays written natively by orjson."""
    return orjson.dumps({"predictions": _jsonable(predictions)}, option=_DUMP)


def decode_v1_response(body: bytes) -> np.ndarray | dict[str, np.ndarray]:
    """Read a V1 reply (e.g. a logged one) back into numpy."""
    obj = _loads(body, "response")
    if not isinstance(obj, dict) or "predictions" not in obj:
        raise CodecError('V1 response must be a JSON object with "predictions"')
    preds = obj["predictions"]
    if isinstance(preds, dict):
        return {name: np.asarray(v) for name, v in preds.items()}
    return np.asarray(preds)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            return [v.decode() if isinstance(v, bytes) else v for v in value.tolist()]
        return np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("="))
    return value


def _loads(body: bytes, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise CodecError(f"{what} body is not valid JSON: {err}") from None
