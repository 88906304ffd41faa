"""The sidecar's HTTP hop under a hostile client (issue 19): caps on the request head, no byte
upstream before the parser accepted a request, a cap on connections, and clean refusals of
CONNECT, huge targets, Host-less HTTP/1.1 and deeply nested ingest events.

Real servers on 127.0.0.1, spoken to with raw sockets: the sidecar's own server
(`infertap.sidecar.front`) in a thread, and as the model server either `tap_upstream.py` or
`RecordingUpstream` below, which parses nothing and keeps every byte it receives.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from tap_fixtures import free_port, serve_app, sidecar, upstream  # noqa: F401
from test_front import connect, read_responses

MiB = 1024 * 1024


class RecordingUpstream:
    """A model server that parses nothing: it records every byte it receives and answers a
    canned 200 for each end of a head it sees (whatever a lenient parser would make of it)."""

    CANNED = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.received = bytearray()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with self._lock:
                    self.received += data
                try:
                    conn.sendall(self.CANNED * data.count(b"\r\n\r\n"))
                except OSError:
                    return

    def seen(self) -> bytes:
        with self._lock:
            return bytes(self.received)

    def close(self) -> None:
        self.listener.close()
        for conn in self._open:
            conn.close()


@pytest.fixture
def recording() -> Iterator[RecordingUpstream]:
    up = RecordingUpstream()
    yield up
    up.close()


def _error_of(response: dict) -> str:
    assert response["headers"]["content-type"] == "application/json"
    error = json.loads(response["body"])["error"]
    assert isinstance(error, str) and error
    return error


def _send_and_read(url: str, data: bytes, n: int = 1, timeout: float = 5.0) -> tuple[list[dict], bool]:
    with connect(url) as s:
        s.sendall(data)
        return read_responses(s, n, timeout=timeout)


class Flood:
    """A client that sends `prefix`, then `filler` on and on (up to `total` bytes), as fast
    as the sidecar reads it; `sent` counts what the kernel took before the connection broke."""

    def __init__(self, url: str, prefix: bytes, filler: bytes = b"a" * 65536, total: int = 64 * MiB):
        self.sock = connect(url)
        self.prefix, self.filler, self.total = prefix, filler, total
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.sock.sendall(self.prefix)
            while self.sent < self.total:
                self.sock.sendall(self.filler)
                self.sent += len(self.filler)
        except OSError:  # the sidecar closed: expected
            pass

    def response(self, timeout: float = 5.0) -> tuple[list[dict], bool]:
        try:
            return read_responses(self.sock, 1, timeout=timeout)
        finally:
            self.thread.join(timeout)
            self.sock.close()


# --- finding 1: caps on the head --------------------------------------------------------------


def test_a_64_kib_header_gets_431_while_another_client_is_served(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream)
    with connect(url) as s:  # a whole request with one 64 KiB header
        s.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
        started = time.monotonic()
        (r,), closed = read_responses(s, 1, timeout=5)
    assert r["status"] == 431 and "header" in _error_of(r) and closed
    assert time.monotonic() - started < 5  # answered at once, not by the 75 s idle sweep
    # a header that never ends, sent as fast as the sidecar reads, while another client predicts
    flood = Flood(url, b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nX-Big: ")
    with httpx.Client(timeout=5) as other:
        for i in range(5):
            answer = other.post(f"{url}/v1/models/m:predict", content=b'{"i": %d}' % i)
            assert answer.status_code == 200 and answer.content == b'{"i": %d}' % i
    (r,), closed = flood.response()
    assert r["status"] == 431 and closed
    assert flood.sent < 32 * MiB  # cut early: the rest of the 64 MiB was never taken
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200


def test_a_32_mib_url_gets_414_early(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream)
    flood = Flood(url, b"GET /v1/models/", filler=b"m" * 65536, total=32 * MiB)
    (r,), closed = flood.response()
    assert r["status"] == 414 and "request line" in _error_of(r) and closed
    assert flood.sent < 16 * MiB


def test_a_url_over_65535_bytes_gets_414_without_a_traceback(serve_app, upstream, caplog):
    caplog.set_level(logging.WARNING)
    url, _ = sidecar(serve_app, upstream)
    (r,), closed = _send_and_read(url, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r["status"] == 414 and closed
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def test_head_caps_are_settings_and_refuse_before_the_head_ends(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream, max_request_line_bytes=256, max_header_bytes=1024, max_head_bytes=4096)
    ok, _ = _send_and_read(url, b"GET /v2/health/ready?q=" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ok[0]["status"] == 200
    ok, _ = _send_and_read(url, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 1000 + b"\r\n\r\n")
    assert ok[0]["status"] == 200
    (r,), closed = _send_and_read(url, b"GET /v2/health/ready?q=" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r["status"] == 414 and "256" in _error_of(r) and closed
    (r,), closed = _send_and_read(url, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 1100 + b"\r\n\r\n")
    assert r["status"] == 431 and "1024" in _error_of(r) and closed
    many = b"".join(b"X-H%d: %b\r\n" % (i, b"a" * 800) for i in range(8))  # each within the field cap
    (r,), closed = _send_and_read(url, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert r["status"] == 431 and "4096" in _error_of(r) and closed
    # unfinished: a field, a request line, a head that do not end are refused all the same
    for partial, status in [
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 2000, 431),
        (b"GET /" + b"a" * 1000, 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + many, 431),
    ]:
        (r,), closed = _send_and_read(url, partial)
        assert r["status"] == status and closed, partial[:40]


def test_the_ingest_has_the_same_head_caps(serve_app, upstream):
    url, delivery = sidecar(serve_app, upstream, max_header_bytes=1024)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nce-specversion: 1.0\r\nce-id: 1\r\nce-source: s\r\nce-type: t\r\n"
    (r,), _ = _send_and_read(url, head + b"content-length: 2\r\n\r\n{}")
    assert r["status"] == 202
    (r,), closed = _send_and_read(url, head + b"ce-big: " + b"a" * 2000 + b"\r\ncontent-length: 2\r\n\r\n{}")
    assert r["status"] == 431 and closed
    assert [e.get_id() for e in delivery.events] == ["1"]


# --- finding 2: nothing upstream before the parser accepted the request -------------------------

SMUGGLED = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
REFUSED = {
    "obs_fold": (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\n{}", 400),
    "bare_lf": (b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nX-A: 1\nX-B: 2\r\n\r\n", 400),
    "control_char": (b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
    "bare_lf_te_chunked_smuggling": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nX-A: 1\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(SMUGGLED), SMUGGLED),
        400,
    ),
    "cl_and_te": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%b" % (len(SMUGGLED), SMUGGLED),
        400,
    ),
    "oversized_field": (b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    "oversized_head": (
        b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %b\r\n" % (i, b"a" * 8000) for i in range(10)),
        431,
    ),
    "long_url": (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "no_host": (b"GET /v1/models/m HTTP/1.1\r\n\r\n", 400),
    "two_hosts": (b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "connect": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400),
    "authority_target": (b"GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_refused_request_sends_no_byte_upstream(name, serve_app, recording, caplog):
    caplog.set_level(logging.WARNING)
    url, delivery = sidecar(serve_app, recording.url)
    warm, _ = _send_and_read(url, b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")  # leaves a pooled connection
    assert warm[0]["status"] == 200 and warm[0]["body"] == b"ok"
    time.sleep(0.1)  # the warm-up's events are in
    before, logged = recording.seen(), len(delivery.events)
    data, status = REFUSED[name]
    (r,), closed = _send_and_read(url, data)
    assert r["status"] == status and closed
    _error_of(r)
    time.sleep(0.3)  # anything on its way upstream would have arrived by now
    assert recording.seen() == before
    assert len(delivery.events) == logged  # nor is it logged: the model server never saw it
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]  # no traceback either
    again, _ = _send_and_read(url, b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")  # the sidecar serves on
    assert again[0]["status"] == 200 and recording.seen().count(b"GET /again ") == 1


def test_a_good_request_pipelined_before_a_refused_one_is_answered_first(serve_app, recording):
    url, _ = sidecar(serve_app, recording.url)
    good = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
    responses, closed = _send_and_read(url, good + REFUSED["obs_fold"][0], n=2)
    assert [r["status"] for r in responses] == [200, 400] and closed
    seen = recording.seen()
    assert b"GET /first " in seen and b"X-A" not in seen and b"predict" not in seen


def test_http10_without_host_is_still_served(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream)
    (r,), closed = _send_and_read(url, b"GET /v2/health/ready HTTP/1.0\r\n\r\n")
    assert r["status"] == 200 and closed


# --- finding 3: a cap on connections ----------------------------------------------------------


def test_connections_past_the_cap_get_503_and_a_close(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream, max_connections=8)
    held = [connect(url) for _ in range(8)]
    for s in held:
        s.sendall(b"GET /v2/health/ready HTTP/1.1\r\n")  # half-sent requests
    time.sleep(0.3)  # the sidecar has accepted them
    try:
        (r,), closed = _send_and_read(url, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r["status"] == 503 and "too many connections" in _error_of(r) and closed
        assert r["headers"]["retry-after"] == "1"
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while True:  # the closes reach the sidecar: served again
        try:
            answer = httpx.get(f"{url}/infertap/metrics", timeout=5)
            if answer.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "not served again after the held connections closed"
        time.sleep(0.1)
    assert 'reason="too_many_connections"' in answer.text


# --- finding 4: deep ingest events ------------------------------------------------------------


def test_a_deeply_nested_structured_ingest_event_is_a_400_with_a_sentence(serve_app, upstream):
    url, delivery = sidecar(serve_app, upstream)
    event = b'{"id": "1", "source": "s", "type": "t", "specversion": "1.0", "data": %b}' % (b"[" * 5000 + b"]" * 5000)
    r = httpx.post(f"{url}/", content=event, headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 400 and "nests too deeply" in r.json()["error"]
    assert delivery.events == []
