"""Data quality end to end (issue 18): real model server, logger sidecars, broker and detector workers.

Traffic goes through the logger sidecar to the sklearn iris model; the logger puts the
CloudEvents on Kafka; DataQuality workers judge windows of them. Two workers, each on the
topic of its own sidecar:

- `iris-quality`: the four iris features as V1 rows, checked against the schema `infertap fit`
  (the CLI) inferred from the reference and saved as a folder of JSON. A window resampled from the reference
  reports nothing; the next window, with values planted in exactly known features (nulls in
  sepal_width, text in sepal_length, a petal_length far beyond the reference, three copies of
  one row), reports exactly those features and checks, with the planted rows' event ids.
- `iris-colour`: V2 requests with a petal_length FP32 tensor and a colour BYTES tensor (the
  model answers them 400: it takes one tensor; the requests are logged all the same), against a
  schema declared whole in the spec; a colour outside the declared categories is reported on
  exactly that feature and check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, free_port, unique
from tests.detectors.conftest import body, metric

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
WINDOW = 20


@pytest.fixture
def iris_logged(spawn, models_dir, broker, kafka):
    """The iris model server and two logger sidecars in front of it, each writing to a fresh topic
    (one partition, so count windows follow the order of the traffic); returns ({sidecar: url}, {sidecar: topic})."""
    model_port = free_port()
    model = spawn(
        [
            sys.executable,
            "-m",
            "infertap.serving",
            "--model-name",
            "sklearn-iris",
            "--model-format",
            "sklearn",
            "--storage-uri",
            str(models_dir / "sklearn-iris"),
            "--http-port",
            str(model_port),
        ],
        name="serving",
    )
    urls, topics, loggers = {}, {}, []
    for name in ("v1", "v2"):
        topics[name] = unique(f"iris-{name}-events")
        kafka.create_topic(topics[name], 1)
        port = free_port()
        loggers.append(
            spawn(
                [
                    sys.executable,
                    "-m",
                    "infertap.sidecar",
                    "--port",
                    str(port),
                    "--component-port",
                    str(model_port),
                    "--inference-service",
                    "sklearn-iris",
                    "--log-url",
                    f"kafka://{broker.bootstrap}/{topics[name]}",
                ],
                name=f"logger-{name}",
            )
        )
        urls[name] = f"http://127.0.0.1:{port}"
    model.wait_http(f"http://127.0.0.1:{model_port}/v2/health/ready", timeout=120)
    for logger, url in zip(loggers, urls.values(), strict=True):
        logger.wait_http(f"{url}/infertap/metrics")
    return urls, topics


def post_v1(client: httpx.Client, url: str, row: list) -> tuple[str, int]:
    """One V1 request through the sidecar with its own CloudEvent id; (id, status)."""
    eid = str(uuid.uuid4())
    reply = client.post(f"{url}/v1/models/sklearn-iris:predict", json={"instances": [row]}, headers={"ce-id": eid})
    return eid, reply.status_code


def post_v2(client: httpx.Client, url: str, length: float, colour: str) -> tuple[str, int]:
    eid = str(uuid.uuid4())
    inputs = [
        {"name": "petal_length", "datatype": "FP32", "shape": [1], "data": [length]},
        {"name": "colour", "datatype": "BYTES", "shape": [1], "data": [colour]},
    ]
    reply = client.post(f"{url}/v2/models/sklearn-iris/infer", json={"inputs": inputs}, headers={"ce-id": eid})
    return eid, reply.status_code


def violations(detection: dict) -> set[tuple[str, str]]:
    return {(v["feature"], v["check"]) for v in detection["violations"]}


def test_planted_violations_are_reported_on_exactly_their_features_and_checks(
    iris_logged, broker, kafka, detector_yaml, start_detector, models_dir, tmp_path
):
    urls, topics = iris_logged
    x_ref = np.load(models_dir / "sklearn-iris" / "reference.npy").astype(np.float64)
    pd.DataFrame(x_ref, columns=IRIS).to_csv(tmp_path / "iris.csv", index=False)
    spec = {
        "source": {
            "inferenceService": "sklearn-iris",
            "topic": topics["v1"],
            "bootstrap": broker.bootstrap,
            "consumerGroup": unique("dq"),
        },
        "features": [{"name": n} for n in IRIS],
        "detector": {"name": "DataQuality", "savedDetector": "iris-quality"},
        "window": {"size": WINDOW},
        "outputs": {"topic": f"{topics['v1']}-detections", "deadLetterTopic": f"{topics['v1']}-dl"},
    }
    inferred = detector_yaml("iris-quality", spec)
    # `infertap fit`: the schema inferred from the reference, saved as a folder of JSON the worker loads
    done = subprocess.run(
        [sys.executable, "-m", "infertap", "fit", str(inferred), "--reference", str(tmp_path / "iris.csv")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DataQuality): fitted on 150 rows" in done.stdout  # its progress: test_data_quality.py, in-process
    assert sorted(p.name for p in (tmp_path / "iris-quality").iterdir()) == ["infertap-detector.json", "schema.json"]
    declared = detector_yaml(
        "iris-colour",
        {
            "source": {
                "inferenceService": "sklearn-iris",
                "topic": topics["v2"],
                "bootstrap": broker.bootstrap,
                "consumerGroup": unique("dq"),
            },
            "features": [
                {"name": "petal_length"},
                {"name": "colour", "type": "categorical", "categories": ["red", "blue"]},
            ],
            "detector": {
                "name": "DataQuality",
                "params": {"schema": {"petal_length": {"type": "numeric", "min": 1, "max": 7}}},
            },
            "window": {"size": 5},
            "outputs": {"topic": f"{topics['v2']}-detections", "deadLetterTopic": f"{topics['v2']}-dl"},
        },
    )
    quality = start_detector(inferred, name="iris-quality")
    start_detector(declared, name="iris-colour")

    rng = np.random.default_rng(11)
    distinct = np.unique(x_ref.round(1), axis=0)  # iris repeats a flower: no duplicates by chance
    picks = distinct[rng.choice(len(distinct), 2 * WINDOW, replace=False)].tolist()
    clean, planted = picks[:WINDOW], picks[WINDOW:]
    for i in (2, 5, 8):
        planted[i][1] = None  # sepal_width missing in 3 of 20 rows: above the reference's 0% + 5 points
    planted[11][0] = "5.1cm"  # text where sepal_length is a number
    planted[13][2] = 50.0  # petal_length beyond the reference's [1.0, 6.9] widened by 10%
    planted[17] = planted[18] = planted[16]  # two repeats of one row
    with httpx.Client(timeout=30) as client:
        for row in clean:
            _, status = post_v1(client, urls["v1"], row)
            assert status == 200
        sent = [post_v1(client, urls["v1"], row) for row in planted]
        colours = [post_v2(client, urls["v2"], 1.4, c) for c in ("red", "blue", "red", "blue", "red")]
        colours += [post_v2(client, urls["v2"], 4.5, c) for c in ("blue", "purple", "red", "blue", "red")]
    assert {sent[i][1] for i in (2, 5, 8, 11)} == {400}  # the model refuses nulls and text; logged all the same
    assert sent[13][1] == 200 and {s for _, s in colours} == {400}

    first, second = (body(e) for e in kafka.read(f"{topics['v1']}-detections", 2, timeout=120)[:2])
    assert first["n"] == WINDOW and first["violations"] == [] and first["is_alert"] is False, first["violations"]
    assert second["n"] == WINDOW and second["is_alert"] is True
    assert violations(second) == {
        ("sepal_width", "missing"),
        ("sepal_length", "type"),
        ("petal_length", "range"),
        ("_all", "duplicate"),
    }
    found = {(v["feature"], v["check"]): v for v in second["violations"]}
    ids = [eid for eid, _ in sent]
    assert found["sepal_width", "missing"]["count"] == 3
    assert [e["event_id"] for e in found["sepal_width", "missing"]["examples"]] == [ids[2], ids[5], ids[8]]
    assert found["sepal_length", "type"]["examples"] == [{"row": 11, "value": "5.1cm", "event_id": ids[11]}]
    assert found["petal_length", "range"]["examples"] == [{"row": 13, "value": 50.0, "event_id": ids[13]}]
    assert found["_all", "duplicate"]["count"] == 2
    assert [e["event_id"] for e in found["_all", "duplicate"]["examples"]] == [ids[17], ids[18]]
    assert second["event_ids"] == ids

    a, b = (body(e) for e in kafka.read(f"{topics['v2']}-detections", 2, timeout=120)[:2])
    assert a["violations"] == [] and [f["name"] for f in a["quality"]] == ["petal_length", "colour"]
    assert violations(b) == {("colour", "unseen")}
    assert b["violations"][0]["examples"] == [{"row": 1, "value": "purple", "event_id": colours[6][0]}]

    labels = {"inference_service": "sklearn-iris", "detector": "DataQuality"}  # the backend, as every detector
    url = quality.metrics_url
    assert metric(url, "infertap_data_quality_violation", feature="sepal_width", check="missing", **labels) == 1
    assert metric(url, "infertap_data_quality_violation", feature="petal_width", check="missing", **labels) == 0
    assert metric(url, "infertap_data_quality_share", feature="sepal_width", check="missing", **labels) == 0.15
    assert metric(url, "infertap_data_quality_violations_total", feature="_all", check="duplicate", **labels) == 1
