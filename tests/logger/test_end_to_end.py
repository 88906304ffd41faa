"""The sidecar as a real process (`python -m infertap.sidecar`), with the real delivery and sinks:
file:// read back as JSON lines, kafka:// read back with plain kafka-python and decoded with
the cloudevents Kafka binding; and in front of the real `serving` model server."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import httpx
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from infertap.logger.events import REQUEST_TYPE, RESPONSE_TYPE, decode_metadata
from tests.sidecar.tap_fixtures import free_port, port_of, upstream  # noqa: F401


def start_sidecar(spawn, component_port: int, *log_urls: str, extra: list[str] = ()) -> str:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "infertap.sidecar",
        "--port",
        str(port),
        "--component-port",
        str(component_port),
        "--inference-service",
        "iris",
        "--namespace",
        "ns",
        "--component",
        "predictor",
        "--source-uri",
        "http://iris-pod/",
        "--metadata-headers",
        "x-request-id",
    ]
    for url in log_urls:
        args += ["--log-url", url]
    child = spawn(args + list(extra), name="sidecar")
    child.wait_http(f"http://127.0.0.1:{port}/infertap/metrics")
    return f"http://127.0.0.1:{port}"


def read_jsonl(path: Path, n: int, timeout: float = 30.0) -> list[CloudEvent]:
    deadline = time.monotonic() + timeout
    lines: list[bytes] = []
    while time.monotonic() < deadline:
        if path.exists():
            lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
            if len(lines) >= n:
                break
        time.sleep(0.1)
    assert len(lines) >= n, f"{len(lines)} events in {path}, wanted {n}"
    return [JSONFormat().read(CloudEvent, ln) for ln in lines]


def test_file_sink_end_to_end(spawn, upstream, tmp_path):
    sink = tmp_path / "events.jsonl"
    url = start_sidecar(spawn, port_of(upstream), f"file://{sink}")
    body = os.urandom(512)
    r = httpx.post(
        f"{url}/v2/models/iris/infer",
        content=body,
        headers={"content-type": "application/octet-stream", "x-request-id": "e2e-1"},
    )
    assert r.status_code == 200 and r.content == body
    assert httpx.post(f"{url}/status/500", json={}).status_code == 500
    events = read_jsonl(sink, 4)
    req, resp = events[0], events[1]
    assert req.get_type() == REQUEST_TYPE and resp.get_type() == RESPONSE_TYPE
    assert req.get_id() == resp.get_id()
    assert req.get_data() == body and resp.get_data() == body
    assert decode_metadata(req.get_extension("metadata")) == {"X-Request-Id": ["e2e-1"]}
    assert str(events[3].get_extension("statuscode")) == "500"
    assert 'outcome="sent"' in httpx.get(f"{url}/infertap/metrics").text


def kafka_records(bootstrap: str, topic: str, n: int, timeout: float = 60.0) -> list:
    """The first n records of a topic, read with plain kafka-python (no group: no join wait)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", consumer_timeout_ms=1000
    )
    try:
        deadline = time.monotonic() + timeout
        parts = None
        while not parts and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.5)
        assert parts, f"topic {topic} never appeared"
        consumer.assign([TopicPartition(topic, p) for p in parts])
        consumer.seek_to_beginning()
        records = []
        while len(records) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        assert len(records) >= n, f"{len(records)} records on {topic}, wanted {n}"
        return records
    finally:
        consumer.close()


def decode(record) -> CloudEvent:
    message = ce_kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    return ce_kafka.from_binary(message, JSONFormat(), CloudEvent)


def test_kafka_sink_end_to_end(spawn, upstream, broker, tmp_path):
    topic = f"iris-events-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    url = start_sidecar(
        spawn, port_of(upstream), f"kafka://{broker.bootstrap}/{topic}", extra=["--spool-dir", str(tmp_path / "spool")]
    )
    body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
    r = httpx.post(
        f"{url}/v1/models/iris:predict",
        content=body,
        headers={"content-type": "application/json", "ce-id": "kafka-e2e-1", "x-request-id": "rq"},
    )
    assert r.status_code == 200
    records = kafka_records(broker.bootstrap, topic, 2)
    events = [decode(rec) for rec in records]
    assert {e.get_type() for e in events} == {REQUEST_TYPE, RESPONSE_TYPE}
    for rec, event in zip(records, events, strict=True):
        assert rec.key == b"kafka-e2e-1" and rec.value == body
        assert event.get_id() == "kafka-e2e-1"
        assert event.get_source() == "http://iris-pod/"
        assert event.get_datacontenttype() == "application/json"
        assert event.get_extension("inferenceservicename") == "iris"
        assert event.get_extension("namespace") == "ns"
        assert event.get_extension("component") == "predictor"
        assert decode_metadata(event.get_extension("metadata")) == {"X-Request-Id": ["rq"]}
        assert event.get_time() is not None
    resp = [e for e in events if e.get_type() == RESPONSE_TYPE][0]
    assert resp.get_extension("statuscode") == "200"


def test_ingest_forwards_kserve_agent_events_to_kafka(spawn, upstream, broker, tmp_path):
    topic = f"ingest-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    url = start_sidecar(
        spawn, port_of(upstream), f"kafka://{broker.bootstrap}/{topic}", extra=["--spool-dir", str(tmp_path / "spool")]
    )
    body = b'{"predictions": [1]}'
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "agent-7",
        "ce-type": RESPONSE_TYPE,
        "ce-source": "http://localhost:9081/",
        "ce-inferenceservicename": "sklearn-iris",
        "ce-component": "predictor",
        "content-type": "application/json",
    }
    assert httpx.post(f"{url}/", content=body, headers=headers).status_code == 202
    (record,) = kafka_records(broker.bootstrap, topic, 1)
    event = decode(record)
    assert record.value == body and record.key == b"agent-7"
    assert event.get_type() == RESPONSE_TYPE and event.get_extension("inferenceservicename") == "sklearn-iris"


def test_in_front_of_real_model_server(spawn, models_dir, tmp_path):
    model_port = free_port()
    model = spawn(
        [
            sys.executable,
            "-m",
            "infertap.serving",
            "--model-name",
            "iris",
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
    sink = tmp_path / "events.jsonl"
    url = start_sidecar(spawn, model_port, f"file://{sink}")
    v1 = httpx.post(f"{url}/v1/models/iris:predict", json={"instances": [[6.8, 2.8, 4.8, 1.4]]})
    assert v1.status_code == 200 and "predictions" in v1.json()
    v2 = httpx.post(
        f"{url}/v2/models/iris/infer",
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [6.8, 2.8, 4.8, 1.4]}]},
    )
    assert v2.status_code == 200
    bad = httpx.post(f"{url}/v1/models/iris:predict", json={"nope": 1})
    assert 400 <= bad.status_code < 500
    events = read_jsonl(sink, 6)
    resp = [e for e in events if e.get_type() == RESPONSE_TYPE]
    assert json.loads(resp[0].get_data()) == v1.json()  # bytes: the file sink keeps bodies as data_base64
    assert str(resp[2].get_extension("statuscode")) == str(bad.status_code)
