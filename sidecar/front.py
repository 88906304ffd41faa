"""The sidecar's HTTP/1.1 server side: parses client requests, writes responses. No ASGI.

Why not uvicorn: the sidecar is a hop on every inference request, and its added latency is
measured against nginx's (benchmarks/logger_latency.py). Under uvicorn the ASGI layer
(scope dicts, receive/send coroutines, a task per request) cost more user CPU than the whole
proxy hop of nginx. Here a `ClientConnection` is an `asyncio.Protocol` with the httptools
parser; a complete request is handed to `dispatch(request, connection)` (the
`infertap.sidecar.proxy.ReverseProxy`), which answers through the connection's response methods,
from callbacks on the hot path or from a task on the rare ones. When a read held exactly one
whole request and the parser accepted it, `presend(data, connection)` decides from its bytes
whether it is the common request that can be forwarded as it came (`infertap.sidecar.sniff`),
and may send it to the model server at once; the request then carries those bytes (`raw`)
and the upstream connection they went out on (`sent`). Nothing goes upstream before the
parser has accepted the whole request: bytes the parser refuses (obs-fold, bare LF, control
characters, Content-Length with Transfer-Encoding...) never reach a model server whose
parser may be more lenient (request smuggling, issue 19).

What the connection takes care of, so the proxy does not have to:

- **Framing.** A response with a Content-Length is passed as is; one without is sent chunked
  to HTTP/1.1 clients and close-delimited to HTTP/1.0 ones. HEAD, 1xx, 204 and 304 carry no
  body. The head is held back and written with the first body bytes: one write per response.
- **Keep-alive and pipelining.** Requests are answered in order; while one is in flight the
  next ones wait (reading pauses). `Connection: close`, HTTP/1.0 without keep-alive, and an
  `Upgrade` (no inference protocol needs one; it is served as a plain request) end the
  connection after the response. Idle connections close after `keep_alive_s`.
- **Limits** (`Limits`, from the sidecar's settings). A body over `max_request` bytes is read
  and thrown away; the request is dispatched with `too_large` set and an empty body (at once,
  and the connection closes after the answer, when the client waits on
  `Expect: 100-continue`). The dispatcher answers 413. The head is capped as it arrives, before
  the parser has buffered it: a request line over `max_request_line` bytes gets 414, a header
  field over `max_header` or a head over `max_head` gets 431 (llhttp keeps no limit of its own,
  and httptools grows a header value by concatenation, read after read). Malformed HTTP,
  HTTP/1.1 without exactly one Host, a target that is neither a path nor an absolute URL, and
  CONNECT get a 400. Each of these refusals is a JSON `{"error": ...}`, answered in order after
  the requests before it, and the connection closes the way nginx's lingering close does
  (half-close, the rest of what the client sends read and dropped for up to `LINGER_S`), so a
  client still sending reads the answer rather than a reset. Past `max_connections` client
  connections, a new one gets a 503 and is closed. Refusals are counted in
  `infertap_proxy_refused_total{reason}`.
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
import resource
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote

import httptools
from prometheus_client import Counter

from infertap.logger.metrics import REGISTRY

log = logging.getLogger("infertap.logger.front")

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_JSON = [(b"content-type", b"application/json")]
# a refused connection reads and drops what the client still sends, this long and this much at most
LINGER_S = 2.0
LINGER_BYTES = 1024 * 1024

REFUSED = Counter(
    "infertap_proxy_refused",
    "Requests and connections the sidecar refused before dispatching them, by reason: malformed (400), "
    "uri_too_long (414), header_too_large (431), too_many_connections (503).",
    ("inference_service", "component", "reason"),
    registry=REGISTRY,
)


@dataclass(frozen=True)
class Limits:
    """What one client may send and hold (`infertap.sidecar.settings.LoggerSettings` has the
    meaning of each): refused past them before anything is dispatched."""

    max_request: int = 64 * 1024 * 1024  # body bytes (413, answered by the dispatcher)
    max_request_line: int = 16 * 1024  # 414
    max_header: int = 16 * 1024  # one field, name and value (431)
    max_head: int = 64 * 1024  # request line and all fields (431)
    max_connections: int = 4096  # 503 past it

    @classmethod
    def of(cls, settings: Any, max_request: int) -> Limits:
        """The limits a proxy's settings name; defaults for what they lack."""
        names = {
            "max_request_line": "max_request_line_bytes",
            "max_header": "max_header_bytes",
            "max_head": "max_head_bytes",
            "max_connections": "max_connections",
        }
        given = {field: getattr(settings, name) for field, name in names.items() if hasattr(settings, name)}
        return cls(max_request=max_request, **given)


class Refusal(Exception):
    """A request refused before dispatch: `status` and the sentence of its JSON answer.
    Raised from a parser callback, it stops the parse there (httptools re-raises it as the
    `__context__` of an `HttpParserCallbackError`)."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def _uri_too_long(limit: int) -> Refusal:
    return Refusal(414, "uri_too_long", f"request line longer than {limit} bytes")


def _field_too_large(limit: int) -> Refusal:
    return Refusal(431, "header_too_large", f"a request header field is longer than {limit} bytes")


def _head_too_large(limit: int) -> Refusal:
    return Refusal(431, "header_too_large", f"request header fields exceed {limit} bytes in all")


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
        limits = server.limits
        self._limit = limits.max_request
        self._max_line, self._max_field, self._max_head = limits.max_request_line, limits.max_header, limits.max_head
        self._parser = httptools.HttpRequestParser(self)
        # set by `connection_made`, which asyncio calls before any other method (and before the
        # connection is in `server.connections`, where the server's sweeps find it)
        self.transport: asyncio.Transport
        self.client: str | None = None
        self.handler: Handler | None = None  # set by the dispatcher for the request in flight
        self.busy = False
        self.gone = False
        self.refused = False  # refused at `connection_made` (over `max_connections`)
        self.raw_ok = False  # the response in flight may be passed byte for byte (see `write_raw`)
        self.idle_since = time.monotonic()
        self._pending: deque[Request] = deque()
        self._reading = True
        self._in_message = False
        self._completed = 0  # requests completed by the current read
        self._closing = False  # close once the response in flight ends; read nothing more
        self._refusal: Refusal | None = None  # answered once the responses before it are out
        self._lingers = False  # the response in flight is a refusal: close lingering
        self._linger: asyncio.TimerHandle | None = None  # set while a refused connection lingers
        self._lingered = 0  # bytes dropped meanwhile
        self._write_paused = False
        self._drain: asyncio.Future | None = None
        # the request being parsed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._answered_early = False
        self._headers_done = False
        self._ended = False  # a message ended in the current read
        # the head still arriving, counted from raw bytes (`_bound_head`) and from callbacks
        self._head_seen = 0  # bytes of it read so far
        self._line_seen = 0  # bytes of its last, unfinished line
        self._first_line = True  # that line is the request line
        self._head_size = 0  # bytes of its completed header fields
        # the response being written
        self._head: bytes | None = None
        self._head_only = False
        self._chunked = False
        self._keep_alive = True
        self._http10 = False

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # typeshed types it BaseTransport; a stream connection's is a Transport
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) else None
        server = self.server
        if len(server.connections) >= server.limits.max_connections:
            self._closing = True
            server.refuse_connection(self)
            return
        server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        if self._linger is not None:
            self._linger.cancel()
        if self.refused:
            self.server.refusing -= 1
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

    def eof_received(self) -> bool | None:
        return None  # the client is done sending: close (a lingering refusal ends here too)

    def data_received(self, data: bytes) -> None:
        if self._closing:  # a refusal, Connection: close or an upgrade ends the connection: read no more
            if self._linger is not None:
                self._lingered += len(data)
                if self._lingered > LINGER_BYTES:
                    self.transport.close()
            return
        # this read starts a request, with nothing before it in flight or queued: if it holds
        # exactly that one request, whole, it may be passed as it came (`presend`)
        fresh = not self._in_message and not self.busy and not self._pending
        self._completed = 0
        self._ended = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # served as a plain request; what follows is another protocol: end after the response
            fresh = False
            self._closing = True
            if self._pending:
                self._pending[-1].keep_alive = False
            elif self.busy:
                self._keep_alive = False
            else:
                self.transport.close()
        except httptools.HttpParserError as exc:
            context = exc.__context__
            self._refuse(
                context if isinstance(context, Refusal) else Refusal(400, "malformed", f"malformed HTTP request: {exc}")
            )
            fresh = False
        else:
            if self._in_message and not self._headers_done and self._bound_head(data):
                fresh = False
        if fresh and self._completed == 1 and not self._in_message:
            # the parser accepted exactly this one request: only now may its bytes go upstream
            early = self._presend(data, self)
            if early is not None:
                request = self._pending[-1]
                request.sent, request.raw = early
        if self._pending and not self.busy:
            self._start_next()

    def _bound_head(self, data: bytes) -> bool:
        """Count a head still arriving after this read, and refuse it past a limit (True then).

        The parser hands a header over only when its line ends, and until then httptools
        grows it by concatenation, read after read: the count is kept here, from the raw
        bytes, so that a head that never ends is cut after at most one read past its limit.
        When an earlier message ended in this read, where the new head began is unknown: it is
        counted from the next read on (the callbacks check it exactly once its fields end)."""
        if self._ended:
            self._head_seen = self._line_seen = 0
            return False
        self._head_seen += len(data)
        newline = data.rfind(b"\n")
        if newline < 0:
            self._line_seen += len(data)
        else:
            self._line_seen = len(data) - newline - 1
            self._first_line = False
        if self._first_line:
            refusal = _uri_too_long(self._max_line) if self._line_seen > self._max_line else None
        elif self._line_seen > self._max_field:
            refusal = _field_too_large(self._max_field)
        else:
            refusal = None
        if refusal is None and self._head_seen > self._max_head:
            refusal = _uri_too_long(self._max_line) if self._first_line else _head_too_large(self._max_head)
        if refusal is None:
            return False
        self._refuse(refusal)
        return True

    # --- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = b""
        self._headers = []
        self._body = []
        self._size = 0
        self._too_large = self._answered_early = self._headers_done = False
        self._head_seen = self._line_seen = self._head_size = 0
        self._first_line = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._max_line:
            raise _uri_too_long(self._max_line)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        if size > self._max_field:
            raise _field_too_large(self._max_field)
        self._head_size += size + 4  # ": " and CRLF
        if self._head_size + len(self._url) > self._max_head:
            raise _head_too_large(self._max_head)
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        parser = self._parser
        if parser.get_method() == b"CONNECT":
            raise Refusal(400, "malformed", "CONNECT is not served: the sidecar is a reverse proxy, not a tunnel")
        _check_target(self._url)
        expect = False
        hosts = 0
        for name, value in self._headers:
            if name == b"content-length":
                try:
                    self._too_large = int(value) > self._limit
                except ValueError:
                    pass  # httptools rejects it itself
            elif name == b"host":
                hosts += 1
            elif name == b"expect" and value.lower() == b"100-continue":
                expect = True
        if hosts != 1 and (hosts > 1 or parser.get_http_version() != "1.0"):  # RFC 9112 3.2
            raise Refusal(400, "malformed", "an HTTP/1.1 request must carry exactly one Host header")
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
        self._ended = True
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
            # the raw target: `path` itself may be what raised
            log.exception("request %s %r failed", request.method, request.url[:200])
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
            if self._lingers:
                self.linger_close()
            else:
                self.transport.close()
            return
        if self._pending:
            self._start_next()
        elif self._refusal is not None:  # a refused request waited for the responses before it
            refusal, self._refusal = self._refusal, None
            self._answer_refusal(refusal)

    def _start_next(self) -> None:
        request = self._pending.popleft()
        if not self._pending and not self._reading and not self.gone:
            self._reading = True
            self.transport.resume_reading()
        self._start_request(request)

    def _refuse(self, refusal: Refusal) -> None:
        """Refuse the request being read: nothing more is read, and the answer follows the
        responses to the requests before it."""
        self._closing = True
        self._in_message = False
        self.server.count_refusal(refusal.reason)
        if self.busy or self._pending:
            self._refusal = refusal
        else:
            self._answer_refusal(refusal)

    def _answer_refusal(self, refusal: Refusal) -> None:
        self.busy = True
        self._lingers = True
        self._keep_alive = False
        self._head_only = self._http10 = False
        self.respond_json(refusal.status, {"error": refusal.message})  # then `_finished` closes, lingering

    def linger_close(self) -> None:
        """Half-close and drop what the client still sends, then close after `LINGER_S` (or
        `LINGER_BYTES`): a client still sending a refused request reads the answer rather than
        a reset (a close with unread bytes sends an RST, and a client that fails to send may
        never read the answer)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            transport.close()
            return
        self._linger = asyncio.get_running_loop().call_later(LINGER_S, transport.close)

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

    def respond_json(self, status: int, payload: Any, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
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


def _check_target(url: bytes) -> None:
    """Refuse a request target that is neither a path (what clients send) nor an absolute URL."""
    if url[:1] == b"/":
        return
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        parsed = None
    if parsed is None or parsed.schema not in (b"http", b"https"):
        shown = url[:80].decode("latin-1")
        raise Refusal(400, "malformed", f"request target {shown!r} is neither a path nor an absolute http(s) URL")


def _raise_open_files_limit(wanted: int) -> None:
    """Raise the soft limit on open files towards `wanted` (within the hard one), as Go's
    runtime does at start: the connection cap means little if accept() fails first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            target = soft
    if target < wanted:
        log.warning("open files limit %d is below what max_connections needs (%d)", target, wanted)


class ProxyServer:
    """Listens and hands requests to `proxy.dispatch`; `stop()` is graceful.

    `limits` default to what `proxy.settings` names (`Limits.of`), with `max_request`."""

    def __init__(
        self,
        proxy: Any,
        host: str,
        port: int,
        max_request: int,
        keep_alive_s: float = 75.0,
        graceful_s: float = 15.0,
        limits: Limits | None = None,
    ):
        self.proxy = proxy
        self.dispatch: Dispatch = proxy.dispatch
        self.presend = proxy.presend
        self.host, self.port = host, port
        settings = getattr(proxy, "settings", None)
        self.limits = limits or Limits.of(settings, max_request)
        self.max_request = self.limits.max_request
        self.keep_alive_s, self.graceful_s = keep_alive_s, graceful_s
        self.connections: set[ClientConnection] = set()
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task | None = None
        self.stopping = False
        self._labels = (getattr(settings, "inference_service", ""), getattr(settings, "component", ""))
        self._refused: dict[str, Any] = {}
        self.refusing = 0  # refused connections still lingering (not in `connections`)
        self._refused_warned = 0.0

    def count_refusal(self, reason: str) -> None:
        """One more request or connection refused before dispatch (`infertap_proxy_refused_total`)."""
        child = self._refused.get(reason)
        if child is None:
            child = self._refused[reason] = REFUSED.labels(*self._labels, reason)
        child.inc()

    def refuse_connection(self, conn: ClientConnection) -> None:
        """A connection past `max_connections`: a 503 and a close. Lingering ones are bounded
        too: past as many again, they are closed without an answer."""
        self.count_refusal("too_many_connections")
        now = time.monotonic()
        if now - self._refused_warned > 10.0:  # one line per 10 s under a flood, not one per connection
            self._refused_warned = now
            log.warning("%d client connections open, the cap: refusing new ones with 503", len(self.connections))
        transport = conn.transport
        if self.refusing >= self.limits.max_connections:
            transport.abort()
            return
        body = json.dumps({"error": f"too many connections (over {self.limits.max_connections}); retry later"})
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body.encode())
        )
        self.refusing += 1
        conn.refused = True  # `connection_lost` gives the count back
        conn.linger_close()

    async def start(self) -> None:
        await self.proxy.startup()
        _raise_open_files_limit(2 * self.limits.max_connections + 256)  # a client and an upstream socket each
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
