"""A small model-server stand-in for the tap tests: echo, any status, streams that wait for a
signal, SSE, slow answers. Run: `python tests/sidecar/tap_upstream.py --port N --name model`.

`GET /stream/{token}` sends its first chunk, then waits until `POST /release/{token}` before
sending the rest; `GET /state/{token}` says "waiting" or "finished". A test that gets the
first chunk through a proxy while the state is still "waiting" has proven the proxy passes
chunks on as they are produced, with no clock involved.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

NAME = "model"
RELEASE: dict[str, asyncio.Event] = {}
STATE: dict[str, str] = {}


def _release(token: str) -> asyncio.Event:
    return RELEASE.setdefault(token, asyncio.Event())


async def echo(request: Request) -> Response:
    """The request body back, byte for byte, with the request's content type."""
    body = await request.body()
    seen = {
        "method": request.method,
        "path": request.scope["raw_path"].decode(),
        "query": request.scope["query_string"].decode(),
        "peer_port": request.scope["client"][1],
    }
    headers = {"x-upstream": NAME, "x-seen": json.dumps(seen)}
    return Response(
        body,
        status_code=200,
        headers=headers,
        media_type=request.headers.get("content-type", "application/octet-stream"),
    )


async def headers(request: Request) -> Response:
    return JSONResponse(
        {"headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]]}, headers={"x-upstream": NAME}
    )


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    await request.body()
    return JSONResponse({"error": f"status {code}"}, status_code=code, headers={"x-upstream": NAME})


async def stream(request: Request) -> Response:
    token = request.path_params["token"]
    n = int(request.query_params.get("n", "3"))
    sse = request.query_params.get("sse") == "1"
    event = _release(token)
    STATE[token] = "waiting"

    async def chunks():
        for i in range(n):
            yield (f"data: chunk-{i}\n\n" if sse else f"chunk-{i}\n").encode()
            if i == 0:
                try:
                    await asyncio.wait_for(event.wait(), 60)
                except TimeoutError:
                    STATE[token] = "timed-out"
                    return
        STATE[token] = "finished"

    return StreamingResponse(
        chunks(), media_type="text/event-stream" if sse else "text/plain", headers={"x-upstream": NAME}
    )


async def release(request: Request) -> Response:
    _release(request.path_params["token"]).set()
    return JSONResponse({"released": True})


async def state(request: Request) -> Response:
    return JSONResponse({"state": STATE.get(request.path_params["token"], "unknown")})


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("s", "5")))
    return JSONResponse({"slow": True})


async def ready(request: Request) -> Response:
    return JSONResponse({"ready": True, "upstream": NAME}, headers={"x-upstream": NAME})


async def metrics(request: Request) -> Response:
    return Response("upstream_requests_total 1\n", media_type="text/plain", headers={"x-upstream": NAME})


app = Starlette(
    routes=[
        Route("/v2/health/ready", ready),
        Route("/metrics", metrics),
        Route("/headers", headers, methods=["GET", "POST"]),
        Route("/status/{code:int}", status, methods=["GET", "POST"]),
        Route("/stream/{token}", stream, methods=["GET", "POST"]),
        Route("/release/{token}", release, methods=["POST"]),
        Route("/state/{token}", state),
        Route("/slow", slow, methods=["GET", "POST"]),
        Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", default="model")
    a = p.parse_args()
    NAME = a.name
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")
