"""The logger sidecar's HTTP hop against a hostile client, as a real process (issue 19): a
header that never ends is refused early and cheaply while other clients are served, and a
deeply nested ingest event is a 400, not a 500.

The sidecar (`python -m infertap.sidecar`) and its model server (`tests/sidecar/tap_upstream.py`)
are child processes on 127.0.0.1; the sidecar's CPU time and resident memory are read from
/proc. The bounds are generous (before the fix, 225 MiB of header cost 71.6 s of CPU and
220 MiB of memory): these tests check that the work is bounded, benchmarks measure speed.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

MiB = 1024 * 1024
UPSTREAM = ROOT / "tests" / "sidecar" / "tap_upstream.py"


@pytest.fixture
def sidecar_process(spawn, tmp_path: Path):
    """(base URL, pid) of a sidecar in front of a tap_upstream model server."""
    model_port, port = free_port(), free_port()
    model = spawn([sys.executable, str(UPSTREAM), "--port", str(model_port), "--name", "model"], name="model")
    model.wait_http(f"http://127.0.0.1:{model_port}/v2/health/ready")
    args = ["--port", str(port), "--component-port", str(model_port)]
    args += ["--log-url", f"file://{tmp_path / 'events.jsonl'}", "--spool-dir", str(tmp_path / "spool")]
    child = spawn([sys.executable, "-m", "infertap.sidecar", *args], name="sidecar")
    child.wait_http(f"http://127.0.0.1:{port}/infertap/metrics")
    return f"http://127.0.0.1:{port}", child.proc.pid


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _flood(url: str, total: int) -> tuple[bytes, int]:
    """Send a head whose one header never ends, up to `total` bytes; returns what came back
    and how many bytes the kernel took before the sidecar closed."""
    port = httpx.URL(url).port
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:

        def send() -> None:
            nonlocal sent
            try:
                s.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nX-Big: ")
                chunk = b"a" * 65536
                while sent < total:
                    s.sendall(chunk)
                    sent += len(chunk)
            except OSError:  # closed by the sidecar: expected
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        sender.join(10)
    return answer, sent


def _wait_for(ready, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "the other client got no answers"
        time.sleep(0.01)


def test_never_ending_headers_are_refused_cheaply_while_others_are_served(sidecar_process):
    url, pid = sidecar_process
    cpu, rss = _cpu_s(pid), _rss_mib(pid)
    served: list[int] = []
    stop = threading.Event()

    def predict() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                served.append(client.post(f"{url}/v1/models/m:predict", content=b"{}").status_code)

    other = threading.Thread(target=predict, daemon=True)
    other.start()
    try:
        _wait_for(lambda: len(served) >= 1)  # the other client is being served before the floods
        before = len(served)
        for _ in range(10):  # 640 MiB offered in all
            answer, sent = _flood(url, 64 * MiB)
            assert answer.startswith(b"HTTP/1.1 431 ") and b'"error"' in answer, answer[:200]
            assert sent < 32 * MiB
        _wait_for(lambda: len(served) >= before + 3)  # and still is after them (floods end in milliseconds)
    finally:
        stop.set()
        other.join(10)
    assert served and set(served) == {200}  # every request of the other client answered, none lost
    assert _cpu_s(pid) - cpu < 20  # bounded work (was 71.6 s for 225 MiB)
    assert _rss_mib(pid) - rss < 64  # nothing kept (was +220 MiB)


def test_deeply_nested_ingest_event_is_a_400_with_a_sentence(sidecar_process):
    url, pid = sidecar_process
    event = b'{"id": "1", "source": "s", "type": "t", "specversion": "1.0", "data": %b}' % (b"[" * 5000 + b"]" * 5000)
    r = httpx.post(f"{url}/", content=event, headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 400, r.text[:300]
    assert "nests too deeply" in r.json()["error"]
    assert httpx.get(f"{url}/infertap/metrics").status_code == 200
