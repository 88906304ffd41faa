"""A scripted OpenAI-compatible upstream for the capture tests: what a real runtime rarely does
on purpose (tool-call deltas, broken chunks, no `[DONE]`, an endless stream) on demand.
Run: `python tests/sidecar/llm_upstream.py --port N`.

The request's `model` picks the script: `echo` (the last user message back, word by word:
so text the client sent comes back in the answer), `tools`, `broken-json`, `no-done`,
`slow` (a chunk every `INTERVAL_S`, 10,000 of them: a client leaves first), `cadence`
(`n` chunks every `interval` seconds, for the TTFT benchmark), `reject` (a 400 with an
OpenAI error object, as a runtime answers a request it cannot serve), `silent` (no answer
for `SILENT_S`: an upstream that never answers while a test looks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

INTERVAL_S = 0.02
SILENT_S = 60.0


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _words(body: dict) -> list[str]:
    if "messages" in body:
        text = body["messages"][-1]["content"]
    else:
        text = body.get("prompt", "")
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _usage(body: dict, n: int) -> dict:
    prompt = len(json.dumps(body.get("messages", body.get("prompt", ""))).split())
    return {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}


async def chat(request: Request) -> Response:
    body = await request.json()
    model = body.get("model", "echo")
    words = _words(body)
    created = int(time.time())
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": created, "model": model}
    if model == "silent":
        await asyncio.sleep(SILENT_S)
    if model == "reject":
        error = {"message": "this request cannot be served", "type": "invalid_request_error", "param": None}
        return JSONResponse({"error": {**error, "code": None}}, status_code=400)
    if not body.get("stream"):
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "".join(words)}, "finish_reason": "stop"}
                ],
                "usage": _usage(body, len(words)),
            }
        )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events():
        yield _sse({**head, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
        if model == "tools":
            pieces = [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
                {"index": 0, "function": {"arguments": '{"city": '}},
                {"index": 0, "function": {"arguments": '"Paris"}'}},
                {"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ]
            for piece in pieces:
                yield _sse({**head, "choices": [{"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": None}]})
            yield _sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        elif model in ("slow", "cadence"):
            n = int(request.query_params.get("n", "10000" if model == "slow" else "100"))
            interval = float(request.query_params.get("interval", str(INTERVAL_S)))
            for i in range(n):
                yield _sse({**head, "choices": [{"index": 0, "delta": {"content": f" t{i}"}, "finish_reason": None}]})
                await asyncio.sleep(interval)
            yield _sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        else:
            for i, word in enumerate(words):
                yield _sse({**head, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
                if model == "broken-json" and i == 0:
                    yield b'data: {"choices": [{"index": 0, "delta": {"content": "x"\n\n'
            yield _sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include_usage:
            yield _sse({**head, "choices": [], "usage": _usage(body, len(words))})
        if model != "no-done":
            yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def completions(request: Request) -> Response:
    body = await request.json()
    words = _words(body)
    head = {"id": "cmpl-1", "object": "text_completion", "created": int(time.time()), "model": body.get("model")}
    if not body.get("stream"):
        return JSONResponse(
            {
                **head,
                "choices": [{"index": 0, "text": "".join(words), "finish_reason": "stop", "logprobs": None}],
                "usage": _usage(body, len(words)),
            }
        )

    async def events():
        for word in words:
            yield _sse({**head, "choices": [{"index": 0, "text": word, "finish_reason": None, "logprobs": None}]})
        yield _sse({**head, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def ready(request: Request) -> Response:
    return JSONResponse({"ready": True})


ROUTES = [
    Route("/v2/health/ready", ready),
    *(Route(p + "chat/completions", chat, methods=["POST"]) for p in ("/openai/v1/", "/v1/")),
    *(Route(p + "completions", completions, methods=["POST"]) for p in ("/openai/v1/", "/v1/")),
]
app = Starlette(routes=ROUTES)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")
