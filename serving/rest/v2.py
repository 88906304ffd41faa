"""Open Inference Protocol (V2) REST: server and model metadata, health, `infer` (JSON and binary tensors)."""

from __future__ import annotations

from time import perf_counter

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from infertap.serving.codec import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ResponseOutput,
    ServerMetadata,
    datatype_of,
    decode_v2_request,
    encode_v2_response,
)
from infertap.serving.errors import InferenceError, ModelNotReadyError
from infertap.serving.metrics import ServerMetrics
from infertap.serving.repository import ModelRepository
from infertap.serving.rest.body import decode_body, header_length, read_body
from infertap.serving.rest.metering import metered
from infertap.serving.rest.openapi import BINARY_BODY, json_body, json_object, ref, replies, served_names
from infertap.serving.runtimes import Runtime
from infertap.serving.settings import ServerSettings

JSON = "application/json"
EXTENSIONS = ["binary_tensor_data"]
SCHEMA_MODELS: list[type[BaseModel]] = [
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ServerMetadata,
]  # components install_openapi adds
INFER_REPLY = {JSON: {"schema": ref(InferenceResponse)}, "application/octet-stream": {"schema": BINARY_BODY}}


def _json(obj) -> Response:
    return Response(orjson.dumps(obj), media_type=JSON)


def v2_router(settings: ServerSettings, repository: ModelRepository, metrics: ServerMetrics, version: str) -> APIRouter:
    """Routes of the V2 protocol, bound to one repository."""
    router = APIRouter(prefix="/v2", tags=["v2"])
    server_metadata = ServerMetadata(name=settings.server_name, version=version, extensions=EXTENSIONS).model_dump()
    served = served_names(list(repository.runtimes))

    @router.get("", responses=replies(ServerMetadata))
    async def metadata() -> Response:
        return _json(server_metadata)

    @router.get("/health/live", responses=replies(json_object(live={"type": "boolean"})))
    async def live() -> Response:
        return _json({"live": True})

    @router.get("/health/ready", responses=replies(json_object(ready={"type": "boolean"}), 503))
    async def ready() -> Response:
        if not repository.ready:
            waiting = [n for n, r in repository.runtimes.items() if not r.ready]
            raise ModelNotReadyError(f"models not ready: {', '.join(waiting)}")
        return _json({"ready": True})

    # Each versioned path has its own handler: sharing one would make `model_version` a query
    # parameter of the plain paths (`?model_version=`), which no V2 client sends.
    meta_reply = replies(ModelMetadata, 404, 503)

    @router.get("/models/{name}", responses=meta_reply)
    async def model_metadata(name: str = served()) -> Response:
        return _json(repository.get(name).metadata().model_dump(exclude_none=True))

    @router.get("/models/{name}/versions/{model_version}", responses=meta_reply)
    async def model_version_metadata(model_version: str, name: str = served()) -> Response:
        return _json(repository.get(name, model_version).metadata().model_dump(exclude_none=True))

    ready_reply = replies(json_object(name={"type": "string"}, ready={"type": "boolean"}), 404, 503)

    @router.get("/models/{name}/ready", responses=ready_reply)
    async def model_ready(name: str = served()) -> Response:
        repository.get(name)
        return _json({"name": name, "ready": True})

    @router.get("/models/{name}/versions/{model_version}/ready", responses=ready_reply)
    async def model_version_ready(model_version: str, name: str = served()) -> Response:
        repository.get(name, model_version)
        return _json({"name": name, "ready": True})

    body = json_body(InferenceRequest, binary=True)
    infer_reply = replies(INFER_REPLY, 400, 404, 413, 503)

    async def infer_any(request: Request, name: str, model_version: str | None) -> Response:
        async def handle() -> Response:
            started = perf_counter()
            body = await read_body(request, settings.max_request_bytes)
            runtime = repository.get(name, model_version)
            decoded = await decode_body(decode_v2_request, body, header_length(request))
            stages = metrics.kserve.stages(name)  # KServe's request_*_seconds
            return await _infer(runtime, decoded, stages, started)

        return await metered(metrics, repository, name, "v2_infer", handle)

    @router.post("/models/{name}/infer", openapi_extra=body, responses=infer_reply)
    async def infer(request: Request, name: str = served()) -> Response:
        return await infer_any(request, name, None)

    @router.post("/models/{name}/versions/{model_version}/infer", openapi_extra=body, responses=infer_reply)
    async def infer_version(request: Request, model_version: str, name: str = served()) -> Response:
        return await infer_any(request, name, model_version)

    return router


async def _infer(
    runtime: Runtime, request: InferenceRequest, stages: tuple | None = None, started: float = 0.0
) -> Response:
    """`stages`: KServe's (preprocess, predict, postprocess) observers, timed from `started`."""
    inputs = {}
    for tensor in request.inputs:
        if tensor.name in inputs:
            raise InferenceError(f"input {tensor.name!r} appears twice")
        inputs[tensor.name] = tensor.data
    proba = (request.parameters or {}).get("predict_proba")
    decoded_at = perf_counter()
    if stages is not None:
        stages[0](decoded_at - started)
    outputs = await runtime.predict(inputs, proba=None if proba is None else bool(proba))
    predicted_at = perf_counter()
    if stages is not None:
        stages[1](predicted_at - decoded_at)
    if request.outputs:
        missing = [o.name for o in request.outputs if o.name not in outputs]
        if missing:
            raise InferenceError(f"model {runtime.name!r} has no output {missing[0]!r}; outputs: {', '.join(outputs)}")
        outputs = {o.name: outputs[o.name] for o in request.outputs}
    # model_construct: the arrays were produced here, pydantic need not look at them again.
    response = InferenceResponse.model_construct(
        model_name=runtime.name,
        model_version=runtime.settings.version,
        id=request.id,
        parameters=None,
        outputs=[
            ResponseOutput.model_construct(
                name=n, shape=list(a.shape), datatype=datatype_of(a), parameters=None, data=a
            )
            for n, a in outputs.items()
        ],
    )
    body, headers = encode_v2_response(response, request)
    reply = Response(body, headers=headers)
    if stages is not None:
        stages[2](perf_counter() - predicted_at)
    return reply
