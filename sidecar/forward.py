"""One request proxied to a pooled upstream connection, driven by callbacks end to end.

A `Forward` joins a client connection (`infertap.sidecar.front.ClientConnection`) and an upstream one
(`infertap.sidecar.upstream.UpstreamConnection`): the upstream's status, headers and body chunks are
written to the client as they are parsed, and teed into the tap's `Exchange`. No task, no
future and no timer on this path (the pool sweeps for upstreams that went quiet).

Order of work, for latency: the request is written to the upstream first; deciding whether
it is logged comes after, and building its CloudEvent right after that, overlapping the
model server's work; for an OpenAI call (redaction, a long answer to come) later still: once
the response head has been passed on, or 5 ms without one (`Tap.submit_request_later`), not
while the model server (on the same few cores) reads the request (time to first token);
the response event
always comes after it (`Exchange.finish` submits the request event first). The response
event and the metrics wait for the next request's forward, or 5 ms when no request follows
(`Tap.finish_later`): not between the response and a client's next request.

Failures:
- before the response head: a reused connection that broke before a byte of the answer came
  back is a keep-alive race the server cannot have answered: the request is sent again, once,
  on a fresh connection. Anything else is a 502 (504 for a timeout) with a JSON reason, also
  logged as the response event.
- after the head: the status cannot change any more, so the client connection is cut.
- the client going away: the upstream connection is closed (an endless SSE stream is not
  read on for nobody) and the exchange is logged with what came back so far.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from infertap.sidecar.sniff import HOP_BY_HOP
from infertap.sidecar.upstream import UpstreamBroken, UpstreamConnection, UpstreamError, UpstreamPool, UpstreamTimeout

if TYPE_CHECKING:
    from infertap.sidecar.front import ClientConnection, Request

__all__ = ["Forward", "HOP_BY_HOP"]


class Forward:
    """One proxied exchange; `start()` sends it, the callbacks do the rest."""

    __slots__ = (
        "proxy",
        "pool",
        "client",
        "request",
        "payload",
        "log",
        "exchange",
        "started",
        "status",
        "conn",
        "wants_raw",
        "_connecting",
        "_retried",
        "_begun",
        "_over",
    )

    def __init__(
        self,
        proxy: Any,
        pool: UpstreamPool,
        client: ClientConnection,
        request: Request,
        payload: bytes,
        log: bool,
        started: float,
    ):
        self.proxy, self.pool, self.client, self.request = proxy, pool, client, request
        self.payload, self.log, self.started = payload, log, started
        self.exchange: Any = None
        self.status = 0
        self.conn: UpstreamConnection | None = None
        self.wants_raw = client.raw_ok
        self._connecting: asyncio.Task | None = None
        self._retried = False
        self._begun = False
        self._over = False

    def start(self) -> None:
        self.client.handler = self
        conn = self.pool.acquire()
        if conn is None:
            self._connect()
        else:
            self._send(conn)

    # --- sending ------------------------------------------------------------------------

    def _connect(self) -> None:
        self._connecting = task = asyncio.get_running_loop().create_task(self.pool.connect())
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task) -> None:
        self._connecting = None
        if task.cancelled():
            return
        error = task.exception()
        if self._over:  # the client left while we connected
            if error is None:
                task.result().close()
            return
        if error is not None:
            if not isinstance(error, UpstreamError):
                error = UpstreamError(f"cannot connect to {self.pool.host}:{self.pool.port}: {error!r}")
            self._fail(error)
            return
        self._send(task.result())

    def adopt(self, conn: UpstreamConnection) -> None:
        """Take over a request already sent on `conn` before it was parsed (`ReverseProxy.presend`)."""
        self.client.handler = self
        self.conn = conn
        if conn.closed:  # the write failed: as if the connection broke before answering
            self.upstream_failed(UpstreamBroken("upstream closed the connection"))
            return
        conn.listener = self
        self._sent()

    def _send(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        self.pool.send(conn, self.payload, self)
        self._sent()

    def _sent(self) -> None:
        # the request is on its way: the model server works on it while we log it
        self._begin()
        tap = self.proxy.tap
        if tap.unflushed:
            tap.flush()

    def _begin(self) -> None:
        """Once: ask the tap whether the exchange is logged, and have its request event
        submitted: an OpenAI call's at the response head (`Tap.submit_request_later`, off the
        way in, for time to first token), any other at once."""
        if self._begun:
            return
        self._begun = True
        if self.log:
            r = self.request
            self.exchange = self.proxy.tap.begin(r.method, r.path, r.headers, r.body)
            if self.exchange is None:
                return
            if self.exchange.capture is not None:  # an LLM call: its request event at the response head
                self.proxy.tap.submit_request_later(self.exchange)
            else:
                # tensor traffic: now, overlapping the model server's work; deferred, it lands after
                # the answer, on the way of the client's next request (logger_latency c=1: +0.08 ms)
                self.exchange.submit_request()

    # --- UpstreamListener -----------------------------------------------------------------

    def upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        if self.exchange is not None:
            self.exchange.response_start(status, headers)
        self.client.start_response(status, [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP])
        self.proxy.tap.submit_requests_soon()  # held back by `_begin`: the server is computing now

    def upstream_raw(self, data: bytes) -> None:
        self.client.write_raw(data)

    def upstream_head_passed(self, status: int) -> None:
        """The head of a response already written as read (`upstream_raw`) has been parsed."""
        self.status = status
        if self.exchange is not None:
            self.exchange.response_start(status)
        self.proxy.tap.submit_requests_soon()

    def upstream_body(self, chunk: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_chunk(chunk)
        self.client.write_body(chunk)

    def upstream_tee(self, chunk: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_chunk(chunk)

    def upstream_end(self) -> None:
        conn, self.conn = self.conn, None
        assert conn is not None  # the connection calling back is this one's (`_send`, `adopt`)
        self.pool.release(conn)
        self.client.end_response()
        self._finish()

    def upstream_failed(self, error: UpstreamError) -> None:
        conn, self.conn = self.conn, None
        if self.status:  # the head is out: all that is left is to cut the connection
            self.proxy.tap.metrics.upstream_error(error.reason)
            if self.exchange is not None:
                self.exchange.interrupted("upstream_error")
            self.client.abort()
            self._finish()
            return
        if (
            isinstance(error, UpstreamBroken)
            and conn is not None
            and conn.reused
            and not conn.got_bytes
            and not self._retried
        ):
            self._retried = True
            self.pool.retries += 1
            self._connect()
            return
        self._fail(error)

    def _fail(self, error: UpstreamError) -> None:
        self.status = 504 if isinstance(error, UpstreamTimeout) else 502
        self._begin()  # the request event comes before the error's response event
        self.proxy.fail(
            self.client,
            self.exchange,
            self.status,
            error.reason,
            f"upstream {self.pool.host}:{self.pool.port}: {error}",
        )
        self._finish()

    # --- Handler (the client side) --------------------------------------------------------

    def client_paused(self) -> None:
        if self.conn is not None:
            self.conn.pause()

    def client_resumed(self) -> None:
        if self.conn is not None:
            self.conn.resume()

    def client_gone(self) -> None:
        if self._over:
            return
        if self._connecting is not None:
            self._connecting.cancel()
        if not self.status:
            self.status = 499  # nginx's "client closed request", for the metrics
        elif self.exchange is not None:  # mid-response: a stream's partial completion says so
            self.exchange.interrupted("client_disconnected")
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.detach()
        self._finish()

    def _finish(self) -> None:
        if self._over:
            return
        self._over = True
        self._begin()
        self.proxy.tap.finish_later(self.exchange, self.request.path, self.status, time.perf_counter() - self.started)
