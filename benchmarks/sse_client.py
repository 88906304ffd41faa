"""A streaming chat-completions client for the LLM benchmarks (a tool module, not a benchmark).

One keep-alive HTTP/1.1 connection per `StreamConnection` (as the `openai` client pools
them), the response parsed by httptools (C) as it arrives: the client runs on the same
2-core machine as the proxies it measures, so it does next to nothing per chunk (one
substring count). Timings are `perf_counter` at the client: from just before the request is
written to the read that brought the first content chunk (time to first token, TTFT) and to
the end of the response.

A content chunk is recognised by `"delta":{"content":` (how `benchmarks.sse_upstream` and vLLM
write a token's chunk; the role chunk is `"delta":{"role":...`). The bytes are the same on
every path (neither proxy rewrites a body), so every path is timed by the same test.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

CONTENT_MARK = b'"delta":{"content":'
DONE_MARK = b"data: [DONE]"
STAMPS = re.compile(rb'"x_bench":\[([0-9.eE+-]+),([0-9.eE+-]+)\]')  # `benchmarks.sse_upstream`'s first token
PROMPT = [
    {"role": "system", "content": "You are a careful assistant. Answer in plain English, in short sentences."},
    {
        "role": "user",
        "content": "List the steps to reproduce the benchmark in section 4 of the report, and check each value "
        "against the reference table before you write the summary.",
    },
]


@dataclass
class StreamResult:
    """One streamed completion as the client saw it."""

    status: int
    ttft_s: float | None  # request written -> first content chunk read (None: none came)
    total_s: float  # request written -> end of the response
    content_chunks: int  # chunks carrying a token
    done: bool  # `data: [DONE]` seen
    reads: int  # socket reads that brought body bytes (how the chunks were coalesced on the way)
    body_bytes: int
    error: str | None = None
    request_leg_s: float | None = None  # request written -> upstream had it (None: no `x_bench` stamps)
    token_leg_s: float | None = None  # upstream wrote the first token -> client read it

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200 and self.done and self.ttft_s is not None


def chat_request(url: str, tokens: int, model: str = "bench-llm", include_usage: bool = True) -> bytes:
    """The bytes of one streamed chat-completions request to `url` (http://host:port/path)."""
    parts = urlsplit(url)
    body: dict = {"model": model, "messages": PROMPT, "stream": True, "max_tokens": tokens}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    payload = json.dumps(body, separators=(",", ":")).encode()
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nhost: {parts.hostname}:{parts.port}\r\nuser-agent: infertap-bench\r\n"
        f"content-type: application/json\r\naccept: text/event-stream\r\ncontent-length: {len(payload)}\r\n\r\n"
    )
    return head.encode("latin-1") + payload


class StreamConnection(asyncio.Protocol):
    """One connection; `await stream(request)` sends a request and reads its streamed answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[StreamResult] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._closed = asyncio.get_running_loop().create_future()
        self._reset()

    def _reset(self) -> None:
        self._t0 = 0.0
        self._first: float | None = None
        self._stamps: tuple[float, float] | None = None
        self._stamp_text: bytes | None = None
        self._chunks = 0
        self._done = False
        self._reads = 0
        self._bytes = 0
        self._carry = b""
        self._in_body = False

    @classmethod
    async def open(cls, host: str, port: int) -> StreamConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, host, port)
        return conn

    async def stream(self, request: bytes, timeout_s: float = 60.0) -> StreamResult:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed")
        self._reset()
        self._parser = httptools.HttpResponseParser(self)
        self._waiter = asyncio.get_running_loop().create_future()
        self._t0 = time.perf_counter()
        self.transport.write(request)
        try:
            return await asyncio.wait_for(self._waiter, timeout_s)
        except TimeoutError:
            self.close()
            return self._result(0, "timeout")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            return
        self._in_body = False
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(f"bad HTTP: {exc}")
            self.close()
            return
        if self._in_body:
            self._reads += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost: {exc}")
        if not self._closed.done():
            self._closed.set_result(None)

    # -- httptools callbacks --
    def on_body(self, body: bytes) -> None:
        self._in_body = True
        self._bytes += len(body)
        text = self._carry + body if self._carry else body
        n = text.count(CONTENT_MARK)
        if n:
            if self._first is None:
                self._first = time.perf_counter()
                self._stamp_text = text[text.find(CONTENT_MARK) :]  # the first token's chunk, maybe in parts
            self._chunks += n
        elif self._stamp_text is not None:
            self._stamp_text += body
        if self._stamp_text is not None and self._stamps is None:
            m = STAMPS.search(self._stamp_text)
            if m is not None:
                self._stamps = (float(m.group(1)), float(m.group(2)))
            if m is not None or b"\n\n" in self._stamp_text or len(self._stamp_text) > 4096:
                self._stamp_text = None  # found, or that chunk had none
        if not self._done and DONE_MARK in text:
            self._done = True
        self._carry = text[-(len(CONTENT_MARK) - 1) :]

    def on_message_complete(self) -> None:
        self._finish(None)

    def _status(self) -> int:
        try:
            return self._parser.get_status_code() if self._parser is not None else 0
        except httptools.HttpParserError:
            return 0

    def _result(self, status: int, error: str | None) -> StreamResult:
        end = time.perf_counter()
        return StreamResult(
            status=status,
            ttft_s=None if self._first is None else self._first - self._t0,
            total_s=end - self._t0,
            content_chunks=self._chunks,
            done=self._done,
            reads=self._reads,
            body_bytes=self._bytes,
            error=error,
            request_leg_s=None if self._stamps is None else self._stamps[0] - self._t0,
            token_leg_s=None if self._stamps is None or self._first is None else self._first - self._stamps[1],
        )

    def _finish(self, error: str | None) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        self._waiter = None
        waiter.set_result(self._result(self._status(), error))


async def run_streams(url: str, request: bytes, n: int, concurrency: int) -> list[StreamResult]:
    """`n` streamed completions to `url`, `concurrency` at a time (one connection each)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    results: list[StreamResult] = []
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        conn: StreamConnection | None = None
        try:
            while remaining > 0:
                remaining -= 1
                if conn is None or conn.transport is None or conn.transport.is_closing():
                    conn = await StreamConnection.open(host, port)
                results.append(await conn.stream(request))
        finally:
            if conn is not None:
                conn.close()

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, n)))))
    return results
