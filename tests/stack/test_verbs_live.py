"""`infertap serve`, `infertap logger` and `infertap broker` as real processes, and SIGTERM on `up`."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import httpx
import pytest
from cli_support import free_port

from infertap.stack.broker import is_listening

pytestmark = pytest.mark.timeout(300)
IRIS = {"instances": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]}


def test_serve_and_logger_verbs_from_flags(spawn, tmp_path, models_dir):
    serve_port, logger_port = free_port(), free_port()
    events = tmp_path / "events.jsonl"
    server = spawn(
        [
            sys.executable,
            "-m",
            "infertap",
            "serve",
            "--model-name",
            "iris",
            "--model-format",
            "sklearn",
            "--storage-uri",
            f"file://{models_dir / 'sklearn-iris'}",
            "--http-port",
            str(serve_port),
        ],
        name="serve",
    )
    server.wait_http(f"http://127.0.0.1:{serve_port}/v2/health/ready")
    sidecar = spawn(
        [
            sys.executable,
            "-m",
            "infertap",
            "logger",
            "--port",
            str(logger_port),
            "--component-port",
            str(serve_port),
            "--log-url",
            f"file://{events}",
            "--log-mode",
            "request",
            "--inference-service",
            "iris",
            "--namespace",
            "ns1",
            "--metadata-headers",
            "x-a,x-b",
            "--metadata-annotations",
            "team=risk",
        ],
        name="logger",
    )
    sidecar.wait_http(f"http://127.0.0.1:{logger_port}/v2/health/ready")
    reply = httpx.post(
        f"http://127.0.0.1:{logger_port}/v1/models/iris:predict",
        json=IRIS,
        headers={"ce-id": "verb-1", "x-a": "1"},
        timeout=30,
    )
    assert reply.status_code == 200 and reply.json()["predictions"] == [1, 0]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (events.exists() and events.read_text().strip()):
        time.sleep(0.2)
    [line] = events.read_text().splitlines()  # request mode: no response event
    event = json.loads(line)
    assert (event["id"], event["type"]) == ("verb-1", "org.kubeflow.serving.inference.request")
    assert (event["inferenceservicename"], event["namespace"]) == ("iris", "ns1")
    assert json.loads(event["annotations"]) == {"team": "risk"}
    assert "x-a" in event["metadata"].lower()


def test_broker_verb_runs_until_sigterm(spawn):
    port = free_port()
    child = spawn([sys.executable, "-m", "infertap", "broker", "--port", str(port)], name="broker")
    deadline = time.monotonic() + 60
    while not is_listening("127.0.0.1", port):
        assert child.proc.poll() is None, child.tail()
        assert time.monotonic() < deadline, child.tail()
        time.sleep(0.1)
    os.kill(child.proc.pid, signal.SIGTERM)
    assert child.proc.wait(30) == 0
    assert not is_listening("127.0.0.1", port)


def test_up_stops_everything_on_sigterm(spawn, tmp_path, models_dir):
    spec = tmp_path / "isvc.yaml"
    spec.write_text(f"""\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {{name: iris}}
spec:
  predictor:
    model:
      modelFormat: {{name: sklearn}}
      storageUri: {models_dir / "sklearn-iris"}
""")
    up = spawn(
        [
            sys.executable,
            "-m",
            "infertap",
            "up",
            str(spec),
            "--log-dir",
            str(tmp_path / "logs"),
            "--predictor-port",
            str(free_port()),
        ],
        name="up",
    )
    state_file = tmp_path / "logs" / "processes.json"
    deadline = time.monotonic() + 120
    while "Ctrl-C stops everything" not in up.log.read_text():
        assert up.proc.poll() is None and time.monotonic() < deadline, up.tail()
        time.sleep(0.2)
    [predictor] = json.loads(state_file.read_text())
    os.kill(up.proc.pid, signal.SIGTERM)
    assert up.proc.wait(60) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(predictor["pid"], 0)
    assert "stopped 1 child process (signal SIGTERM)" in up.log.read_text()
