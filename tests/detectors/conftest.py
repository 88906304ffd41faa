"""Fixtures of the detector tests: Kafka helpers against the real broker, Detector YAML, workers."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from cloudevents.core.bindings import kafka as ce_kafka

from infertap.logger.events import EventBuilder
from tests.conftest import ROOT, free_port

BUILDER = EventBuilder(source="http://test/", inference_service="iris", component="predictor")


class KafkaTools:
    """Produce logged-style CloudEvents and read topics back (kafka-python, no consumer group)."""

    def __init__(self, bootstrap: str, **options: str):
        """`options`: kafka-python client arguments (TLS, SASL) for every client made here."""
        from kafka import KafkaProducer

        self.bootstrap, self.options = bootstrap, options
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **options)

    def create_topic(self, name: str, partitions: int) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, **self.options)
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            admin.close()

    def send_event(self, topic: str, event, partition: int | None = None) -> None:
        message = ce_kafka.to_binary_event(event, key_mapper=lambda e: e.get_id())
        headers = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in message.headers.items()]
        key = message.key.encode() if isinstance(message.key, str) else message.key
        self.producer.send(topic, key=key, value=message.value, headers=headers, partition=partition)

    def send_rows(
        self, topic: str, rows: np.ndarray, partition: int | None = None, responses: bool = False
    ) -> list[str]:
        """One V1 request event per row (and its response when asked); returns the event ids."""
        ids = []
        for row in np.atleast_2d(rows):
            eid = str(uuid.uuid4())
            body = orjson.dumps({"instances": [row.tolist()]})
            self.send_event(topic, BUILDER.request(eid, body, "application/json", "{}"), partition)
            if responses:
                self.send_event(
                    topic, BUILDER.response(eid, b'{"predictions":[0]}', "application/json", "{}", 200), partition
                )
            ids.append(eid)
        self.producer.flush()
        return ids

    def send_raw(
        self, topic: str, value: bytes, headers: list[tuple[str, bytes]], partition: int | None = None
    ) -> None:
        self.producer.send(topic, key=b"raw", value=value, headers=headers, partition=partition)
        self.producer.flush()

    def read(self, topic: str, count: int, timeout: float = 60.0, exact: bool = False) -> list:
        """At least `count` CloudEvents of `topic` (from the beginning), decoded with the SDK binding."""
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            consumer_timeout_ms=500,
            **self.options,
        )
        events, deadline = [], time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and len(events) < count:
                for record in consumer:
                    message = ce_kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
                    events.append(ce_kafka.from_binary_event(message))
            if exact:  # give late duplicates a moment to show up
                end = time.monotonic() + 2
                while time.monotonic() < end:
                    for record in consumer:
                        message = ce_kafka.KafkaMessage(
                            headers=dict(record.headers), key=record.key, value=record.value
                        )
                        events.append(ce_kafka.from_binary_event(message))
        finally:
            consumer.close()
        return events

    def close(self) -> None:
        self.producer.close()


@pytest.fixture
def kafka(broker) -> KafkaTools:
    tools = KafkaTools(broker.bootstrap)
    yield tools
    tools.close()


def body(event) -> dict[str, Any]:
    data = event.get_data()
    return orjson.loads(data) if isinstance(data, (bytes, str)) else data


@pytest.fixture
def detector_yaml(tmp_path: Path) -> Callable[..., Path]:
    """Write a Detector document (dict merged over sensible defaults) and return its path."""

    def write(name: str, spec: dict[str, Any], file: str | None = None) -> Path:
        doc = {"apiVersion": "infertap.dev/v1alpha1", "kind": "Detector", "metadata": {"name": name}, "spec": spec}
        path = tmp_path / (file or f"{name}.yaml")
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return write


@pytest.fixture
def start_detector(spawn) -> Callable[..., Any]:
    """`infertap detect SPEC` as a child process, ready once its metrics port answers."""

    def start(
        spec: Path,
        metrics_port: int | None = None,
        timeout: float = 90.0,
        name: str = "detector",
        extra: list[str] = (),
    ):
        port = metrics_port or free_port()
        child = spawn(
            [sys.executable, "-m", "infertap", "detect", str(spec), "--metrics-port", str(port), *extra],
            env={"PYTHONPATH": str(ROOT)},
            name=name,
        )
        child.wait_http(f"http://127.0.0.1:{port}/metrics", timeout=timeout)
        child.metrics_url = f"http://127.0.0.1:{port}/metrics"
        return child

    return start


def wait_log(child, text: str, timeout: float = 60.0, count: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.log.read_text(errors="replace").count(text) >= count:
            return
        if child.proc.poll() is not None:
            raise AssertionError(f"child exited {child.proc.returncode}:\n{child.tail()}")
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the log after {timeout}s:\n{child.tail()}")


def metric(url: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus text page (None when absent)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None
