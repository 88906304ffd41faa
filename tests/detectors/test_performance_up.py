"""`infertap up` with a RealisedPerformance Detector: the worker runs as `up`'s child, the logger
takes the feedback and logs the client's X-Request-Id as the event id, the figures come out."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_iris

from tests.conftest import free_port, unique
from tests.detectors.conftest import KafkaTools, body

pytestmark = pytest.mark.timeout(300)
CLASSES = ["setosa", "versicolor", "virginica"]

SPEC = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {{name: {isvc}}}
spec:
  predictor:
    logger: {{mode: all, url: "kafka://127.0.0.1:{broker}/{isvc}-events"}}
    model:
      modelFormat: {{name: sklearn}}
      storageUri: file://{model}
---
apiVersion: infertap.dev/v1alpha1
kind: Detector
metadata: {{name: {isvc}-perf}}
spec:
  source: {{inferenceService: {isvc}}}
  detector:
    name: RealisedPerformance
    params: {{task: classification, classes: [setosa, versicolor, virginica]}}
  window: {{size: 12}}
"""


def wait_for(up, log_dir: Path, count: int, timeout: float = 150.0) -> list[dict]:
    """processes.json once `up` has started `count` children and printed its table."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.proc.poll() is not None:
            raise AssertionError(f"up exited {up.proc.returncode}:\n{up.tail(80)}")
        state = log_dir / "processes.json"
        if state.exists() and "Ctrl-C stops everything" in up.log.read_text():
            processes = json.loads(state.read_text())
            if len(processes) == count:
                return processes
        time.sleep(0.3)
    raise AssertionError(f"up not ready after {timeout}s:\n{up.tail(80)}")


def test_up_runs_the_worker_and_wires_the_logger(spawn, tmp_path: Path, models_dir: Path) -> None:
    isvc, broker = unique("upperf"), free_port()
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(isvc=isvc, broker=broker, model=models_dir / "sklearn-iris"))
    logs, logger_port = tmp_path / "logs", free_port()
    up = spawn(
        [
            sys.executable,
            "-m",
            "infertap",
            "up",
            str(spec),
            "--log-dir",
            str(logs),
            "--predictor-port",
            str(free_port()),
            "--logger-port",
            str(logger_port),
            "--detector-port",
            str(free_port()),
        ],
        name="infertap-up",
    )
    processes = wait_for(up, logs, 4)
    assert [p["role"] for p in processes] == ["broker", "predictor", "logger", "detector"]
    said = " ".join(up.log.read_text().split())  # the table wraps long notes
    assert "takes the event id from the request's X-Request-Id header" in said
    url = f"http://127.0.0.1:{logger_port}"
    iris = load_iris()
    rows = np.random.default_rng(3).permutation(150)[:12]
    predicted, labels = {}, []
    with httpx.Client(timeout=30) as client:
        for k, i in enumerate(rows):
            ident = f"client-{k}"
            reply = client.post(
                f"{url}/v1/models/{isvc}:predict",
                json={"instances": [iris.data[i].tolist()]},
                headers={"X-Request-Id": ident},  # no ce-id: the sidecar takes this id, as `up` set it
            )
            assert reply.status_code == 200, reply.text
            predicted[ident] = CLASSES[reply.json()["predictions"][0]]
            truth = int(iris.target[i]) if k % 4 else (int(iris.target[i]) + 1) % 3  # every 4th label wrong
            labels.append({"id": ident, "target": CLASSES[truth]})
        assert client.post(f"{url}/v1/models/{isvc}/feedback", json=[{"id": "x", "target": "dog"}]).status_code == 400
        assert client.post(f"{url}/v1/models/{isvc}/feedback", json=labels).status_code == 202
    kafka = KafkaTools(f"127.0.0.1:{broker}")
    try:
        events = [
            e for e in kafka.read(f"{isvc}-detections", 1, timeout=120) if e.get_type() == "io.infertap.performance"
        ]
    finally:
        kafka.close()
    assert events, up.tail(80)
    window = body(events[0])
    direct = sum(predicted[item["id"]] == item["target"] for item in labels) / len(labels)
    assert window["n"] == 12 and window["accuracy"] == direct
    assert window["roc_auc"] is None  # the responses held labels, no probabilities
    assert sorted((logs / "state" / f"{isvc}-perf").glob("partition-*.sqlite")), "the state lives under the log folder"
