"""KServe V1 REST: liveness, model list and readiness, `:predict`."""
from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from serving.codec import decode_v1_request, encode_v1_response
from serving.errors import ModelNotReadyError
from serving.metrics import ServerMetrics
from serving.repository import ModelRepository
from serving.rest.body import read_body
from serving.rest.metering import metered
from serving.settings import ServerSettings

JSON = "application/json"


def v1_router(settings: ServerSettings, repository: ModelRepository, metrics: ServerMetrics) -> APIRouter:
    """Routes of the V1 protocol, bound to one repository."""
    router = APIRouter(tags=["v1"])

    @router.get("/")
    async def alive() -> Response:
        return Response(b'{"status":"alive"}', media_type=JSON)

    @router.get("/v1/models")
    async def list_models() -> Response:
        return Response(orjson.dumps({"models": list(repository.runtimes)}), media_type=JSON)

    @router.get("/v1/models/{name}")
    async def model_ready(name: str) -> Response:
        runtime = repository.find(name)
        if runtime is None:
            repository.get(name)  # raises the 404 with the served names
        if not runtime.ready:
            raise ModelNotReadyError(f"model {name!r} is not ready")
        return Response(orjson.dumps({"name": name, "ready": True}), media_type=JSON)

    @router.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request) -> Response:
        async def handle() -> Response:
            body = await read_body(request, settings.max_request_bytes)
            runtime = repository.get(name)
            decoded = decode_v1_request(body)
            if isinstance(decoded.instances, dict):
                inputs = decoded.instances
            else:
                inputs = {runtime.inputs[0].name if runtime.inputs else "input-0": decoded.instances}
            outputs = await runtime.predict(inputs, proba=decoded.parameters.get("predict_proba"))
            predictions = next(iter(outputs.values())) if len(outputs) == 1 else outputs
            return Response(encode_v1_response(predictions), media_type=JSON)

        return await metered(metrics, repository, name, "v1_predict", handle)

    return router
