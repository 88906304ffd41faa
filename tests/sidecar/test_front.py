"""The sidecar's own HTTP/1.1 server (infertap.sidecar.front) and its byte-for-byte fast path, spoken to
with raw sockets so the framing on the wire is what is asserted."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time

import httptools
import httpx
import pytest
from tap_fixtures import free_port, serve_app, sidecar, upstream  # noqa: F401


class Responses:
    """Parses the responses read from one socket."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[dict] = []
        self._current: dict = {}

    def on_message_begin(self) -> None:
        self._current = {"headers": {}, "body": b""}

    def on_header(self, name: bytes, value: bytes) -> None:
        self._current["headers"][name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> None:
        self._current["status"] = self.parser.get_status_code()
        self._current["version"] = self.parser.get_http_version()

    def on_body(self, body: bytes) -> None:
        self._current["body"] += body

    def on_message_complete(self) -> None:
        self.done.append(self._current)


def read_responses(sock: socket.socket, n: int, timeout: float = 10.0) -> tuple[list[dict], bool]:
    """n responses, and whether the server closed the connection after them."""
    sock.settimeout(timeout)
    parsed = Responses()
    closed = False
    while len(parsed.done) < n:
        data = sock.recv(65536)
        if not data:
            closed = True
            break
        parsed.parser.feed_data(data)
    if not closed:
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return parsed.done, closed


def connect(url: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", httpx.URL(url).port), timeout=10)


def test_plain_request_is_forwarded_as_sent_plus_forwarded_for(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    with connect(url) as s:
        s.sendall(
            b"POST /headers HTTP/1.1\r\nHost: model.local\r\nX-Custom: A b \xc3\xa9\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )
        (r,), closed = read_responses(s, 1)
    assert r["status"] == 200 and not closed
    seen = json.loads(r["body"])["headers"]
    assert [h for h in seen if h[0] != "x-forwarded-for"] == [
        ["host", "model.local"],
        ["x-custom", "A b \u00e9"],
        ["content-type", "application/json"],
        ["content-length", "2"],
    ]  # as sent, in order, values untouched
    assert [h for h in seen if h[0] == "x-forwarded-for"] == [["x-forwarded-for", "127.0.0.1"]]
    request_event = d.wait(2)[0]
    assert request_event.get_data() == b"{}"


@pytest.mark.parametrize("sent_first", [False, True])  # a new upstream connection, then a pooled one
def test_connection_keep_alive_from_the_client_is_not_forwarded(serve_app, upstream, sent_first):
    url, d = sidecar(serve_app, upstream)
    request = (
        b"POST /headers HTTP/1.1\r\nHost: model.local\r\nConnection: keep-alive\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )  # as Python's requests sends it
    with connect(url) as s:
        for _ in range(1 + sent_first):
            s.sendall(request)
            (r,), closed = read_responses(s, 1)
            assert r["status"] == 200 and not closed
    seen = json.loads(r["body"])["headers"]
    assert [h for h in seen if h[0] != "x-forwarded-for"] == [
        ["host", "model.local"],
        ["content-type", "application/json"],
        ["content-length", "2"],
    ]
    assert [e.get_data() for e in d.wait(2 + 2 * sent_first)][0] == b"{}"


def test_pipelined_requests_are_answered_in_order_and_each_logged(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    requests = b"".join(
        b"POST /v1/models/m%d:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nr-%d" % (i, i) for i in range(3)
    )
    with connect(url) as s:
        s.sendall(requests)
        responses, closed = read_responses(s, 3)
    assert [r["body"] for r in responses] == [b"r-0", b"r-1", b"r-2"] and not closed
    events = d.wait(6)
    assert sorted(e.get_data() for e in events) == sorted([b"r-0", b"r-1", b"r-2"] * 2)


def test_http10_client_gets_connection_close_and_the_close(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream)
    with connect(url) as s:
        s.sendall(b"POST /v1/models/m:predict HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello")
        (r,), closed = read_responses(s, 1)
    assert r["status"] == 200 and r["body"] == b"hello"
    assert r["headers"]["connection"] == "close" and closed


def test_connection_close_from_the_client_is_honoured(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream)
    with connect(url) as s:
        s.sendall(b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        (r,), closed = read_responses(s, 1)
    assert r["status"] == 200 and r["headers"]["connection"] == "close" and closed


def test_streamed_response_is_rechunked_for_an_http11_client(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream)
    httpx.post(f"{upstream}/release/front-tok")  # the stream does not wait for a release
    with connect(url) as s:
        s.sendall(b"GET /stream/front-tok?n=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        (r,), closed = read_responses(s, 1)
    assert r["headers"]["transfer-encoding"] == "chunked" and "content-length" not in r["headers"]
    assert r["body"] == b"chunk-0\nchunk-1\nchunk-2\n" and not closed


def test_malformed_request_gets_400_and_the_connection_closes(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    with connect(url) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        (r,), closed = read_responses(s, 1)
    assert r["status"] == 400 and "malformed" in json.loads(r["body"])["error"] and closed
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200  # the sidecar lives on


def test_expect_100_continue(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream, max_request_bytes=1000)
    with connect(url) as s:  # within the limit: 100 Continue, then the answer
        s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"body")
        (r,), _ = read_responses(s, 1)
        assert r["status"] == 200 and r["body"] == b"body"
    with connect(url) as s:  # over it: 413 at once, without waiting for a body the client holds back
        s.sendall(
            b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
        )
        (r,), closed = read_responses(s, 1, timeout=5)
    assert r["status"] == 413 and closed


def test_sigterm_lets_the_request_in_flight_finish(spawn, upstream, tmp_path):
    port = free_port()
    child = spawn(
        [
            sys.executable,
            "-m",
            "infertap.sidecar",
            "--port",
            str(port),
            "--component-port",
            str(httpx.URL(upstream).port),
            "--log-url",
            f"file://{tmp_path}/events.jsonl",
            "--spool-dir",
            str(tmp_path / "spool"),
        ],
        name="sidecar",
    )
    child.wait_http(f"http://127.0.0.1:{port}/infertap/metrics")
    result: dict = {}

    def slow() -> None:
        result["r"] = httpx.get(f"http://127.0.0.1:{port}/slow", params={"s": 1.5}, timeout=30)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    os.kill(child.proc.pid, signal.SIGTERM)
    t.join(30)
    assert result["r"].status_code == 200 and result["r"].json() == {"slow": True}
    assert child.proc.wait(20) == 0
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sorted(e["type"].rsplit(".", 1)[-1] for e in lines) == ["request", "response"]  # flushed on the way out


def test_the_common_request_goes_out_byte_for_byte_once_parsed_and_is_still_logged(serve_app, upstream):
    from tap_fixtures import CollectingDelivery

    from infertap.sidecar.proxy import ReverseProxy
    from infertap.sidecar.settings import LoggerSettings

    delivery = CollectingDelivery()
    proxy = ReverseProxy(LoggerSettings(component_port=httpx.URL(upstream).port, inference_service="iris"), delivery)
    presend, sent = proxy.presend, []

    def spy(data, client):
        out = presend(data, client)
        sent.append(None if out is None else out[0] is not None)  # None: parsed path; else: sent at once?
        return out

    proxy.presend = spy
    url = serve_app(proxy).url
    with connect(url) as s:
        for i in range(3):  # the first opens the pooled upstream connection; the next ones reuse it
            s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nr-%d" % i)
            (r,), closed = read_responses(s, 1)
            assert r["status"] == 200 and r["body"] == b"r-%d" % i and not closed
        # a request the sniff does not pass takes the parsed path and is forwarded all the same
        s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nContent-Length: 3\r\n\r\nr-3")
        (r,), closed = read_responses(s, 1)
        assert r["status"] == 200 and r["body"] == b"r-3" and not closed
    # the first is forwarded as it came on a new upstream connection, the next two are sent at once
    assert sent == [False, True, True, None]
    events = delivery.wait(8)
    assert sorted(e.get_data() for e in events) == sorted([b"r-0", b"r-1", b"r-2", b"r-3"] * 2)
    assert {e.get_extension("statuscode") for e in events if e.get_type().endswith("response")} == {200}
