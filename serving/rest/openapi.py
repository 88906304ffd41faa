"""OpenAPI for routes that read raw request bodies: request and response schemas from the codec's models.

The inference routes read `Request` bodies themselves (one orjson parse, tensors straight to
numpy), so FastAPI sees no body parameter and would document none. Routes declare their
bodies here instead (`openapi_extra`, `responses`) with `$ref`s to `#/components/schemas/`,
and `install_openapi` adds those components: the document describes what is accepted while
parsing stays as it was. Used by the model server and the explainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Path
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from infertap.serving.codec import HEADER_LENGTH, ModelMetadata
from infertap.serving.codec.datatypes import element_count

REF = "#/components/schemas/{model}"
BINARY_BODY = {
    "type": "string",
    "format": "binary",
    "description": f"V2 binary tensor extension: a JSON header of `{HEADER_LENGTH}` bytes, then the raw tensors.",
}


_ERRORS = {
    400: "malformed body or inputs that do not fit the model",
    401: "missing or wrong bearer token",
    404: "no such model (or version)",
    413: "body over the size limit",
    502: "the predictor failed",
    503: "not ready yet",
    504: "past the deadline",
}


class ErrorBody(BaseModel):
    """Every error reply: one sentence saying what was wrong."""

    error: str


def ref(model: type[BaseModel]) -> dict[str, str]:
    """A `$ref` to `model`'s schema among the components."""
    return {"$ref": REF.format(model=model.__name__)}


def json_body(*models: type[BaseModel], binary: bool = False) -> dict[str, Any]:
    """`openapi_extra` declaring a required JSON body of one of `models` (and octet-stream with `binary`)."""
    schema = ref(models[0]) if len(models) == 1 else {"oneOf": [ref(m) for m in models]}
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if binary:
        content["application/octet-stream"] = {"schema": BINARY_BODY}
    extra: dict[str, Any] = {"requestBody": {"required": True, "content": content}}
    if binary:
        extra["parameters"] = [
            {
                "name": HEADER_LENGTH,
                "in": "header",
                "required": False,
                "description": "Length of the JSON header of a binary-extension body.",
                "schema": {"type": "integer", "minimum": 0},
            }
        ]
    return extra


def json_object(**properties: dict[str, Any]) -> dict[str, Any]:
    """A `content` for a small JSON object of required `properties` (name -> JSON schema)."""
    return {"application/json": {"schema": {"type": "object", "properties": properties, "required": list(properties)}}}


def replies(ok: type[BaseModel] | dict[str, Any] | None, *errors: int) -> dict:
    """`responses` for a route: the 200 body (a model or a content dict) and `{"error"}` bodies for `errors`."""
    out: dict[int | str, Any] = {}
    if isinstance(ok, dict):
        out[200] = {"description": "OK", "content": ok}
    elif ok is not None:
        out[200] = {"description": "OK", "content": {"application/json": {"schema": ref(ok)}}}
    for status in errors:
        out[status] = {
            "description": _ERRORS.get(status, "error"),
            "content": {"application/json": {"schema": ref(ErrorBody)}},
        }
    return out


def served_names(names: list[str]) -> Callable[..., Any]:
    """Path parameters documented as `enum` of the names this process serves (any other gets 404),
    so the document is exact and a fuzzer reaches the models; validation stays with the handler."""
    return lambda: Path(json_schema_extra={"enum": list(names)})


def install_openapi(
    app: FastAPI, models: list[type[BaseModel]], extend: Callable[[dict[str, Any]], None] | None = None
) -> None:
    """Serve `app.openapi()` with `models` (and ErrorBody) as components; `extend` may then edit it.

    Built at the first request for it (after the lifespan loaded the models, so `extend`
    can describe them). FastAPI's 422 "Validation Error" entries are dropped: the error
    handlers answer validation failures 400 `{"error": ...}`, which the routes document.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _drop_422(schema)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            for name, definition in _definitions([ErrorBody, *models]).items():
                components.setdefault(name, definition)
            if extend is not None:
                extend(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _definitions(models: list[type[BaseModel]]) -> dict[str, Any]:
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return top.get("$defs", {})


def _drop_422(schema: dict[str, Any]) -> None:
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)


def example_bodies(metadata: ModelMetadata) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(V1, V2) request bodies of one all-zero instance that fit a model's input metadata.

    V1 only for single-input models (rows of one tensor); BYTES inputs get empty strings.
    """
    tensors = []
    for tensor in metadata.inputs:
        shape = [1] + [max(d, 1) for d in tensor.shape[1:]]
        zero: Any = "" if tensor.datatype == "BYTES" else False if tensor.datatype == "BOOL" else 0
        tensors.append(
            {"name": tensor.name, "shape": shape, "datatype": tensor.datatype, "data": [zero] * element_count(shape)}
        )
    v1 = {"instances": _filled(tensors[0]["data"][0], tensors[0]["shape"])} if len(tensors) == 1 else None
    return v1, {"inputs": tensors}


def _filled(value: Any, shape: Sequence[int]) -> Any:
    return value if not shape else [_filled(value, shape[1:]) for _ in range(shape[0])]


def set_example(
    schema: dict[str, Any], path: str, method: str, body: dict[str, Any] | None, params: dict[str, str]
) -> None:
    """Give an operation an example JSON body (when it takes one) and example path parameters."""
    operation = schema.get("paths", {}).get(path, {}).get(method)
    if operation is None:
        return
    if body is not None and "requestBody" in operation:
        operation["requestBody"]["content"]["application/json"]["example"] = body
    for param in operation.get("parameters", []):
        if param["in"] == "path" and param["name"] in params:
            param["example"] = params[param["name"]]
