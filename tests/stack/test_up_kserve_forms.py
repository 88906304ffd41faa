"""`infertap up` with KServe's explainer and transformer forms (issue 14), for real.

One `up` runs three InferenceServices from one file, each child a real process, events read
back from the session's embedded broker with a plain kafka-python consumer:

- `iris-forms`: the predictor with its logger; a transformer (`command: [python, -m,
  tests.stack.scale_transformer]`, KServe-style `--predictor_host`/`--http_port`) with its
  logger in front of it; KServe's `explainer.alibi` block naming a locally built KServe
  artefact (a folder with `explainer.dill`), opted in with `infertap.io/allow-pickle`, and
  the explainer's own logger.
- `iris-kserve`: KServe's alibi explainer image as a custom container: positional
  `AnchorTabular` after `--storage_uri=/mnt/models`, `STORAGE_URI` in its env.
- `digits-art`: KServe's `explainer.art` block (SquareAttack) over the digits CNN, and an
  image-only transformer, which is skipped with a note.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from kafka import KafkaConsumer

from tests.conftest import ROOT, Child, unique
from tests.stack.kserve_artefacts import IRIS_FEATURES

pytestmark = pytest.mark.timeout(600)

REQUEST = "org.kubeflow.serving.inference.request"


def data(event) -> object:
    """An event's JSON body (the SDK decodes application/json already; bytes otherwise)."""
    body = event.get_data()
    return json.loads(body) if isinstance(body, (bytes, str)) else body


def forms_yaml(folder: Path, models: Path, artefact: Path, url: str, pickle_opt_in: bool = True) -> Path:
    opt_in = '    infertap.io/allow-pickle: "true"\n' if pickle_opt_in else "    infertap.dev/team: demo\n"
    text = f"""
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris-forms
  annotations:
{opt_in}spec:
  predictor:
    logger: {{url: "{url}"}}
    model:
      modelFormat: {{name: sklearn}}
      storageUri: file://{models / "sklearn-iris"}
  transformer:
    logger: {{url: "{url}", mode: all}}
    containers:
      - name: kserve-container
        image: example/scale-transformer:latest
        command: [python, -m, tests.stack.scale_transformer]
        args: [--scale, "2", --http_port=8080, --predictor_host=iris-forms-predictor.default]
        readinessProbe: {{httpGet: {{path: /v1/models/iris-forms, port: 8080}}}}
  explainer:
    logger: {{url: "{url}"}}
    alibi:
      type: AnchorTabular
      storageUri: {artefact}
      config: {{threshold: "0.9", stop_on_first: "True"}}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris-kserve
  annotations:
{opt_in}spec:
  predictor:
    model:
      modelFormat: {{name: sklearn}}
      storageUri: file://{models / "sklearn-iris"}
  explainer:
    containers:
      - name: kserve-container
        image: kserve/alibi-explainer:v0.12.1
        args:
          - --model_name=iris-kserve
          - --http_port=8080
          - --predictor_host=iris-kserve-predictor.default
          - --enable_docs_url=true
          - --storage_uri=/mnt/models
          - AnchorTabular
          - --threshold=0.95
        env:
          - {{name: STORAGE_URI, value: "{artefact}"}}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: digits-art
spec:
  predictor:
    model:
      modelFormat: {{name: pytorch}}
      storageUri: file://{models / "torch-digits"}
  transformer:
    containers: [{{name: kserve-container, image: kserve/image-transformer:latest}}]
  explainer:
    art:
      type: SquareAttack
      config: {{nb_classes: "10", max_iter: "100"}}
"""
    path = folder / "forms.yaml"
    path.write_text(text)
    return path


def up_command(spec: Path, logs: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "infertap",
        "up",
        str(spec),
        "--log-dir",
        str(logs),
        "--predictor-port",
        "0",
        "--logger-port",
        "0",
        "--explainer-port",
        "0",
        "--ready-timeout",
        "240",
    ]


class Stack:
    def __init__(self, child: Child, state: list[dict], bootstrap: str, topic: str):
        self.child, self.bootstrap, self.topic = child, bootstrap, topic
        self.urls = {s["name"]: f"http://{s['host']}:{s['port']}" for s in state}
        self.state = state

    def events(self, done: Callable[[list], bool], timeout: float = 60.0) -> list:
        """Every event of the topic, read from the start until `done(events)` (or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            consumer = KafkaConsumer(
                self.topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest", group_id=None
            )
            found: list = []
            try:
                idle = 0
                while idle < 3 and time.monotonic() < deadline:
                    batches = consumer.poll(timeout_ms=500)
                    idle = 0 if batches else idle + 1
                    for batch in batches.values():
                        for r in batch:
                            message = ce_kafka.KafkaMessage(dict(r.headers), r.key, r.value)
                            found.append(ce_kafka.from_binary_event(message))
            finally:
                consumer.close()
            if done(found) or time.monotonic() >= deadline:
                return found
            time.sleep(0.5)


def _wait_for_table(child: Child, logs: Path, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise AssertionError(f"up exited {child.proc.returncode}:\n{child.tail(80)}")
        if (logs / "processes.json").exists() and "Ctrl-C stops everything" in child.log.read_text():
            return json.loads((logs / "processes.json").read_text())
        time.sleep(0.5)
    raise AssertionError(f"up not ready after {timeout}s:\n{child.tail(80)}")


@pytest.fixture(scope="module")
def artefact(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """KServe's alibi explainer artefact, built here (a folder with explainer.dill)."""
    folder = tmp_path_factory.mktemp("kserve-artefact") / "explainer"
    done = subprocess.run(
        [sys.executable, "-m", "tests.stack.kserve_artefacts", str(folder), str(models_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, artefact: Path, broker) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("kserve-forms")
    topic = unique("forms")
    spec = forms_yaml(folder, models_dir, artefact, f"kafka://{broker.bootstrap}/{topic}")
    child = Child(up_command(spec, folder / "logs"), folder / "up.log")
    try:
        state = _wait_for_table(child, folder / "logs", 480)
        yield Stack(child, state, broker.bootstrap, topic)
        child.proc.send_signal(signal.SIGINT)
        assert child.proc.wait(90) == 0, child.tail(40)
        for s in state:  # every child stopped
            with pytest.raises(ProcessLookupError):
                os.kill(s["pid"], 0)
    finally:
        child.stop()


def test_a_pickled_explainer_needs_the_annotation(tmp_path, models_dir, artefact):
    spec = forms_yaml(tmp_path, models_dir, artefact, "kafka://127.0.0.1:9/unused", pickle_opt_in=False)
    done = subprocess.run(up_command(spec, tmp_path / "logs"), cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        f"spec.explainer.alibi: {artefact} is a saved (pickled) explainer, which runs code when loaded, so it is "
        'loaded only with the annotation infertap.io/allow-pickle: "true" in metadata.annotations'
    ) in " ".join(done.stderr.split()), done.stderr
    assert "spec.explainer.containers[0].args:" in done.stderr  # the positional form's saved explainer too
    assert not (tmp_path / "logs" / "processes.json").exists()  # refused before anything started


def test_up_runs_every_component_with_a_sidecar_per_logger_block(stack):
    names = [s["name"] for s in stack.state]
    assert names == [
        "iris-forms/predictor",
        "iris-forms/logger",
        "iris-forms/transformer",
        "iris-forms/transformer-logger",
        "iris-forms/explainer",
        "iris-forms/explainer-logger",
        "iris-kserve/predictor",
        "iris-kserve/explainer",
        "digits-art/predictor",
        "digits-art/explainer",
    ], names  # the session's broker already listens: `up` starts none
    output = " ".join(stack.child.log.read_text().split())  # as printed, without the table's line breaks
    # the image-only transformer: one line says why it does not run
    assert "digits-art): spec.transformer.containers[0]: gives no command, only an image" in output
    assert "--enable_docs_url=true" in output  # KServe's model-server flag, listed as ignored
    assert f"send requests to {stack.urls['iris-forms/transformer-logger']}" in output


def test_the_transformer_sits_in_front_of_the_predictor_and_each_logger_logs_its_component(stack):
    row = [3.05, 1.55, 2.45, 0.65]
    reply = httpx.post(
        f"{stack.urls['iris-forms/transformer-logger']}/v1/models/iris-forms:predict",
        json={"instances": [row]},
        headers={"ce-id": "through-the-transformer"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-transformed-by"] == "scale-transformer"
    assert reply.json() == {"predictions": [1]}  # the doubled row is a versicolor; the raw one a setosa
    doubled = [v * 2 for v in row]

    def predictor_request(events):
        return [
            e
            for e in events
            if e.get_type() == REQUEST
            and e.get_attributes()["component"] == "predictor"
            and data(e) == {"instances": [doubled]}
        ]

    events = stack.events(lambda found: any(predictor_request(found)) and len(found) >= 4)
    mine = [e for e in events if e.get_id() == "through-the-transformer"]
    assert {(e.get_type(), e.get_attributes()["component"]) for e in mine} == {
        (REQUEST, "transformer"),
        ("org.kubeflow.serving.inference.response", "transformer"),
    }
    request = next(e for e in mine if e.get_type() == REQUEST)
    assert data(request) == {"instances": [row]}  # the transformer's logger saw the raw row
    [logged] = predictor_request(events)  # the predictor's logger saw what the transformer sent it
    assert logged.get_attributes()["inferenceservicename"] == "iris-forms"


def test_explain_on_the_predictors_sidecar_reaches_the_explainer_through_its_logger(stack):
    sidecar = stack.urls["iris-forms/logger"]
    v1 = httpx.post(
        f"{sidecar}/v1/models/iris-forms:explain",
        json={"instances": [[6.7, 3.0, 5.2, 2.3]]},
        headers={"ce-id": "explain-v1"},
        timeout=120,
    )
    assert v1.status_code == 200, v1.text
    [explanation] = v1.json()["explanations"]
    # KServe's artefact (alibi block, storageUri) was loaded: its own feature names and the config's threshold
    assert explanation["feature_names"] == IRIS_FEATURES and explanation["raw"]["meta"]["name"] == "AnchorTabular"
    assert explanation["prediction"] == 2.0 and explanation["raw"]["data"]["precision"] >= 0.9
    assert explanation["raw"]["meta"]["params"]["threshold"] == 0.9
    v2 = httpx.post(
        f"{sidecar}/v2/models/iris-forms-explainer/infer",
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]},
        headers={"ce-id": "explain-v2"},
        timeout=120,
    )
    assert v2.status_code == 200, v2.text  # V2 explain: routed to the explainer, not the model server's 404
    [output] = v2.json()["outputs"]
    inner = json.loads(output["data"][0])
    assert inner["explainer"] == "AnchorTabular" and inner["explanations"][0]["prediction"] == 0.0

    ids = {"explain-v1", "explain-v2"}
    events = stack.events(lambda found: len([e for e in found if e.get_id() in ids]) >= 4)
    explained = [e for e in events if e.get_id() in ids]
    assert len(explained) == 4, [(e.get_id(), e.get_type()) for e in explained]
    assert {e.get_attributes()["component"] for e in explained} == {"explainer"}
    response = next(
        e for e in explained if e.get_id() == "explain-v1" and e.get_type() != REQUEST
    )  # the explanation itself is logged
    assert data(response)["explanations"][0]["feature_names"] == IRIS_FEATURES
    # nothing of the explain calls under the predictor: neither the routed call nor the explainer's own predicts
    assert not [e for e in events if e.get_id() in ids and e.get_attributes()["component"] != "explainer"]


def test_kserves_positional_alibi_args_run_the_saved_explainer(stack):
    reply = httpx.post(
        f"{stack.urls['iris-kserve/explainer']}/v1/models/iris-kserve:explain",
        json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    [explanation] = reply.json()["explanations"]
    assert explanation["feature_names"] == IRIS_FEATURES  # the dill from $STORAGE_URI, not a refit
    assert explanation["raw"]["meta"]["params"]["threshold"] == 0.95  # --threshold after the sub-command
    assert explanation["prediction"] == 0.0


def test_arts_square_attack_finds_an_adversarial_digit(stack, models_dir):
    digit = np.load(models_dir / "torch-digits" / "reference.npy")[0].reshape(8, 8, 1)
    reply = httpx.post(
        f"{stack.urls['digits-art/explainer']}/v1/models/digits-art:explain",
        json={"instances": [digit.tolist()]},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    [explanation] = reply.json()["explanations"]
    raw = explanation["raw"]
    assert raw["found"] and raw["adversarial_prediction"] != raw["prediction"] == explanation["target"]
    adversarial = np.asarray(raw["adversarial_example"])
    assert adversarial.shape == (8, 8, 1) and raw["L2 error"] > 0
    assert np.abs(adversarial - digit).max() <= 0.3 + 1e-6  # within eps (ART's inf norm)
    predicted = httpx.post(
        f"{stack.urls['digits-art/predictor']}/v1/models/digits-art:predict",
        json={"instances": adversarial.reshape(1, 64).tolist()},
        timeout=30,
    ).json()["predictions"][0]
    assert int(np.argmax(predicted)) == raw["adversarial_prediction"]  # the model really is fooled
