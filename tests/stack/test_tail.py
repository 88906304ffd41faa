"""`infertap tail`: records read from a real broker, decoded with the cloudevents Kafka binding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from kafka import KafkaProducer

from infertap.stack.tail import kafka_python_options

ROOT = Path(__file__).resolve().parents[2]


def _produce(bootstrap: str, topic: str, kafka_config: dict[str, str]) -> None:
    request = CloudEvent(
        attributes={
            "type": "org.kubeflow.serving.inference.request",
            "source": "http://localhost:9081/",
            "id": "req-1",
            "datacontenttype": "application/json",
            "inferenceservicename": "sklearn-iris",
            "component": "predictor",
        },
        data=b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}',
    )
    response = CloudEvent(
        attributes={
            "type": "org.kubeflow.serving.inference.response",
            "source": "http://localhost:9081/",
            "id": "req-1",
            "datacontenttype": "application/json",
            "inferenceservicename": "sklearn-iris",
            "statuscode": "200",
        },
        data=b'{"predictions": [1]}',
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, **kafka_python_options(kafka_config))
    for event in (request, response):
        message = ce_kafka.to_binary_event(event)
        producer.send(topic, key=b"req-1", value=message.value, headers=list(message.headers.items()))
    producer.send(topic, key=b"plain", value=b"not an event")
    producer.send(topic, key=b"bin", value=bytes(range(200, 256)), headers=[("ce_specversion", b"1.0")])
    producer.flush()
    producer.close()


@pytest.mark.parametrize("which", ["broker", "secure_broker"])
def test_tail_prints_decoded_events_and_survives_other_records(which, request):
    """Plain, and over TLS + SASL/PLAIN with `-X` librdkafka properties (as every worker takes them)."""
    broker = request.getfixturevalue(which)
    config = getattr(broker, "kafka_config", {})
    topic = f"tail-{__import__('uuid').uuid4().hex[:8]}"
    _produce(broker.bootstrap, topic, config)
    flags = [arg for key, value in config.items() for arg in ("-X", f"{key}={value}")]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "infertap",
            "tail",
            topic,
            "--bootstrap",
            broker.bootstrap,
            "--from-beginning",
            "--max",
            "4",
            "--timeout",
            "60",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4, out.stdout
    request = next(line for line in lines if "inference.request" in line)
    assert " req-1 " in request and "inferenceservicename=sklearn-iris" in request and "component=predictor" in request
    assert request.endswith('{"instances": [[6.8, 2.8, 4.8, 1.4]]}')
    assert request[:4].isdigit() and "T" in request.split()[0]  # ISO time first
    response = next(line for line in lines if "inference.response" in line)
    assert "statuscode=200" in response and response.endswith('{"predictions": [1]}')
    assert any("not a CloudEvent key=plain: not an event" in line for line in lines)
    assert any("undecodable CloudEvent" in line for line in lines)  # ce_ headers without type/id
    assert "Traceback" not in out.stderr
    json.dumps(lines)  # printable


def test_tail_names_the_properties_it_cannot_take(broker):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "infertap",
            "tail",
            "t",
            "--bootstrap",
            broker.bootstrap,
            "-X",
            "socket.timeout.ms=100",
            "-X",
            "security.protocol=SSL",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "not socket.timeout.ms" in out.stderr, out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "infertap", "tail", "t", "-X", "oops"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "-X wants KEY=VALUE, got 'oops'" in out.stderr, out.stderr
