"""A KServe-style custom transformer for the tests of `infertap up`: it scales V1 `instances`.

    python -m tests.stack.scale_transformer --model_name iris --predictor_host 127.0.0.1:9081 --http_port 8083 --scale 2

As a KServe transformer does, it takes the flags KServe's controller appends
(`--model_name`, `--predictor_host` as host:port, `--http_port`), answers
`POST /v1/models/{name}:predict` by calling the predictor's `:predict` with every value of
`instances` multiplied by `--scale`, and returns the predictor's answer with the header
`x-transformed-by: scale-transformer`. `GET /v1/models/{name}` is its readiness.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def app(model: str, predictor_host: str, scale: float) -> Starlette:
    base = predictor_host if "://" in predictor_host else f"http://{predictor_host}"
    client = httpx.AsyncClient(base_url=base, timeout=30)

    async def predict(request: Request) -> Response:
        name = request.path_params["name"]
        if name != model:
            return JSONResponse({"error": f"no model {name!r}"}, status_code=404)
        body = await request.json()
        scaled = {"instances": [[v * scale for v in row] for row in body["instances"]]}
        reply = await client.post(f"/v1/models/{name}:predict", json=scaled)
        return Response(
            reply.content,
            status_code=reply.status_code,
            media_type="application/json",
            headers={"x-transformed-by": "scale-transformer"},
        )

    async def ready(request: Request) -> Response:
        return JSONResponse({"name": model, "ready": True})

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(
        routes=[
            Route("/v1/models/{name}:predict", predict, methods=["POST"]),
            Route("/v1/models/{name}", ready, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--predictor_host", required=True)
    parser.add_argument("--http_port", type=int, default=8080)
    parser.add_argument("--scale", type=float, default=1.0)
    args, _ = parser.parse_known_args()  # as KServe's model server parser does
    uvicorn.run(
        app(args.model_name, args.predictor_host, args.scale),
        host="127.0.0.1",
        port=args.http_port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
