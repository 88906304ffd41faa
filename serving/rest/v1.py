"""KServe V1 REST: liveness, model list and readiness, `:predict`."""

from __future__ import annotations

from time import perf_counter

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from infertap.serving.codec import (
    V1InputsBody,
    V1InstancesBody,
    V1PredictResponse,
    decode_v1_request,
    encode_v1_response,
)
from infertap.serving.errors import ModelNotReadyError
from infertap.serving.metrics import ServerMetrics
from infertap.serving.repository import ModelRepository
from infertap.serving.rest.body import decode_body, read_body
from infertap.serving.rest.metering import metered
from infertap.serving.rest.openapi import json_body, json_object, replies, served_names
from infertap.serving.settings import ServerSettings

JSON = "application/json"
SCHEMA_MODELS: list[type[BaseModel]] = [
    V1InstancesBody,
    V1InputsBody,
    V1PredictResponse,
]  # components install_openapi adds


def v1_router(settings: ServerSettings, repository: ModelRepository, metrics: ServerMetrics) -> APIRouter:
    """Routes of the V1 protocol, bound to one repository."""
    router = APIRouter(tags=["v1"])
    served = served_names(list(repository.runtimes))

    @router.get("/", responses=replies(json_object(status={"type": "string"})))
    async def alive() -> Response:
        return Response(b'{"status":"alive"}', media_type=JSON)

    @router.get("/v1/models", responses=replies(json_object(models={"type": "array", "items": {"type": "string"}})))
    async def list_models() -> Response:
        return Response(orjson.dumps({"models": list(repository.runtimes)}), media_type=JSON)

    ready_reply = replies(json_object(name={"type": "string"}, ready={"type": "boolean"}), 404, 503)

    @router.get("/v1/models/{name}", responses=ready_reply)
    async def model_ready(name: str = served()) -> Response:
        runtime = repository.find(name)
        if runtime is None:
            runtime = repository.get(name)  # raises the 404 with the served names
        if not runtime.ready:
            raise ModelNotReadyError(f"model {name!r} is not ready")
        return Response(orjson.dumps({"name": name, "ready": True}), media_type=JSON)

    @router.post(
        "/v1/models/{name}:predict",
        openapi_extra=json_body(V1InstancesBody, V1InputsBody),
        responses=replies(V1PredictResponse, 400, 404, 413, 503),
    )
    async def predict(request: Request, name: str = served()) -> Response:
        async def handle() -> Response:
            started = perf_counter()
            body = await read_body(request, settings.max_request_bytes)
            runtime = repository.get(name)
            decoded = await decode_body(decode_v1_request, body)
            if isinstance(decoded.instances, dict):
                inputs = decoded.instances
            else:
                inputs = {runtime.inputs[0].name if runtime.inputs else "input-0": decoded.instances}
            pre, pred, post = metrics.kserve.stages(name)  # KServe's request_*_seconds
            decoded_at = perf_counter()
            pre(decoded_at - started)
            outputs = await runtime.predict(inputs, proba=decoded.parameters.get("predict_proba"))
            predicted_at = perf_counter()
            pred(predicted_at - decoded_at)
            predictions = next(iter(outputs.values())) if len(outputs) == 1 else outputs
            reply = Response(encode_v1_response(predictions), media_type=JSON)
            post(perf_counter() - predicted_at)
            return reply

        return await metered(metrics, repository, name, "v1_predict", handle)

    return router
