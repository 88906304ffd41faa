"""Issue 19 item 5: one bad row must not blind a drift window.

Real workers (`infertap detect`) on the real broker, real logged CloudEvents: null, NaN and
infinite rows in a fully drifted window are left out and counted and the drift is still
flagged; a request the model answered 400 is left out of a joined window and counted.
"""

from __future__ import annotations

import uuid

import numpy as np
import orjson
import pytest

from infertap.detectors.evaluator import build_backend
from infertap.detectors.settings import WorkerSettings
from infertap.serving.codec import encode_v2_request
from tests.conftest import unique
from tests.detectors.conftest import BUILDER, body, metric, wait_log

FEATURES = [{"name": n} for n in ("a", "b", "c", "d")]
SIZE = 150


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "reference.npy"
    np.save(path, np.random.default_rng(1).normal(size=(500, 4)))
    return path


def spec(broker, topic, reference, events="request", features=FEATURES, **detector):
    return {
        "source": {
            "topic": topic,
            "bootstrap": f"kafka://{broker.bootstrap}",
            "consumerGroup": unique("g"),
            "events": events,
        },
        "features": features,
        "detector": {"name": "ScipyKS", "reference": str(reference), **detector},
        "window": {"size": SIZE},
        "outputs": {"topic": f"{topic}-detections", "deadLetterTopic": f"{topic}-deadletter"},
    }


def send_request(kafka, topic, data: bytes, content_type="application/json", status: int | None = None) -> str:
    eid = str(uuid.uuid4())
    kafka.send_event(topic, BUILDER.request(eid, data, content_type, "{}"))
    if status is not None:
        answer = b'{"predictions":[0]}' if status < 400 else b'{"error":"Input contains NaN"}'
        kafka.send_event(topic, BUILDER.response(eid, answer, "application/json", "{}", status))
    return eid


def bad_rows() -> list[tuple[bytes, str]]:
    """A V1 row with one null, an all-null V1 row, a V2 binary FP32 NaN, a V2 binary FP32 infinity."""
    nan, _ = encode_v2_request({"input-0": np.array([[2.0, np.nan, 2.0, 2.0]], dtype=np.float32)}, binary=True)
    inf, _ = encode_v2_request({"input-0": np.array([[2.0, 2.0, np.inf, 2.0]], dtype=np.float32)}, binary=True)
    return [
        (b'{"instances": [[1, 3, null, 1]]}', "application/json"),
        (b'{"instances": [[null, null, null, null]]}', "application/json"),
        (nan, "application/octet-stream"),
        (inf, "application/octet-stream"),
    ]


def test_null_nan_and_infinite_rows_leave_a_drifted_window_drifted(
    broker, kafka, detector_yaml, start_detector, reference
):
    topic = unique("nan")
    kafka.create_topic(topic, 1)
    worker = start_detector(detector_yaml("nan", spec(broker, topic, reference)))
    shifted = np.random.default_rng(2).normal(size=(SIZE - 4, 4)) + 2.0
    ids = kafka.send_rows(topic, shifted[:70])
    for data, content_type in bad_rows():
        send_request(kafka, topic, data, content_type)
    ids += kafka.send_rows(topic, shifted[70:])
    [detection] = kafka.read(f"{topic}-detections", 1)
    got = body(detection)
    assert got["is_drift"] is True and isinstance(got["p_val"], float) and got["p_val"] < 1e-6
    assert all(f["is_drift"] for f in got["features"])
    assert got["excluded"] == {"failed_response": 0, "missing_value": 4}
    assert got["n"] == SIZE - 4 and got["event_ids"] == ids and got["rejected"] == 0
    wait_log(worker, f"window of {SIZE - 4} events")
    labels = {"inference_service": "", "detector": "ScipyKS"}
    assert metric(worker.metrics_url, "infertap_detector_excluded_total", reason="missing_value", **labels) == 4
    assert metric(worker.metrics_url, "infertap_detector_events_consumed_total", outcome="excluded", **labels) == 4


def test_a_request_the_model_answered_400_is_excluded_and_counted(
    broker, kafka, detector_yaml, start_detector, tmp_path
):
    """Joined mode: 149 shifted requests answered 200 and one `[1,3,null,1]` answered 400."""
    topic = unique("failed")
    kafka.create_topic(topic, 1)
    reference = tmp_path / "joined.npy"  # the 4 inputs and the prediction
    np.save(reference, np.random.default_rng(1).normal(size=(500, 5)))
    features = [*FEATURES, {"name": "pred", "source": "output"}]
    worker = start_detector(detector_yaml("failed", spec(broker, topic, reference, events="joined", features=features)))
    shifted = np.random.default_rng(3).normal(size=(SIZE - 1, 4)) + 2.0
    ids = [send_request(kafka, topic, orjson.dumps({"instances": [row.tolist()]}), status=200) for row in shifted[:75]]
    rejected = send_request(kafka, topic, b'{"instances": [[1, 3, null, 1]]}', status=400)
    ids += [send_request(kafka, topic, orjson.dumps({"instances": [row.tolist()]}), status=200) for row in shifted[75:]]
    kafka.producer.flush()
    detections = kafka.read(f"{topic}-detections", 1)
    assert len(detections) == 1, worker.tail()
    [detection] = detections
    got = body(detection)
    assert got["is_drift"] is True and isinstance(got["p_val"], float)
    assert got["excluded"] == {"failed_response": 1, "missing_value": 0}
    assert got["n"] == SIZE - 1 and got["event_ids"] == ids and rejected not in got["event_ids"]
    assert got["offsets"] == [{"topic": topic, "partition": 0, "first": 0, "last": 2 * SIZE - 1}]
    wait_log(worker, f"window of {SIZE - 1} events")
    labels = {"inference_service": "", "detector": "ScipyKS"}
    url = worker.metrics_url
    assert metric(url, "infertap_detector_excluded_total", reason="failed_response", **labels) == 1
    assert metric(url, "infertap_detector_events_consumed_total", outcome="excluded", **labels) == 2  # the pair
    assert metric(url, "infertap_detector_events_consumed_total", outcome="used", **labels) == 2 * (SIZE - 1)


def test_missing_values_can_be_dead_lettered_instead(broker, kafka, detector_yaml, start_detector, reference):
    """`spec.detector.missingValues: deadletter`: each event with a missing value goes to the
    dead-letter topic (reason missing_value); the window is judged without it."""
    topic = unique("nandl")
    kafka.create_topic(topic, 1)
    start_detector(detector_yaml("nandl", spec(broker, topic, reference, missingValues="deadletter")))
    shifted = np.random.default_rng(4).normal(size=(SIZE - 4, 4)) + 2.0
    kafka.send_rows(topic, shifted[:10])
    bad = [send_request(kafka, topic, data, content_type) for data, content_type in bad_rows()]
    kafka.send_rows(topic, shifted[10:])
    dead = kafka.read(f"{topic}-deadletter", 4)
    assert sorted(d.get_extension("originalid") for d in dead) == sorted(bad)
    assert {d.get_extension("reason") for d in dead} == {"missing_value"}
    [detection] = kafka.read(f"{topic}-detections", 1)
    got = body(detection)
    assert got["is_drift"] is True and got["rejected"] == 4 and got["n"] == SIZE - 4
    assert got["excluded"] == {"failed_response": 0, "missing_value": 0}


def test_passing_missing_values_needs_a_backend_that_takes_them(reference):
    settings = WorkerSettings(
        name="pass", topic="t", features=FEATURES, detector="ScipyKS", reference=reference, missing_values="pass"
    )
    with pytest.raises(ValueError, match="ScipyKS does not take missing values"):
        build_backend(settings)
