"""A lean pooled HTTP/1.1 client for the sidecar's hop to the model server.

Why not httpx here: profiling the sidecar under load showed about two thirds of its CPU in
the httpx/httpcore/anyio stack (per-request pool scans, cancellation shields, a failing
`import sniffio` on every call). This client is an `asyncio.Protocol` with the httptools
parser (already installed with `uvicorn[standard]`): one `write` per request, body chunks
handed over as they arrive, keep-alive connections reused LIFO. It speaks only what the
proxy needs: plain `http://`, requests with a complete body, any response framing
(Content-Length, chunked, close-delimited). HEAD requests and `https://` explainers go
through httpx in `logger.proxy`.

Keep-alive races: a model server closes idle connections (uvicorn after its
`timeout_keep_alive`, 5 s by default), and a request written to a connection as the server
closes it gets a reset and no answer. Two defences, so that such a race never reaches the
client as a 502: connections idle longer than `keepalive_expiry` (below the server's
timeout) are closed instead of reused, and a request whose *reused* connection broke before
a single byte of the answer arrived is sent again, once, on a fresh connection (the server
cannot have answered it; uvicorn starts no request on a connection it is closing). A
response that broke after its first bytes is never resent: it may have been processed.

Back-pressure: when the client reads slower than the model server writes, reading from the
upstream pauses past 1 MiB buffered, so a streamed response is never held whole in memory.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import AsyncIterator

import httptools

log = logging.getLogger("infertap.logger.upstream")

_HIGH_WATER = 1024 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached or broke the response; `reason` names which."""

    reason = "unreachable"


class UpstreamTimeout(UpstreamError):
    reason = "timeout"


class UpstreamBroken(UpstreamError):
    reason = "broken_stream"


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses one response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.error: BaseException | None = None
        self.got_bytes = False
        self.reusable = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self._framed = False  # Content-Length or chunked: end is known without a close
        self._waiter: asyncio.Future | None = None

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBroken(f"bad HTTP from upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and not self._framed and self.error is None:
            self.complete = True  # close-delimited body: the close is its end
            self._wake()
        elif not self.complete:
            self._fail(UpstreamBroken(f"upstream closed the connection{f': {exc}' if exc else ''}"))

    # -- httptools callbacks --
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200 and self.status != 101:  # interim response: wait for the real one
            self.headers = []
            return
        self.headers_done = True
        # read now: llhttp forgets it once the message is complete
        self.reusable = self._parser.should_keep_alive()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.complete = True
            self._wake()

    # -- helpers --
    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until something new happened (headers, a chunk, the end, an error)."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter, timeout)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def take(self) -> bytes | None:
        if not self.chunks:
            return None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < _HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk


def _expire(waiter: asyncio.Future, timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout(f"timed out: nothing for {timeout:g}s"))


class UpstreamResponse:
    """Status and headers of a response; `stream()` yields its body as it arrives."""

    __slots__ = ("status", "headers", "_conn", "_pool", "_timeout", "_done")

    def __init__(self, conn: _Connection, pool: "UpstreamPool", timeout: float):
        self.status, self.headers = conn.status, conn.headers
        self._conn, self._pool, self._timeout = conn, pool, timeout
        self._done = False

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body as it arrives; None once it has all been read."""
        conn = self._conn
        while True:
            chunk = conn.take()
            if chunk is not None:
                return chunk
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                self._done = True
                return None
            await conn.wait(self._timeout)

    @property
    def ended(self) -> bool:
        """True when every byte of the body has been handed out: the chunk just taken was
        the last (lets the proxy send it with `more_body=False`, one ASGI send less)."""
        conn = self._conn
        if conn.complete and not conn.chunks and conn.error is None:
            self._done = True
            return True
        return False

    async def stream(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            chunk = conn.take()
            if chunk is not None:
                yield chunk
                continue
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                self._done = True
                return
            await conn.wait(self._timeout)

    def close(self) -> None:
        """Give the connection back if the body was read to its end, else drop it."""
        conn = self._conn
        if self._done and conn.complete and not conn.closed and self._pool.keep_alive(conn):
            conn._reset()
            conn.idle_since = time.monotonic()
            self._pool.release(conn)
        elif conn.transport is not None and not conn.closed:
            conn.closed = True
            conn.transport.close()


class UpstreamPool:
    """Keep-alive connections to one `host:port`."""

    def __init__(self, host: str, port: int, connect_timeout: float = 10.0, read_timeout: float = 600.0,
                 max_idle: int = 256, keepalive_expiry: float = 4.0):
        self.host, self.port = host, port
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self.retries = 0  # requests resent after a reused connection broke before answering
        self._idle: list[_Connection] = []
        self._host_header = f"{host}:{port}".encode()

    def keep_alive(self, conn: _Connection) -> bool:
        return conn.reusable

    def release(self, conn: _Connection) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(_Connection, self.host, self.port),
                                             self.connect_timeout)
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"connecting to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        return conn

    def _pop_idle(self) -> _Connection | None:
        """The most recently used live connection; expired ones are closed on the way."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if time.monotonic() - conn.idle_since < self.keepalive_expiry:
                return conn
            # a LIFO stack: everything below the top is older still
            idle.append(conn)
            self.close()
        return None

    async def request(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> UpstreamResponse:
        """Send one request; returns once the response's status and headers are in."""
        head = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
        has_host = False
        for name, value in headers:
            if name == b"host":
                has_host = True
            head += (name, b": ", value, b"\r\n")
        if not has_host:
            head += (b"host: ", self._host_header, b"\r\n")
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            head += (b"content-length: ", str(len(body)).encode(), b"\r\n")
        head.append(b"\r\n")
        payload = b"".join(head)
        if len(body) <= 65536:
            payload, body = payload + body, b""
        conn = self._pop_idle()
        reused = conn is not None
        for attempt in (0, 1):
            if conn is None:
                conn = await self._connect()
            try:
                try:
                    conn.transport.write(payload)
                    if body:
                        conn.transport.write(body)
                except (OSError, RuntimeError) as exc:  # the transport closed under us
                    conn._fail(UpstreamBroken(f"upstream closed the connection: {exc}"))
                while not conn.headers_done:
                    if conn.error is not None:
                        raise conn.error
                    await conn.wait(self.read_timeout)
                return UpstreamResponse(conn, self, self.read_timeout)
            except UpstreamBroken:
                # a reused keep-alive connection the server closed as we sent: retry once, fresh
                if attempt == 0 and reused and not conn.got_bytes:
                    self.retries += 1
                    log.debug("reused connection to %s:%d broke before answering (%s): resending on a fresh one",
                              self.host, self.port, conn.error)
                    conn, reused = None, False
                    continue
                raise
            except BaseException:
                if conn.transport is not None:
                    conn.transport.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
