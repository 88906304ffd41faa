"""A lean pooled HTTP/1.1 client for the sidecar's hop to the model server, driven by callbacks.

Why not httpx, and why not coroutines: the hop is on every inference request. Profiling the
sidecar showed two thirds of its CPU in the httpx/httpcore/anyio stack; a coroutine client
of our own (a task, a future and a timer per request) still spent three times nginx's user
CPU per request. Here a connection is an `asyncio.Protocol` with the httptools parser that
hands the response straight to a listener (`infertap.sidecar.forward.Forward`) as it is parsed: status
and headers, each body chunk, the end. Nothing waits on a future on the hot path.

It speaks only what the proxy needs: plain `http://`, requests with a complete body, any
response framing (Content-Length, chunked, close-delimited). HEAD requests and `https://`
explainers go through httpx in `infertap.sidecar.proxy`.

Keep-alive races: a model server closes idle connections (uvicorn after its
`timeout_keep_alive`, 5 s by default), and a request written to a connection as the server
closes it gets a reset and no answer. Connections idle longer than `keepalive_expiry` (below
the server's timeout) are closed instead of reused, and the listener is told whether a
failed request may be resent: only when its connection was reused and not a byte of the
answer arrived (the server cannot have answered it). See `infertap.sidecar.forward`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import httptools

from infertap.sidecar import sniff

log = logging.getLogger("infertap.logger.upstream")


class UpstreamError(Exception):
    """The upstream could not be reached or broke the response; `reason` names which."""

    reason = "unreachable"


class UpstreamTimeout(UpstreamError):
    reason = "timeout"


class UpstreamBroken(UpstreamError):
    reason = "broken_stream"


class UpstreamListener(Protocol):
    """What a connection reports while one response is parsed."""

    # may the response go to the client byte for byte (see `UpstreamConnection.data_received`)
    wants_raw: bool

    def upstream_head_passed(self, status: int) -> None:
        """The head of a response already passed as is (`infertap.sidecar.sniff`) has been parsed."""

    def upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def upstream_raw(self, data: bytes) -> None:
        """More bytes of a response passed as is (before they are parsed)."""

    def upstream_body(self, chunk: bytes) -> None: ...

    def upstream_tee(self, chunk: bytes) -> None:
        """A body chunk of a response passed as is: for the tap only."""

    def upstream_end(self) -> None: ...

    def upstream_failed(self, error: UpstreamError) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; carries one request/response at a time."""

    def __init__(self) -> None:
        # set by `connection_made`, which runs before `UpstreamPool.connect` returns the connection
        self.transport: asyncio.Transport
        self.closed = False
        self.idle_since = 0.0
        self.reused = False  # carried an earlier response: a failure may be a keep-alive race
        self.listener: UpstreamListener | None = None
        self.last_activity = 0.0  # loop time of the last bytes (the listener's timeout reads it)
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.got_bytes = False
        self.reusable = False
        self._framed = False  # Content-Length or chunked: the end is known without a close
        self._raw = False  # this response goes to the client byte for byte, as read (`infertap.sidecar.sniff`)

    def send(self, payload: bytes, listener: UpstreamListener | None) -> None:
        """Write one whole request; the response goes to `listener` (use `UpstreamPool.send`,
        which also watches the connection for a timeout). None: a request sent before it was
        parsed (`ReverseProxy.presend`); `Forward.adopt` sets the listener then."""
        self.listener = listener  # the state of the last response was reset by `UpstreamPool.release`
        self.last_activity = time.monotonic()
        try:
            self.transport.write(payload)
        except (OSError, RuntimeError) as exc:  # the transport closed under us
            self._fail(UpstreamBroken(f"upstream closed the connection: {exc}"))

    def expire(self, timeout: float) -> None:
        """Nothing came for `timeout` seconds: fail the response in flight."""
        self._fail(UpstreamTimeout(f"timed out: nothing for {timeout:g}s"))

    def detach(self) -> None:
        """The listener no longer wants this response: close, never reuse."""
        self.listener = None
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # typeshed types it BaseTransport; a stream connection's is a Transport
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        first, self.got_bytes = not self.got_bytes, True
        self.last_activity = time.monotonic()
        listener = self.listener
        if listener is not None:  # the client first, then our bookkeeping
            if self._raw:
                listener.upstream_raw(data)
            elif first and listener.wants_raw and sniff.response_passes(data):
                self._raw = True
                listener.upstream_raw(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBroken(f"bad HTTP from upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.listener is None:
            return
        if self.headers_done and not self.complete and not self._framed:
            self.complete = True  # close-delimited body: the close is its end
            listener, self.listener = self.listener, None
            listener.upstream_end()
        elif not self.complete:
            self._fail(UpstreamBroken(f"upstream closed the connection{f': {exc}' if exc else ''}"))

    # -- httptools callbacks --
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim response: wait for the real one
            self.headers = []
            return
        self.status = status
        self.headers_done = True
        # read now: llhttp forgets it once the message is complete
        self.reusable = parser.should_keep_alive()
        listener = self.listener
        if listener is None:
            return
        if self._raw:  # already with the client, as read
            listener.upstream_head_passed(status)
        else:
            listener.upstream_head(status, self.headers)

    def on_body(self, body: bytes) -> None:
        listener = self.listener
        if listener is not None:
            if self._raw:
                listener.upstream_tee(body)
            else:
                listener.upstream_body(body)

    def on_message_complete(self) -> None:
        if not self.headers_done:
            return
        self.complete = True
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.upstream_end()

    def _fail(self, error: UpstreamError) -> None:
        self.close()
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.upstream_failed(error)


class UpstreamPool:
    """Keep-alive connections to one `host:port`, reused LIFO."""

    def __init__(
        self,
        host: str,
        port: int,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        max_idle: int = 256,
        keepalive_expiry: float = 4.0,
    ):
        self.host, self.port = host, port
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self.retries = 0  # requests resent after a reused connection broke before answering
        self._idle: list[UpstreamConnection] = []
        self._busy: set[UpstreamConnection] = set()
        self._host_header = f"{host}:{port}".encode()
        self._watch: asyncio.Task | None = None

    def send(self, conn: UpstreamConnection, payload: bytes, listener: UpstreamListener | None) -> None:
        """Send a request on `conn` and watch it for `read_timeout` of silence."""
        self._busy.add(conn)
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_timeouts())
        conn.send(payload, listener)

    async def _watch_timeouts(self) -> None:
        """Fail responses that went quiet for `read_timeout`: one sweep a second (a quarter of
        the timeout when shorter) instead of a timer per request on the hot path."""
        timeout = self.read_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = time.monotonic()
            for conn in list(self._busy):
                if conn.listener is None or conn.closed:
                    self._busy.discard(conn)
                elif now - conn.last_activity >= timeout:
                    self._busy.discard(conn)
                    conn.expire(timeout)

    def acquire(self) -> UpstreamConnection | None:
        """The most recently used live idle connection, or None; expired ones are closed."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if time.monotonic() - conn.idle_since < self.keepalive_expiry:
                return conn
            # a LIFO stack: everything below the top is older still
            conn.close()
            self._close_idle()
        return None

    async def connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(UpstreamConnection, self.host, self.port), self.connect_timeout
            )
        except TimeoutError:
            raise UpstreamTimeout(f"connecting to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Take back a connection whose response was read to its end (closed if it cannot be reused)."""
        self._busy.discard(conn)
        if conn.closed or not conn.complete or not conn.reusable or len(self._idle) >= self.max_idle:
            conn.close()
            return
        conn._reset()
        conn.reused = True
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    def request_bytes(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        """The request as written on the wire: one buffer, so one write and one segment."""
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
        head += (b"\r\n", body)
        return b"".join(head)

    def _close_idle(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    def close(self) -> None:
        """Close the idle connections and stop the timeout watch (the proxy is stopping)."""
        self._close_idle()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
