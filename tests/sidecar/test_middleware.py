"""The tap as ASGI middleware around an in-process app, served on a real port."""

from __future__ import annotations

import asyncio
import os
import uuid

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from tap_fixtures import CollectingDelivery, serve_app  # noqa: F401

from infertap.logger.events import REQUEST_TYPE, RESPONSE_TYPE, decode_metadata
from infertap.sidecar.middleware import InferenceLoggerMiddleware

pytestmark = pytest.mark.fast  # starts no process (make test-fast)

RELEASE: dict[str, asyncio.Event] = {}
STATE: dict[str, str] = {}


async def predict(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type=request.headers.get("content-type", "application/octet-stream"))


async def fail(request: Request) -> Response:
    return JSONResponse({"error": "bad input"}, status_code=422)


async def stream(request: Request) -> Response:
    token = request.path_params["token"]
    event = RELEASE.setdefault(token, asyncio.Event())
    STATE[token] = "waiting"

    async def chunks():
        yield b"data: first\n\n"
        await asyncio.wait_for(event.wait(), 60)
        yield b"data: second\n\n"
        STATE[token] = "finished"

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def release(request: Request) -> Response:
    RELEASE.setdefault(request.path_params["token"], asyncio.Event()).set()
    return JSONResponse({"state": STATE.get(request.path_params["token"])})


async def state(request: Request) -> Response:
    return JSONResponse({"state": STATE.get(request.path_params["token"], "unknown")})


def make_app():
    return Starlette(
        routes=[
            Route("/v2/models/m/infer", predict, methods=["POST"]),
            Route("/v1/models/m:predict", fail, methods=["POST"]),
            Route("/stream/{token}", stream),
            Route("/release/{token}", release, methods=["POST"]),
            Route("/state/{token}", state),
        ]
    )


def wrapped(serve_app, **config):
    delivery = CollectingDelivery()
    app = InferenceLoggerMiddleware(
        make_app(), delivery=delivery, inference_service="iris", component="predictor", **config
    )
    return serve_app(app).url, delivery


def test_middleware_logs_request_and_response_byte_exact(serve_app):
    url, d = wrapped(serve_app, metadata_headers=["x-request-id"])
    body = os.urandom(10_000)
    r = httpx.post(
        f"{url}/v2/models/m/infer",
        content=body,
        headers={
            "content-type": "application/octet-stream",
            "ce-id": "mw-1",
            "x-request-id": "r9",
            "authorization": "Bearer s3cret",
        },
    )
    assert r.content == body
    req, resp = d.wait(2)
    assert (req.get_type(), resp.get_type()) == (REQUEST_TYPE, RESPONSE_TYPE)
    assert req.get_id() == resp.get_id() == "mw-1"
    assert req.get_data() == body and resp.get_data() == body
    assert resp.get_extension("statuscode") == 200
    assert decode_metadata(req.get_extension("metadata")) == {"X-Request-Id": ["r9"]}
    assert "s3cret" not in str(req.get_attributes())
    assert req.get_extension("inferenceservicename") == "iris"


def test_middleware_logs_non_200_and_honours_mode_and_skip(serve_app):
    url, d = wrapped(serve_app, log_mode="response")
    assert httpx.post(f"{url}/v1/models/m:predict", json={}).status_code == 422
    httpx.post(f"{url}/v1/models/m:predict", json={}, headers={"infertap-skip-logging": "true"})
    httpx.post(f"{url}/v2/models/m/infer", content=b"last")
    events = d.wait(2)
    assert [e.get_type() for e in events] == [RESPONSE_TYPE, RESPONSE_TYPE]
    assert events[0].get_extension("statuscode") == 422 and events[1].get_data() == b"last"


def test_middleware_does_not_hold_back_streams(serve_app):
    url, d = wrapped(serve_app)
    token = uuid.uuid4().hex
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", f"{url}/stream/{token}") as r:
            chunks = r.iter_raw()
            first = next(chunks)
            assert client.get(f"{url}/state/{token}").json()["state"] == "waiting"
            client.post(f"{url}/release/{token}")
            rest = b"".join(chunks)
    assert first == b"data: first\n\n" and rest == b"data: second\n\n"
    resp = [e for e in d.wait(2) if e.get_type() == RESPONSE_TYPE]
    # /state and /release were logged too; the stream's response event carries the whole stream
    assert any(e.get_data() == first + rest for e in resp)
