"""End to end with real processes: model server, logger sidecar, broker, detector workers.

Traffic goes through the logger sidecar to the sklearn iris model; the logger puts the
CloudEvents on Kafka; workers with the registry's alibi-detect backends judge windows.
Reference-like traffic gives no drift, traffic shifted on two known features is flagged on
exactly those, planted outliers are flagged by IForest.
"""

from __future__ import annotations

import sys

import httpx
import numpy as np
import pytest

from tests.conftest import free_port, unique
from tests.detectors.conftest import body

FEATURES = [{"name": n} for n in ("sepal_length", "sepal_width", "petal_length", "petal_width")]


@pytest.fixture
def served_iris(spawn, models_dir, broker, kafka):
    """Model server + logger sidecar writing to a fresh topic; returns (logger URL, topic).

    One partition, so count windows follow the order of the traffic (across partitions a
    window holds whatever each partition delivered first).
    """
    topic = unique("iris-events")
    kafka.create_topic(topic, 1)
    model_port, logger_port = free_port(), free_port()
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
    model.wait_http(f"http://127.0.0.1:{model_port}/v2/health/ready", timeout=120)
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
            "sklearn-iris",
            "--log-url",
            f"kafka://{broker.bootstrap}/{topic}",
        ],
        name="logger",
    )
    logger.wait_http(f"http://127.0.0.1:{logger_port}/infertap/metrics")
    return f"http://127.0.0.1:{logger_port}", topic


def send(url: str, rows: np.ndarray) -> None:
    """One request per row through the sidecar; every other one in V2 JSON."""
    with httpx.Client(timeout=30) as client:
        for i, row in enumerate(rows):
            if i % 2:
                reply = client.post(
                    f"{url}/v2/models/sklearn-iris/infer",
                    json={
                        "inputs": [
                            {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [float(v) for v in row]}
                        ]
                    },
                )
            else:
                reply = client.post(
                    f"{url}/v1/models/sklearn-iris:predict", json={"instances": [[float(v) for v in row]]}
                )
            assert reply.status_code == 200, reply.text


def test_drift_on_exactly_the_shifted_features_and_outliers_flagged(
    served_iris, broker, kafka, detector_yaml, start_detector, models_dir
):
    url, topic = served_iris
    reference = models_dir / "sklearn-iris" / "reference.npy"
    x_ref = np.load(reference)
    source = {"topic": topic, "bootstrap": broker.bootstrap}
    outputs = {"topic": f"{topic}-detections", "deadLetterTopic": f"{topic}-dl"}
    drift = detector_yaml(
        "iris-drift",
        {
            "source": {**source, "inferenceService": "sklearn-iris", "consumerGroup": unique("drift")},
            "features": FEATURES,
            "detector": {
                "name": "KSDrift",
                "params": {"p_val": 0.05, "correction": "bonferroni"},
                "reference": str(reference),
            },
            "window": {"size": 100},
            "outputs": outputs,
        },
    )
    outlier = detector_yaml(
        "iris-outlier",
        {
            "source": {**source, "inferenceService": "sklearn-iris", "consumerGroup": unique("od")},
            "features": FEATURES,
            "detector": {"name": "IForest", "params": {"threshold_perc": 99}, "reference": str(reference)},
            "window": {"size": 40},
            "outputs": outputs,
        },
    )
    start_detector(drift, name="drift")
    start_detector(outlier, name="outlier")

    rng = np.random.default_rng(7)
    std = x_ref.std(axis=0)
    clean = x_ref[rng.integers(0, len(x_ref), 100)]  # resampled reference: the same distribution
    shifted = x_ref[rng.integers(0, len(x_ref), 100)].copy()
    shifted[:, [0, 2]] += 1.5 * std[[0, 2]]
    send(url, clean)
    send(url, shifted)
    planted = clean[:40].copy()
    planted[[5, 25]] = [[12.0, 0.5, 15.0, 6.0], [1.0, 9.0, 0.1, 5.0]]
    send(url, planted)

    # every window: 2 drift windows of 100 events and 6 outlier windows of 40 (the last holds the
    # planted rows); fewer returned too early when one worker ran ahead of the other
    events = kafka.read(f"{topic}-detections", 2 + 6, timeout=120)
    drift_windows = [body(e) for e in events if e.get_extension("detector") == "iris-drift"]
    outlier_windows = [body(e) for e in events if e.get_extension("detector") == "iris-outlier"]
    assert {e.get_type() for e in events} == {"io.infertap.detection.drift", "io.infertap.detection.outlier"}
    assert all(e.get_subject() == "sklearn-iris" for e in events)

    assert len(drift_windows) >= 2, [(e.get_extension("detector"), body(e)["offsets"]) for e in events]
    first, second = drift_windows[:2]
    assert first["n"] == 100 and first["is_drift"] is False, first["features"]
    assert not [f["name"] for f in first["features"] if f["is_drift"]]
    assert second["is_drift"] is True
    assert [f["name"] for f in second["features"] if f["is_drift"]] == ["sepal_length", "petal_length"]

    flagged = outlier_windows[-1]["is_outlier"]  # the window of the planted rows (rows 200..239)
    assert flagged[5] and flagged[25], "both planted outliers flagged"
    assert sum(flagged) <= 4, f"few false alarms among 38 clean rows (got {sum(flagged)})"
    scores = outlier_windows[-1]["instance_scores"]
    assert min(scores[5], scores[25]) > np.median(scores)
