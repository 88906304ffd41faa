"""Failures as OpenAI's error body `{"error": {"message", "type", "param", "code"}}` with OpenAI's statuses."""

from __future__ import annotations

import logging

import orjson
from pydantic import ValidationError
from starlette.responses import Response

from infertap.serving.codec import CodecError
from infertap.serving.errors import InferenceError, ModelNotFoundError, ModelNotReadyError, RequestTooLargeError
from infertap.serving.runtimes.huggingface import PromptTooLongError

log = logging.getLogger("infertap.serving")


class OpenAIError(Exception):
    """An error reply: HTTP status and the four fields of OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        return Response(orjson.dumps(self.body()), status_code=self.status, media_type="application/json")


def unsupported(param: str, what: str) -> OpenAIError:
    return OpenAIError(
        400, f"{what} is not supported by infertap's huggingface runtime", param=param, code="unsupported_parameter"
    )


def model_not_found(name: str) -> OpenAIError:
    return OpenAIError(404, f"The model `{name}` does not exist.", param="model", code="model_not_found")


def _loc(loc: tuple) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif not parts:
            parts.append(str(part))
        elif part in ("str", "list[str]", "list[int]", "list[list[int]]", "list[ContentPart]") or "[" in str(part):
            continue  # pydantic's union-member labels, not a field
        else:
            parts.append(f".{part}")
    return "".join(parts)


def from_validation(err: ValidationError) -> OpenAIError:
    """The first problem of a request body, with its field as `param` (OpenAI names one parameter)."""
    first = err.errors()[0]
    param = _loc(tuple(first["loc"]))
    if first["type"] == "missing":
        return OpenAIError(
            400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    kind = (
        "invalid_type"
        if first["type"].endswith(("_type", "_parsing")) or first["type"] in ("model_type", "list_type", "dict_type")
        else "invalid_value"
    )
    more = f" ({len(err.errors()) - 1} more problems)" if len(err.errors()) > 1 else ""
    return OpenAIError(400, f"Invalid value for '{param}': {first['msg']}.{more}", param=param, code=kind)


def from_exception(err: BaseException) -> OpenAIError:
    """Map the serving layer's errors (and anything unexpected) to OpenAI's statuses."""
    if isinstance(err, OpenAIError):
        return err
    if isinstance(err, ValidationError):
        return from_validation(err)
    if isinstance(err, RequestTooLargeError):
        return OpenAIError(413, str(err), code="request_too_large")
    if isinstance(err, PromptTooLongError):
        return OpenAIError(400, str(err), param=err.param, code="context_length_exceeded")
    if isinstance(err, (InferenceError, CodecError)):
        return OpenAIError(400, str(err))
    if isinstance(err, ModelNotFoundError):
        return OpenAIError(404, str(err), param="model", code="model_not_found")
    if isinstance(err, ModelNotReadyError):
        return OpenAIError(503, str(err), type="server_error", code="model_not_ready")
    log.error("unexpected error in an OpenAI endpoint: %s: %s", type(err).__name__, err, exc_info=err)
    return OpenAIError(500, f"internal error: {type(err).__name__}: {err}", type="server_error")
