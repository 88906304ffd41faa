"""The load generator against a real loopback HTTP server: counts, errors, framing, bounds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.loadgen import LoadSpec, percentile, run_load

pytestmark = pytest.mark.fast  # starts no process (make test-fast)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the model servers
    seen: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        _Handler.seen.append(body)
        if self.path == "/fail":
            self._reply(500, b'{"error": "boom"}')
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for part in (b'{"ok":', b" true}"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._reply(200, b'{"predictions": [1]}')

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_counts_exactly_the_requested_replies(server: str) -> None:
    _Handler.seen.clear()
    result = asyncio.run(
        run_load(LoadSpec(url=server + "/ok", body=b'{"x": 1}', concurrency=4, duration_s=30, requests=50, warmup_s=0))
    )
    assert result.requests == 50 and result.errors == 0
    assert result.status_counts == {"200": 50}
    assert result.throughput_rps > 0 and 0 < result.latency_ms["p50"] <= result.latency_ms["p99"]
    assert set(_Handler.seen) == {b'{"x": 1}'}  # the body arrives intact on every request


def test_unexpected_status_is_an_error_not_a_success(server: str) -> None:
    result = asyncio.run(
        run_load(LoadSpec(url=server + "/fail", body=b"{}", concurrency=2, duration_s=0.5, warmup_s=0))
    )
    assert result.requests == 0 and result.errors > 0
    assert result.status_counts.get("500") == result.errors
    assert "boom" in result.error_samples[0]
    assert result.latency_ms["p50"] is None


def test_reads_chunked_replies(server: str) -> None:
    result = asyncio.run(
        run_load(LoadSpec(url=server + "/chunked", body=b"{}", concurrency=2, duration_s=30, requests=20, warmup_s=0))
    )
    assert result.requests == 20 and result.errors == 0


def test_refused_connections_are_counted() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        result = asyncio.run(
            run_load(LoadSpec(url=f"http://127.0.0.1:{port}/", concurrency=1, duration_s=0.3, warmup_s=0))
        )
    assert result.requests == 0 and result.errors > 0


@pytest.mark.parametrize(
    "spec",
    [
        LoadSpec(url="http://10.1.2.3:80/"),  # not loopback
        LoadSpec(url="https://127.0.0.1:443/"),  # no TLS
        LoadSpec(url="http://127.0.0.1:80/", concurrency=0),
        LoadSpec(url="http://127.0.0.1:80/", duration_s=10_000),
    ],
)
def test_refuses_out_of_bounds_specs(spec: LoadSpec) -> None:
    with pytest.raises(ValueError):
        asyncio.run(run_load(spec))


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
