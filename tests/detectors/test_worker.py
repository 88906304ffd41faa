"""The worker against the real broker, as real processes: windows, at-least-once restarts,
dead letters, online state, metrics."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from tests.conftest import unique
from tests.detectors.conftest import body, metric, wait_log

KS = "tests.detectors.plugin_backends:KSBackend"
ONLINE = "tests.detectors.plugin_backends:CountingOnline"
FEATURES = [{"name": n} for n in ("a", "b", "c", "d")]


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "reference.npy"
    np.save(path, np.random.default_rng(1).normal(size=(500, 4)))
    return path


def spec(broker, topic, reference, detector=KS, size=20, **extra):
    out = {
        "source": {"topic": topic, "bootstrap": f"kafka://{broker.bootstrap}", "consumerGroup": unique("g")},
        "features": FEATURES,
        "detector": {"name": detector, "reference": str(reference)},
        "window": {"size": size},
        "outputs": {"topic": f"{topic}-detections", "deadLetterTopic": f"{topic}-deadletter"},
    }
    for key, value in extra.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def covered_offsets(detections) -> list[tuple[int, int]]:
    out = []
    for d in detections:
        for span in body(d)["offsets"]:
            out += [(span["partition"], o) for o in range(span["first"], span["last"] + 1)]
    return out


def test_windows_become_detection_events_with_ids_offsets_and_metrics(
    broker, kafka, detector_yaml, start_detector, reference
):
    topic = unique("w")
    kafka.create_topic(topic, 1)
    worker = start_detector(detector_yaml("basic", spec(broker, topic, reference)))
    rng = np.random.default_rng(2)
    ids = kafka.send_rows(topic, rng.normal(size=(20, 4)), responses=True)  # responses are ignored in request mode
    shifted = rng.normal(size=(20, 4))
    shifted[:, 1] += 3
    ids += kafka.send_rows(topic, shifted)
    detections = kafka.read(f"{topic}-detections", 2)
    assert [d.get_type() for d in detections] == ["io.infertap.detection.drift"] * 2
    first, second = (body(d) for d in detections)
    assert first["event_ids"] == ids[:20] and second["event_ids"] == ids[20:]
    assert first["offsets"] == [{"topic": topic, "partition": 0, "first": 0, "last": 38}]  # requests at even offsets
    assert first["is_drift"] is False and second["is_drift"] is True
    assert [f["name"] for f in second["features"] if f["is_drift"]] == ["b"]
    assert detections[0].get_subject() == detections[0].get_extension("detector") == "basic"  # no isvc named
    wait_log(worker, "window of 20 events", count=2)
    url = worker.metrics_url
    labels = {"inference_service": "", "detector": KS}
    assert metric(url, "infertap_detector_windows_evaluated_total", **labels) == 2
    assert metric(url, "infertap_detector_events_consumed_total", outcome="used", **labels) == 40
    assert metric(url, "infertap_detector_events_consumed_total", outcome="ignored", **labels) == 20
    assert metric(url, "infertap_detector_drift", feature="b", **labels) == 1
    assert metric(url, "infertap_detector_drift", feature="a", **labels) == 0
    assert metric(url, "infertap_detector_drift_p_value", feature="b", **labels) < 0.01


def test_sigkill_mid_window_loses_nothing_on_restart(broker, kafka, detector_yaml, start_detector, reference):
    topic = unique("r")
    kafka.create_topic(topic, 1)
    path = detector_yaml("restart", spec(broker, topic, reference))
    worker = start_detector(path, name="first")
    rows = np.random.default_rng(3).normal(size=(60, 4))
    ids = kafka.send_rows(topic, rows[:30])
    assert len(kafka.read(f"{topic}-detections", 1)) >= 1
    wait_log(worker, "window of 20 events")
    worker.kill(signal.SIGKILL)  # 10 events consumed into the open window, uncommitted
    ids += kafka.send_rows(topic, rows[30:60])
    start_detector(path, name="second")
    detections = kafka.read(f"{topic}-detections", 3, exact=True)
    covered = [eid for d in detections for eid in body(d)["event_ids"]]
    assert set(covered) == set(ids)  # every event judged at least once
    offsets = covered_offsets(detections)
    assert sorted(set(offsets)) == [(0, o) for o in range(60)]
    # duplicates, if any (killed before the first commit), are recognisable by their offsets
    assert len(offsets) - len(set(offsets)) == len(covered) - len(set(covered))


def test_kill_during_predict_republishes_that_window(broker, kafka, detector_yaml, start_detector, reference):
    topic = unique("k")
    kafka.create_topic(topic, 1)
    slow = spec(broker, topic, reference)
    slow["detector"]["params"] = {"sleep": 4}
    path = detector_yaml("slow", slow)
    worker = start_detector(path, name="slow")
    ids = kafka.send_rows(topic, np.random.default_rng(4).normal(size=(20, 4)))
    wait_log(worker, "assigned partitions")
    import time

    time.sleep(2.5)  # the window is being judged (predict sleeps 4 s): nothing published, nothing committed
    worker.kill(signal.SIGKILL)
    assert kafka.read(f"{topic}-detections", 1, timeout=1) == []
    fast = dict(slow, detector={"name": KS, "reference": str(reference)})
    start_detector(detector_yaml("slow", fast, file="fast.yaml"), name="fast")
    detections = kafka.read(f"{topic}-detections", 1)
    assert body(detections[0])["event_ids"] == ids


def test_malformed_events_are_dead_lettered_and_the_worker_goes_on(
    broker, kafka, detector_yaml, start_detector, reference
):
    topic = unique("dl")
    kafka.create_topic(topic, 1)
    worker = start_detector(detector_yaml("dl", spec(broker, topic, reference, size=5)))
    rng = np.random.default_rng(5)
    kafka.send_rows(topic, rng.normal(size=(3, 4)))
    kafka.send_raw(
        topic,
        b"not json",
        [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"bad-1"),
            ("ce_source", b"x"),
            ("ce_type", b"org.kubeflow.serving.inference.request"),
        ],
    )
    kafka.send_raw(
        topic,
        b'{"instances": [[1, 2, 3]]}',
        [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"bad-2"),
            ("ce_source", b"x"),
            ("ce_type", b"org.kubeflow.serving.inference.request"),
        ],
    )
    kafka.send_raw(topic, b'{"instances": [[1, 2, 3, 4]]}', [("content-type", b"application/json")])
    good = kafka.send_rows(topic, rng.normal(size=(7, 4)))  # first window: 3 good + 2 undecodable
    dead = kafka.read(f"{topic}-deadletter", 3)
    reasons = {d.get_extension("originalid"): d.get_extension("reason") for d in dead}
    assert reasons == {"bad-1": "not_json", "bad-2": "wrong_feature_count", None: "missing_attributes"}
    assert {d.get_type() for d in dead} == {"io.infertap.detection.deadletter"}
    data = next(d for d in dead if d.get_extension("originalid") == "bad-1").get_data()
    assert (data.encode() if isinstance(data, str) else data) == b"not json"  # the original body
    detections = kafka.read(f"{topic}-detections", 2)
    first, second = body(detections[0]), body(detections[1])
    assert (len(first["event_ids"]), first["rejected"], first["n"]) == (3, 2, 3)
    assert second["event_ids"] == good[:5] and second["rejected"] == 0
    url = worker.metrics_url
    assert metric(url, "infertap_detector_dead_lettered_total", reason="not_json", detector=KS) == 1
    assert metric(url, "infertap_detector_dead_lettered_total", reason="missing_attributes", detector=KS) == 1


def test_online_detector_state_is_saved_and_restored(broker, kafka, detector_yaml, start_detector, reference, tmp_path):
    topic = unique("on")
    kafka.create_topic(topic, 1)
    path = detector_yaml(
        "online", spec(broker, topic, reference, detector=ONLINE, size=10, stateDir=str(tmp_path / "state"))
    )
    worker = start_detector(path, name="online-1")
    kafka.send_rows(topic, np.ones((10, 4)))
    first = kafka.read(f"{topic}-detections", 1)
    assert body(first[0])["raw"]["t"] == 10
    wait_log(worker, "window of 10 events")
    worker.stop()
    kafka.send_rows(topic, np.ones((10, 4)))
    start_detector(path, name="online-2")
    detections = kafka.read(f"{topic}-detections", 2)
    assert body(detections[1])["raw"] == {"t": 20, "total": 80.0, "drift_rows": []}


def test_worker_reads_and_publishes_over_tls_and_sasl(secure_broker, detector_yaml, start_detector, reference):
    """spec.source.kafkaConfig (and `-X`, merged over it) reach the worker's consumer and producer."""
    from infertap.stack.tail import kafka_python_options
    from tests.detectors.conftest import KafkaTools

    tools = KafkaTools(secure_broker.bootstrap, **kafka_python_options(secure_broker.kafka_config))
    try:
        topic = unique("secure")
        tools.create_topic(topic, 1)
        in_spec = {k: v for k, v in secure_broker.kafka_config.items() if k != "sasl.password"}
        doc = spec(secure_broker, topic, reference, source={"kafkaConfig": in_spec})
        worker = start_detector(
            detector_yaml("secure", doc), extra=["-X", f"sasl.password={secure_broker.kafka_config['sasl.password']}"]
        )
        ids = tools.send_rows(topic, np.random.default_rng(3).normal(size=(20, 4)))
        [detection] = tools.read(f"{topic}-detections", 1)
        assert body(detection)["event_ids"] == ids, worker.tail()
    finally:
        tools.close()
