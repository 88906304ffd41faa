"""The sidecar's HTTP/1.1 server side: parses client requests, writes responses. No ASGI.

Why not uvicorn: the sidecar is a hop on every inference request, and its added latency is
measured against nginx's (benchmarks/logger_latency.py). Under uvicorn the ASGI layer
(scope dicts, receive/send coroutines, a task per request) cost more user CPU than the whole
proxy hop of nginx. Here a `ClientConnection` is an `asyncio.Protocol` with the httptools
parser; a complete request is handed to `dispatch(request, connection)` (the
`infertap.sidecar.proxy.ReverseProxy`), which answers through the connection's response methods,
from callbacks on the hot path or from a task on the rare ones. Before a read is parsed,
`presend(data, connection)` decides from its bytes whether it is the common request, whole in
one read, that can be forwarded as it came (`infertap.sidecar.sniff`), and may already send it to the
model server; the parsed request then carries those bytes (`raw`) and the upstream
connection they went out on (`sent`).

What the connection takes care of, so the proxy does not have to:

- **Framing.** A response with a Content-Length is passed as is; one without is sent chunked
  to HTTP/1.1 clients and close-delimited to HTTP/1.0 ones. HEAD, 1xx, 204 and 304 carry no
  body. The head is held back and written with the first body bytes: one write per response.
- **Keep-alive and pipelining.** Requests are answered in order; while one is in flight the
  next ones wait (reading pauses). `Connection: close`, HTTP/1.0 without keep-alive, and an
  `Upgrade` (no inference protocol needs one; it is served as a plain request) end the
  connection after the response. Idle connections close after `keep_alive_s`.
- **Limits.** A body over `max_request` bytes is read and thrown away; the request is
  dispatched with `too_large` set and an empty body (at once, and the connection closes after
  the answer, when the client waits on `Expect: 100-continue`). The dispatcher answers 413.
  Malformed HTTP gets a 400 and the connection closes.
- **Back-pressure.** When the client reads slower than the upstream writes, the transport's
  `pause_writing` reaches the request in flight (`Handler.client_paused`), which stops
  reading the upstream; coroutine handlers `await drain()`.
- **Graceful stop** (`ProxyServer.stop`): stop accepting, let requests in flight finish (up
  to `graceful_s`), close the rest, then the proxy's own shutdown (the delivery's flush).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote

import httptools

log = logging.getLogger("infertap.logger.front")

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_JSON = [(b"content-type", b"application/json")]


class Request:
    """One parsed request. `path` (percent-decoded, for routing and labels) and `target` (the
    raw path and query, what is forwarded) come from `url`, parsed on first use: a request
    forwarded byte for byte (`raw`) never needs them before it is on its way."""

    __slots__ = (
        "method",
        "url",
        "headers",
        "body",
        "client",
        "http_version",
        "keep_alive",
        "too_large",
        "raw",
        "sent",
        "_parsed",
    )

    def __init__(
        self,
        method: str,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        client: str | None,
        http_version: str,
        keep_alive: bool = True,
        too_large: bool = False,
    ):
        self.method, self.url, self.headers, self.body = method, url, headers, body  # header names lower-cased
        self.client, self.http_version = client, http_version
        self.keep_alive = keep_alive  # the client lets the connection live past this response
        self.too_large = too_large  # the body passed `max_request` and was dropped: answer 413
        # the bytes to forward as they are, when `presend` found the request could go so: as
        # it came, with X-Forwarded-For added (`infertap.sidecar.sniff.request_to_pass`)
        self.raw: bytes | None = None
        # the upstream connection `raw` already went out on, before the request was parsed
        self.sent: Any = None
        self._parsed: tuple[str, bytes] | None = None

    def _parse(self) -> tuple[str, bytes]:
        if self._parsed is None:
            url = httptools.parse_url(self.url)
            raw_path = url.path or b"/"
            path = raw_path.decode("latin-1")
            if "%" in path:
                path = unquote(path)
            query = url.query
            self._parsed = (path, raw_path + b"?" + query if query else raw_path)
        return self._parsed

    @property
    def path(self) -> str:
        return self._parse()[0]

    @property
    def target(self) -> bytes:
        return self._parse()[1]

    def path_is(self, path: bytes) -> bool:
        """Whether the path is `path` (cheaply, on the raw target; `path` must need no decoding)."""
        url = self.url
        return url == path or (url.startswith(path) and url[len(path) : len(path) + 1] == b"?")


class Handler(Protocol):
    """What a connection tells the request in flight."""

    def client_paused(self) -> None: ...

    def client_resumed(self) -> None: ...

    def client_gone(self) -> None: ...


class ClientGone(ConnectionError):
    """The client closed its connection before the response ended."""


Dispatch = Callable[[Request, "ClientConnection"], None]


class ClientConnection(asyncio.Protocol):
    """One client connection: parse, dispatch, write the response with the right framing."""

    def __init__(self, server: ProxyServer):
        self.server = server
        self._dispatch = server.dispatch
        self._presend = server.presend
        self._limit = server.max_request
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: str | None = None
        self.handler: Handler | None = None  # set by the dispatcher for the request in flight
        self.busy = False
        self.gone = False
        self.raw_ok = False  # the response in flight may be passed byte for byte (see `write_raw`)
        self.idle_since = time.monotonic()
        self._pending: deque[Request] = deque()
        self._reading = True
        self._in_message = False
        self._completed = 0  # requests completed by the current read
        self._closing = False  # close once the response in flight ends
        self._write_paused = False
        self._drain: asyncio.Future | None = None
        # the request being parsed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._answered_early = False
        # the response being written
        self._head: bytes | None = None
        self._head_only = False
        self._chunked = False
        self._keep_alive = True
        self._http10 = False

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) else None
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.server.connections.discard(self)
        self._pending.clear()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ClientGone("client went away"))
        handler, self.handler = self.handler, None
        if handler is not None and self.busy:
            handler.client_gone()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.handler is not None:
            self.handler.client_paused()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self.handler is not None:
            self.handler.client_resumed()

    def data_received(self, data: bytes) -> None:
        if self._closing and not self.busy:
            return
        fresh = not self._in_message
        self._completed = 0
        # the common request goes out before it is parsed (the parse follows, for the tap)
        early = self._presend(data, self) if fresh and not self.busy and not self._pending else None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # served as a plain request; what follows is another protocol: end after the response
            self._closing = True
            if self._pending:
                self._pending[-1].keep_alive = False
            elif self.busy:
                self._keep_alive = False
            else:
                self.transport.close()
        except httptools.HttpParserError as exc:
            if early is not None and early[0] is not None:  # the model server's answer to it is not wanted
                early[0].detach()
            self._bad_request(str(exc))
            return
        if early is not None:
            if self._completed == 1 and not self._in_message:  # this read was exactly one request
                request = self._pending[-1]
                request.sent, request.raw = early
            else:  # `infertap.sidecar.sniff` and the parser disagree: trust the parser
                log.warning("a request sniffed as whole did not parse as one request; it takes the parsed path")
                if early[0] is not None:
                    early[0].detach()
        if self._pending and not self.busy:
            self._start_next()

    # --- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = b""
        self._headers = []
        self._body = []
        self._size = 0
        self._too_large = self._answered_early = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        expect = False
        for name, value in self._headers:
            if name == b"content-length":
                try:
                    self._too_large = int(value) > self._limit
                except ValueError:
                    pass  # httptools rejects it itself
            elif name == b"expect" and value.lower() == b"100-continue":
                expect = True
        if not expect or self.busy:
            return
        if self._too_large:  # the client waits for us: answer now rather than after a body it holds back
            self._answered_early = True
            self._in_message = False
            request = self._request(b"")
            request.keep_alive = False
            self._closing = True
            self._start_request(request)
        else:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._size += len(body)
        if self._size > self._limit:
            self._too_large = True
            self._body = []
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._answered_early or self._closing:
            return  # an earlier request ends the connection: nothing after it is served
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = self._request(body)
        if self.busy or self._pending:  # pipelined: wait for the responses before it
            self._reading = False
            self.transport.pause_reading()
        self._pending.append(request)
        self._completed += 1

    def _request(self, body: bytes) -> Request:
        parser = self._parser
        keep_alive = parser.should_keep_alive()
        if not keep_alive:
            self._closing = True  # read no further requests
        return Request(
            parser.get_method().decode("ascii"),
            self._url,
            self._headers,
            body,
            self.client,
            parser.get_http_version(),
            keep_alive,
            self._too_large,
        )

    # --- dispatching ----------------------------------------------------------------------

    def _start_request(self, request: Request) -> None:
        self.busy = True
        self._keep_alive = request.keep_alive and not self.server.stopping
        self._head_only = request.method == "HEAD"
        self._chunked = False
        self._http10 = request.http_version == "1.0"
        self.raw_ok = self._keep_alive and not self._head_only and not self._http10
        try:
            self._dispatch(request, self)
        except Exception as exc:  # noqa: BLE001 - a bug in the proxy must not kill the connection silently
            log.exception("request %s %s failed", request.method, request.path)
            if self._head is None and self.busy:
                self.respond_json(500, {"error": f"sidecar error: {type(exc).__name__}"})
            else:
                self.abort()

    def _finished(self) -> None:
        self.busy = False
        self.handler = None
        self.idle_since = time.monotonic()
        if not self._keep_alive:
            self._closing = True
            self.transport.close()
            return
        if self._pending:
            self._start_next()

    def _start_next(self) -> None:
        request = self._pending.popleft()
        if not self._pending and not self._reading and not self.gone:
            self._reading = True
            self.transport.resume_reading()
        self._start_request(request)

    def _bad_request(self, reason: str) -> None:
        self._closing = True
        if self.busy:  # a response is in flight: it cannot be followed by ours
            self.transport.close()
            return
        self.busy = True
        self._keep_alive = False
        self._head_only = False
        self.respond_json(400, {"error": f"malformed HTTP request: {reason}"})

    # --- the response ---------------------------------------------------------------------

    def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Status and headers (hop-by-hop ones already removed); written with the first body bytes."""
        no_body = self._head_only or status < 200 or status in (204, 304)
        framed = no_body
        if not framed:
            for name, _ in headers:
                if name.lower() == b"content-length":
                    framed = True
                    break
        parts = [b"HTTP/1.1 ", str(status).encode(), b" ", _REASONS.get(status, b""), b"\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if not framed:
            if self._http10:
                self._keep_alive = False  # an HTTP/1.0 client reads to the close
            else:
                self._chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
        if not self._keep_alive:
            parts.append(b"connection: close\r\n")
        elif self._http10:
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self._head = b"".join(parts)

    def write_body(self, chunk: bytes) -> None:
        """Body bytes as they are produced (framing added here)."""
        if self.gone or not chunk:
            return
        if self._chunked:
            chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        if self._head is not None:
            chunk, self._head = self._head + chunk, None
        if not self._head_only:
            self.transport.write(chunk)

    def write_raw(self, data: bytes) -> None:
        """Bytes of a response passed as they came from the upstream, head and framing
        included (only when `raw_ok`: an HTTP/1.1 keep-alive client, not HEAD)."""
        if not self.gone:
            self.transport.write(data)

    def end_response(self, last: bytes = b"") -> None:
        """The response is complete (`last`: its final body bytes, written with the end)."""
        if not self.gone:
            out = self._head or b""
            self._head = None
            if not self._head_only:
                if self._chunked:
                    out += (b"%x\r\n%b\r\n0\r\n\r\n" % (len(last), last)) if last else b"0\r\n\r\n"
                else:
                    out += last
            if out:
                self.transport.write(out)
        self._finished()

    def respond(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """A whole response at once (the sidecar's own answers)."""
        self.start_response(status, headers + [(b"content-length", str(len(body)).encode())])
        self.end_response(body)

    def respond_json(self, status: int, payload: Any, headers: list[tuple[bytes, bytes]] = ()) -> None:
        self.respond(status, json.dumps(payload).encode(), _JSON + list(headers))

    def abort(self) -> None:
        """Cut the connection (a response that broke after its head was sent cannot say so)."""
        self.busy = False
        self.handler = None
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    async def drain(self) -> None:
        """For coroutine handlers: wait while the client's write buffer is full."""
        if self.gone:
            raise ClientGone("client went away")
        if self._write_paused:
            self._drain = asyncio.get_running_loop().create_future()
            try:
                await self._drain
            finally:
                self._drain = None


class ProxyServer:
    """Listens and hands requests to `proxy.dispatch`; `stop()` is graceful."""

    def __init__(
        self, proxy: Any, host: str, port: int, max_request: int, keep_alive_s: float = 75.0, graceful_s: float = 15.0
    ):
        self.proxy = proxy
        self.dispatch: Dispatch = proxy.dispatch
        self.presend = proxy.presend
        self.host, self.port = host, port
        self.max_request = max_request
        self.keep_alive_s, self.graceful_s = keep_alive_s, graceful_s
        self.connections: set[ClientConnection] = set()
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task | None = None
        self.stopping = False

    async def start(self) -> None:
        await self.proxy.startup()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientConnection(self), self.host, self.port, backlog=2048, reuse_address=True
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(self._close_idle())

    async def _close_idle(self) -> None:
        """Close keep-alive connections idle past `keep_alive_s` (one sweep instead of a timer per request)."""
        while True:
            await asyncio.sleep(min(5.0, self.keep_alive_s / 2))
            cutoff = time.monotonic() - self.keep_alive_s
            for conn in list(self.connections):
                if not conn.busy and conn.idle_since < cutoff and conn.transport is not None:
                    conn.transport.close()

    async def stop(self) -> None:
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            if not conn.busy:
                conn.transport.close()
            else:
                conn._keep_alive = False  # close once its response ends
        deadline = time.monotonic() + self.graceful_s
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        await self.proxy.shutdown()
