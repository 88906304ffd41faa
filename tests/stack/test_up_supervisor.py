"""Issue 14: `infertap up` as a supervisor. Children killed with SIGKILL come back (restartPolicy:
Always) while the others keep serving; a process on the broker port that is not Kafka is
refused with a sentence; a child that never starts ends `up` after N tries, saying why."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from cli_support import free_port
from test_up import spec_file, start_up, wait_for_state

pytestmark = pytest.mark.timeout(300)

DETECTOR = """
---
apiVersion: infertap.dev/v1alpha1
kind: Detector
metadata:
  name: iris-drift
spec:
  source: {{inferenceService: sklearn-iris, events: request}}
  features:
    - {{name: sepal_length}}
    - {{name: sepal_width}}
    - {{name: petal_length}}
    - {{name: petal_width}}
  detector:
    name: ScipyKS
    params: {{p_val: 0.05}}
    reference: {reference}
  window: {{size: 20}}
"""


def _state(tmp_path: Path) -> dict[str, dict]:
    return {p["role"]: p for p in json.loads((tmp_path / "logs" / "processes.json").read_text())}


def _predict(port: int) -> int:
    try:
        return httpx.post(
            f"http://127.0.0.1:{port}/v1/models/sklearn-iris:predict",
            json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
            timeout=5,
        ).status_code
    except httpx.HTTPError:
        return 0


def _back(up, tmp_path: Path, role: str, old_pid: int, timeout: float = 90.0) -> dict:
    """The child of `role` once `up` restarted it (a new pid, and said so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert up.proc.poll() is None, up.tail(80)
        child = _state(tmp_path)[role]
        if child["pid"] != old_pid and f"restarted {child['name']} pid {child['pid']}" in up.log.read_text():
            return child
        time.sleep(0.2)
    raise AssertionError(f"{role} not restarted in {timeout}s:\n{up.tail(80)}")


def test_killed_children_come_back_and_inference_goes_on(spawn, tmp_path, models_dir):
    broker_port = free_port()
    spec = spec_file(tmp_path, models_dir / "sklearn-iris", f"kafka://127.0.0.1:{broker_port}/sup-events")
    spec.write_text(spec.read_text() + DETECTOR.format(reference=models_dir / "sklearn-iris" / "reference.npy"))
    up, ports = start_up(spawn, tmp_path, spec, "--detector-port", str(free_port()))
    wait_for_state(up, tmp_path, 4)
    assert _predict(ports["logger"]) == 200

    # the predictor: the sidecar answers 502 meanwhile, then inference through it again
    predictor = _state(tmp_path)["predictor"]
    os.kill(predictor["pid"], signal.SIGKILL)
    _back(up, tmp_path, "predictor", predictor["pid"])
    assert _predict(ports["logger"]) == 200
    output = up.log.read_text()
    assert f"sklearn-iris/predictor (pid {predictor['pid']}) was killed by SIGKILL; restarting it in" in output

    # the logger sidecar: the model server keeps serving directly meanwhile
    logger = _state(tmp_path)["logger"]
    os.kill(logger["pid"], signal.SIGKILL)
    assert _predict(ports["predictor"]) == 200
    _back(up, tmp_path, "logger", logger["pid"])
    assert _predict(ports["logger"]) == 200

    # a detector worker
    detector = _state(tmp_path)["detector"]
    os.kill(detector["pid"], signal.SIGKILL)
    _back(up, tmp_path, "detector", detector["pid"])
    assert _predict(ports["logger"]) == 200
    assert up.proc.poll() is None

    os.kill(up.proc.pid, signal.SIGINT)
    assert up.proc.wait(60) == 0, up.tail(60)


class _Garbage:
    """A plain TCP server on a port that answers anything with garbage (not Kafka)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                except OSError:
                    pass


def test_a_fake_broker_port_is_refused_with_a_sentence(spawn, tmp_path, models_dir):
    fake = _Garbage()
    try:
        spec = spec_file(tmp_path, models_dir / "sklearn-iris", f"kafka://127.0.0.1:{fake.port}/t")
        up, _ = start_up(spawn, tmp_path, spec)
        assert up.proc.wait(60) == 2, up.tail()
        output = up.log.read_text()
        assert f"127.0.0.1:{fake.port} is in use by something that is not a Kafka broker" in output
        assert "Kafka ApiVersions request" in output and "Traceback" not in output
    finally:
        fake.sock.close()


def test_the_real_broker_passes_the_probe(broker):
    from infertap.stack.broker import kafka_probe_error

    assert kafka_probe_error(broker.host, broker.port) is None
    assert "did not answer" in (kafka_probe_error("127.0.0.1", free_port()) or "")


def test_a_port_in_use_fails_up_with_a_sentence(spawn, tmp_path, models_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = spec_file(tmp_path, models_dir / "sklearn-iris", None)
        up = spawn(
            [sys.executable, "-m", "infertap", "up", str(spec), "--log-dir", str(tmp_path / "logs")]
            + ["--predictor-port", str(port), "--no-broker"],
            name="infertap-up",
        )
        assert up.proc.wait(60) == 2, up.tail()
    assert f"port {port} on 127.0.0.1 (for the predictor of sklearn-iris) is already in use" in up.log.read_text()
