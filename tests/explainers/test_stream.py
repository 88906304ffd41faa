"""The stream worker against the real broker: logged request events in, explanation CloudEvents out."""

from __future__ import annotations

import json
import sys
import time

import httpx
import orjson
import pytest
from cloudevents.core.bindings import kafka as ce_kafka

from infertap.logger.events import EventBuilder
from tests.conftest import free_port, unique
from tests.explainers.conftest import IRIS_FEATURES, metric


def produce(bootstrap: str, topic: str, messages, kafka_config: dict[str, str] | None = None) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **(kafka_config or {})})
    for m in messages:
        producer.produce(topic, value=m.value, key=m.key, headers=list(m.headers.items()))
    assert producer.flush(30) == 0


def read_topic(
    bootstrap: str, topic: str, n: int, timeout: float = 120.0, kafka_config: dict[str, str] | None = None
) -> list:
    from kafka import KafkaConsumer, TopicPartition

    from infertap.stack.tail import kafka_python_options

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
        **kafka_python_options(kafka_config or {}),
    )
    records: list = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(records) < n:
            if not consumer.assignment():
                parts = consumer.partitions_for_topic(topic)
                if parts:
                    consumer.assign([TopicPartition(topic, p) for p in parts])
                    consumer.seek_to_beginning()
                else:
                    time.sleep(0.5)
                    continue
            for batch in consumer.poll(1000).values():
                records += batch
    finally:
        consumer.close()
    return records


@pytest.mark.parametrize("which", ["broker", "secure_broker"])
def test_stream_worker_publishes_explanation_events(which, request, spawn, predictor, models_dir):
    """Plain, and over TLS + SASL/PLAIN with `-X` librdkafka properties."""
    broker = request.getfixturevalue(which)
    config = getattr(broker, "kafka_config", {})
    isvc = unique("iris")
    events_topic = f"{isvc}-events"
    builder = EventBuilder(source="http://iris/", inference_service=isvc, component="predictor")
    v1 = orjson.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    v2 = orjson.dumps(
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.9, 3.0, 4.2, 1.5]}]}
    )
    events = [
        builder.request("req-v1", v1, "application/json", "{}"),
        builder.response("req-v1", b'{"predictions":[0,2]}', "application/json", "{}", 200),
        builder.request("req-v2", v2, "application/json", "{}"),
        builder.request("req-binary", b"\x00\x01garbage", "application/octet-stream", "{}"),
        # an explainer's logger writing to the same topic (issue 14): its requests are not the model's inputs
        EventBuilder(source="http://iris/", inference_service=isvc, component="explainer").request(
            "req-explain", v1, "application/json", "{}"
        ),
    ]
    produce(
        broker.bootstrap,
        events_topic,
        [ce_kafka.to_binary_event(e, key_mapper=lambda e: e.get_id()) for e in events],
        config,
    )

    port = free_port()
    worker = spawn(
        [
            sys.executable,
            "-m",
            "infertap.explainers.stream",
            "--bootstrap",
            broker.bootstrap,
            "--inference-service",
            isvc,
            "--group",
            unique("explain"),
            "--metrics-port",
            str(port),
            "--explainer-type",
            "KernelShap",
            "--predictor-url",
            predictor,
            "--predictor-model",
            "sklearn-iris",
            "--background",
            str(models_dir / "sklearn-iris" / "reference.npy"),
            "--background-size",
            "20",
            "--feature-names",
            ",".join(IRIS_FEATURES),
            *[arg for key, value in config.items() for arg in ("-X", f"{key}={value}")],
        ],
        name="stream",
    )
    records = read_topic(broker.bootstrap, f"{isvc}-explanations", 2, kafka_config=config)
    assert len(records) == 2, worker.tail()
    decoded = [
        ce_kafka.from_binary_event(ce_kafka.KafkaMessage(headers=dict(r.headers), key=r.key, value=r.value))
        for r in records
    ]
    by_request = {e.get_attributes()["requestid"]: e for e in decoded}
    assert set(by_request) == {"req-v1", "req-v2"}  # the response and the undecodable body are not explained
    first = by_request["req-v1"]
    attrs = first.get_attributes()
    assert attrs["type"] == "io.infertap.explanation" and attrs["subject"] == isvc
    assert records[0].key in (b"req-v1", b"req-v2")  # keyed by the request id
    data = first.get_data()
    body = data if isinstance(data, dict) else json.loads(data)  # the SDK parses JSON data
    assert body["explainer"] == "KernelShap" and len(body["explanations"]) == 2  # both instances
    for e in body["explanations"]:
        assert e["feature_names"] == IRIS_FEATURES
        assert e["base_value"] + sum(e["values"]) == pytest.approx(e["prediction"], abs=1e-4)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        outcomes = ("undecodable", "not_predictor")
        if all(metric(text, "infertap_explainer_stream_events_total", outcome=o) for o in outcomes):
            break
        time.sleep(0.5)
    assert metric(text, "infertap_explainer_mean_abs_attribution", feature="petal_length") > 0
    assert metric(text, "infertap_explainer_instances_total") == 3
    assert metric(text, "infertap_explainer_stream_events_total", outcome="explained") == 2
    assert metric(text, "infertap_explainer_stream_events_total", outcome="not_request") == 1
    assert metric(text, "infertap_explainer_stream_events_total", outcome="undecodable") == 1
    assert metric(text, "infertap_explainer_stream_events_total", outcome="not_predictor") == 1


def test_sampling_is_stable_per_event_id():
    from infertap.explainers.stream import sampled

    ids = [f"id-{i}" for i in range(2000)]
    picked = [i for i in ids if sampled(i, 0.25)]
    assert 0.2 < len(picked) / len(ids) < 0.3
    assert picked == [i for i in ids if sampled(i, 0.25)]  # the same events, every time, in every worker
    assert all(sampled(i, 1.0) for i in ids[:10])


def test_binary_v2_request_bodies_decode_without_their_header_length():
    import numpy as np

    from infertap.explainers.stream import decode_instances
    from infertap.serving.codec import encode_v2_request

    rows = np.arange(8, dtype=np.float32).reshape(2, 4)
    body, _ = encode_v2_request({"input-0": rows}, binary=True)
    np.testing.assert_array_equal(decode_instances(body, "application/octet-stream"), rows)
