"""CBPE on the stream, end to end with real processes: a classifier the test trains, served with
probabilities (PREDICT_PROBA) behind the logger sidecar, events on the embedded broker, `infertap fit`
on a labelled reference, the worker (`infertap detect`) on the responses. Shifted traffic costs the
model accuracy; the estimate follows it, its band covers the realised figure, the drop is flagged on
the topic and the gauges; a replay of the same rows writes the same estimates, plus the realised lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import joblib
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from tests.conftest import ROOT, free_port, unique
from tests.detectors.conftest import body, metric
from tests.detectors.test_performance_estimation import binary_rows

WINDOW = 250
SHIFTS = (0.0, 0.0, 2.5, 2.5)  # two windows as the reference, two on the decision boundary
TRANSPORT = ("offsets", "window_start", "window_end")


@pytest.fixture
def classifier(tmp_path: Path):
    """A logistic regression saved as the sklearn runtime loads it, its labelled reference, and traffic."""
    rng = np.random.default_rng(11)
    model = LogisticRegression().fit(*binary_rows(rng, 5000))
    folder = tmp_path / "model"
    folder.mkdir()
    joblib.dump(model, folder / "model.joblib")
    x_ref, y_ref = binary_rows(rng, 4 * WINDOW * 4)
    p_ref = model.predict_proba(x_ref)
    pd.DataFrame({"p0": p_ref[:, 0], "p1": p_ref[:, 1], "label": y_ref}).to_csv(tmp_path / "ref.csv", index=False)
    traffic = [binary_rows(rng, WINDOW, shift) for shift in SHIFTS]
    return model, folder, traffic


def serve(spawn, folder: Path, bootstrap: str, topic: str) -> str:
    """Model server (probabilities) and logger sidecar to Kafka; the sidecar's URL."""
    model_port, logger_port = free_port(), free_port()
    server = spawn(
        [
            sys.executable,
            "-m",
            "infertap.serving",
            "--model-name",
            "clf",
            "--model-format",
            "sklearn",
            "--storage-uri",
            str(folder),
            "--http-port",
            str(model_port),
            "--predict-proba",
        ],
        name="serving",
    )
    server.wait_http(f"http://127.0.0.1:{model_port}/v2/health/ready", timeout=120)
    logger = spawn(
        [
            sys.executable,
            "-m",
            "infertap.sidecar",
            "--port",
            str(logger_port),
            "--component-port",
            str(model_port),
            "--inference-service",
            "clf",
            "--log-url",
            f"kafka://{bootstrap}/{topic}",
        ],
        name="logger",
    )
    logger.wait_http(f"http://127.0.0.1:{logger_port}/infertap/metrics")
    return f"http://127.0.0.1:{logger_port}"


def test_cbpe_estimate_follows_realised_accuracy_on_shifted_traffic(
    spawn, broker, kafka, classifier, detector_yaml, start_detector, tmp_path: Path
) -> None:
    model, folder, traffic = classifier
    topic = unique("clf-events")
    kafka.create_topic(topic, 1)  # one partition: windows follow the order of the traffic
    url = serve(spawn, folder, broker.bootstrap, topic)
    spec = {
        "source": {
            "inferenceService": "clf",
            "topic": topic,
            "bootstrap": broker.bootstrap,
            "events": "response",
            "consumerGroup": unique("cbpe"),
        },
        "features": [{"name": "p0"}, {"name": "p1"}],
        "detector": {"name": "CBPE", "params": {"target": "label"}, "savedDetector": "cbpe-detector"},
        "window": {"size": WINDOW},
        "outputs": {"topic": f"{topic}-detections", "deadLetterTopic": f"{topic}-dl"},
    }
    path = detector_yaml("clf-cbpe", spec)
    fitted = subprocess.run(
        [sys.executable, "-m", "infertap", "fit", str(path), "--reference", str(tmp_path / "ref.csv")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fitted.returncode == 0, fitted.stderr
    assert "CBPE" in fitted.stdout and "fitted on 4000 rows" in fitted.stdout and "thresholds" in fitted.stdout
    worker = start_detector(path)

    ids: list[str] = []
    answered: list[list[float]] = []  # the probabilities the model answered (what the events carry)
    with httpx.Client(timeout=30) as client:
        for w, (x, _) in enumerate(traffic):
            for i, row in enumerate(x):
                eid = f"w{w}-r{i}"
                reply = client.post(
                    f"{url}/v1/models/clf:predict", json={"instances": [row.tolist()]}, headers={"ce-id": eid}
                )
                assert reply.status_code == 200, reply.text
                ids.append(eid)
                answered += reply.json()["predictions"]
    events = kafka.read(f"{topic}-detections", len(SHIFTS), timeout=120)
    assert {e.get_type() for e in events} == {"io.infertap.performance"}
    assert {e.get_extension("performancekind") for e in events} == {"estimated"}
    published = [body(e) for e in events]
    assert [d["event_ids"] for d in published] == [ids[i * WINDOW : (i + 1) * WINDOW] for i in range(len(SHIFTS))]

    realised = [accuracy_score(y, model.predict(x)) for x, y in traffic]
    accuracy = [next(m for m in d["metrics"] if m["name"] == "accuracy") for d in published]
    assert realised[0] - realised[-1] > 0.08, realised  # the shift costs the model accuracy
    assert accuracy[0]["value"] - accuracy[-1]["value"] > 0.08  # the estimate, without labels, sees it
    assert sum(a["lower"] <= r <= a["upper"] for a, r in zip(accuracy, realised, strict=True)) >= 3
    assert [d["is_alert"] for d in published] == [False, False, True, True]
    assert {d["kind"] for d in published} == {"estimated"} and {d["task"] for d in published} == {"classification"}
    assert published[-1]["accuracy"] == accuracy[-1]["value"]  # the flat figures, as the realised bodies hold them
    assert set(published[-1]["per_class"]) == {"0", "1"} and "f1_macro" in published[-1]
    assert accuracy[-1]["alert"] and accuracy[-1]["value"] < accuracy[-1]["lower_threshold"]

    labels = {"inference_service": "clf", "detector": "CBPE"}
    gauge = metric(worker.metrics_url, "infertap_performance_metric", kind="estimated", metric="accuracy", **labels)
    assert gauge == pytest.approx(accuracy[-1]["value"])
    assert metric(worker.metrics_url, "infertap_performance_alert", metric="accuracy", **{"class": "_all"}) == 1
    lower = metric(worker.metrics_url, "infertap_performance_threshold", metric="accuracy", bound="lower")
    assert lower == pytest.approx(accuracy[-1]["lower_threshold"])

    # the same rows replayed from a file (with their labels): the same estimates, and the realised lines
    probabilities = np.array(answered)
    file = tmp_path / "rows.parquet"
    frame = pd.DataFrame({"id": ids, "p0": probabilities[:, 0], "p1": probabilities[:, 1]})
    frame["label"] = np.concatenate([y for _, y in traffic])
    frame.to_parquet(file)
    out = tmp_path / "replay.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "infertap", "detect", str(path), "--replay", str(file), "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    replayed = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    estimated = [r["data"] for r in replayed if r["performancekind"] == "estimated"]
    strip = lambda d: {k: v for k, v in d.items() if k not in TRANSPORT}  # noqa: E731 - where the rows came from
    assert [strip(d) for d in estimated] == [strip(d) for d in published]
    realised_lines = [r["data"] for r in replayed if r["performancekind"] == "realised"]
    assert [d["event_ids"] for d in realised_lines] == [d["event_ids"] for d in published]
    assert [next(m["value"] for m in d["metrics"] if m["name"] == "accuracy") for d in realised_lines] == (
        pytest.approx(realised)
    )
