"""A scripted OpenAI-compatible upstream for the LLM benchmarks (a tool module, not a benchmark).

`POST /v1/chat/completions` (and `/openai/v1/chat/completions`) with `"stream": true` answers
as vLLM does: the response head at once (uvicorn writes it when the handler starts the
response), then, after `--first-token-ms` (the prefill), a role chunk and the first content
chunk, then one `chat.completion.chunk` per token every `--interval-ms`, a finish chunk, a
usage chunk when `stream_options.include_usage` is set, and `data: [DONE]`. One SSE event per
HTTP chunk, one write each (`transfer-encoding: chunked`, as uvicorn sends a
StreamingResponse). `max_tokens` of the request is the number of content chunks; the query's
`first_token_ms` and `interval_ms` override the flags for one request (the path stays an
OpenAI one, so the sidecar captures it as any other). Without
`"stream": true` the same answer comes as one `chat.completion` object.
`GET /v2/health/ready` answers 200.

Why not tests/sidecar/llm_upstream.py (Starlette on uvicorn): on a 2-core machine the
upstream's cost per chunk is taken from the proxies being measured, and a token cadence is
only as steady as the upstream's timers. This one is asyncio streams and bytes built once
per request; it runs on the standard asyncio loop, not uvloop: libuv keeps its clock in whole
milliseconds, so a 5 ms `sleep` there lasts anywhere from 4 to 6 ms, while the selector loop's
`epoll_wait` times out a whole number of milliseconds after *now* (the prefill then lasts
5.0x ms whatever the arrival's phase), which keeps that jitter out of the TTFT figures.

The first content chunk carries `x_bench`: when the request had come in and when that chunk
was written (`perf_counter`, the machine's monotonic clock, which the client reads too), so
the client splits its time to first token into the request's way in and the token's way out.

The token text is English-like words with a number now and then, so that redaction's digit
rules (card, IBAN, phone, IPv4) scan the reassembled answer as they would a real one.

    python -m benchmarks.sse_upstream --port 8000 [--first-token-ms 5] [--interval-ms 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import time

WORDS = (
    "the model answers with a short list of steps to reproduce the result and then checks each "
    "value against the reference table before it writes the summary for the report in section"
).split()

MAX_TOKENS = 100_000
MAX_BODY = 1 << 20
_DONE = b"data: [DONE]\n\n"


def token_text(i: int) -> str:
    """The i-th token: a word with its leading space, every 97th a number."""
    return f" {1000 + i}" if i % 97 == 96 else " " + WORDS[i % len(WORDS)]


def _chunk(obj: object) -> bytes:
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%b\r\n" % (len(data), data)


class Script:
    """The bytes of one answer, built before its first token is due."""

    def __init__(self, model: str, tokens: int, include_usage: bool, prompt_tokens: int, seq: int):
        self.head = {"id": f"chatcmpl-bench{seq}", "object": "chat.completion.chunk", "created": int(time.time())}
        self.head["model"] = model
        self.tokens, self.include_usage, self.prompt_tokens = tokens, include_usage, prompt_tokens

    def choice(self, delta: dict, finish: str | None = None) -> dict:
        return {**self.head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def role(self) -> bytes:
        return _chunk(self.choice({"role": "assistant", "content": ""}))

    def token(self, i: int, stamps: tuple[float, float] | None = None) -> bytes:
        """The i-th token's chunk; `stamps` (the first token's): when the request had come and
        when this chunk is written, as `x_bench` (`perf_counter`, CLOCK_MONOTONIC: the client's
        clock too), so that the client can tell the request's way in from the token's way out."""
        chunk = self.choice({"content": token_text(i)})
        if stamps is not None:
            chunk["x_bench"] = [round(stamps[0], 7), round(stamps[1], 7)]
        return _chunk(chunk)

    def tail(self) -> bytes:
        out = _chunk(self.choice({}, "length"))
        if self.include_usage:
            usage = {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.tokens,
                "total_tokens": self.prompt_tokens + self.tokens,
            }
            out += _chunk({**self.head, "choices": [], "usage": usage})
        return out + b"%x\r\n%b\r\n0\r\n\r\n" % (len(_DONE), _DONE)

    def whole(self) -> bytes:
        text = "".join(token_text(i) for i in range(self.tokens))
        body = {
            **self.head,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.tokens,
                "total_tokens": self.prompt_tokens + self.tokens,
            },
        }
        return json.dumps(body, separators=(",", ":")).encode()


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _reply(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"")
    return b"HTTP/1.1 %d %b\r\ncontent-type: %b\r\ncontent-length: %d\r\n\r\n%b" % (
        status,
        reason,
        content_type,
        len(body),
        body,
    )


class Upstream:
    def __init__(self, first_token_s: float, interval_s: float):
        self.first_token_s, self.interval_s = first_token_s, interval_s
        self.seq = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.partition(b"\r\n")
                method, target = line.split(b" ", 2)[:2]
                length = 0
                for h in rest.lower().split(b"\r\n"):
                    if h.startswith(b"content-length:"):
                        length = int(h.split(b":", 1)[1])
                if length > MAX_BODY:
                    writer.write(_reply(400, b'{"error":"body too large"}'))
                    return
                body = await reader.readexactly(length) if length else b""
                path = target.split(b"?", 1)[0]
                if method == b"GET" and path in (b"/v2/health/ready", b"/health"):
                    writer.write(_reply(200, b'{"ready":true}'))
                elif method == b"POST" and path in (b"/v1/chat/completions", b"/openai/v1/chat/completions"):
                    await self.chat(body, writer, _query(target))
                else:
                    writer.write(_reply(404, b'{"error":"not found"}'))
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def chat(self, body: bytes, writer: asyncio.StreamWriter, query: dict[str, float]) -> None:
        """One answer; the query's `first_token_ms` and `interval_ms` override the defaults."""
        started = time.perf_counter()
        first_token_s = query.get("first_token_ms", self.first_token_s * 1e3) / 1e3
        interval_s = query.get("interval_ms", self.interval_s * 1e3) / 1e3
        try:
            request = json.loads(body)
            tokens = int(request.get("max_tokens") or 16)
        except (ValueError, TypeError, AttributeError):
            writer.write(_reply(400, b'{"error":"bad request"}'))
            return
        tokens = max(1, min(tokens, MAX_TOKENS))
        self.seq += 1
        prompt_tokens = len(json.dumps(request.get("messages", "")).split())
        script = Script(str(request.get("model", "bench")), tokens, _include_usage(request), prompt_tokens, self.seq)
        if not request.get("stream"):
            await asyncio.sleep(first_token_s + interval_s * (tokens - 1))
            writer.write(_reply(200, script.whole()))
            return
        writer.write(STREAM_HEAD)
        transport = writer.transport
        first = started + first_token_s
        for i in range(tokens):
            chunk = script.token(i)  # built before it is due
            delay = first + i * interval_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if transport.is_closing():
                return
            if i == 0:
                writer.write(script.role())
                chunk = script.token(0, (started, time.perf_counter()))
            writer.write(chunk)
            if transport.get_write_buffer_size() > 1 << 16:
                await writer.drain()
        writer.write(script.tail())
        await writer.drain()


def _query(target: bytes) -> dict[str, float]:
    """`first_token_ms` and `interval_ms` from a request target's query (others ignored)."""
    out: dict[str, float] = {}
    _, _, query = target.partition(b"?")
    for item in query.decode("latin-1").split("&"):
        name, _, value = item.partition("=")
        if name in ("first_token_ms", "interval_ms"):
            try:
                number = float(value)
            except ValueError:
                continue
            if math.isfinite(number):
                out[name] = min(max(number, 0.0), 60_000.0)
    return out


def _include_usage(request: dict) -> bool:
    options = request.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


async def serve(port: int, first_token_s: float, interval_s: float) -> None:
    upstream = Upstream(first_token_s, interval_s)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--first-token-ms", type=float, default=5.0, help="prefill: request to first token")
    p.add_argument("--interval-ms", type=float, default=1.0, help="between tokens")
    a = p.parse_args(argv)
    asyncio.run(serve(a.port, a.first_token_ms / 1e3, a.interval_ms / 1e3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
