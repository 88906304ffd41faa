"""Helpers of the delivery/sink/spool tests: events, read-back from Kafka, an HTTP receiver."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event
from cloudevents.core.v1.event import CloudEvent
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infertap.logger.delivery import Delivery, build_delivery
from infertap.logger.metrics import DeliveryMetrics
from infertap.sidecar.settings import LoggerSettings

# A body that is not UTF-8 (as a binary V2 tensor payload): must come back byte for byte.
BINARY_BODY = bytes(range(256)) * 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_event(i: int, body: bytes = BINARY_BODY, response: bool = False) -> CloudEvent:
    """An event with the attributes DESIGN "Events" lists, id `ev-<i>`."""
    attrs: dict[str, Any] = {
        "type": "org.kubeflow.serving.inference." + ("response" if response else "request"),
        "id": f"ev-{i:06d}",
        "source": "http://localhost:9081/",
        "datacontenttype": "application/octet-stream",
        "inferenceservicename": "iris",
        "namespace": "default",
        "component": "predictor",
        "endpoint": "",
        "metadata": '{"x-user":["a"]}',
        "annotations": '{"team":"ml"}',
    }
    if response:
        attrs["statuscode"] = "200"
    return CloudEvent(attrs, body)


def delivery(tmp_path: Path, urls: list[str], **settings: Any) -> tuple[Delivery, CollectorRegistry]:
    """A Delivery with metrics in a registry of its own, spool under tmp_path/spool."""
    registry = CollectorRegistry()
    s = LoggerSettings(
        log_url=urls,
        spool_dir=tmp_path / "spool",
        inference_service="iris",
        retry_backoff_s=0.2,
        retry_backoff_max_s=1.0,
        **settings,
    )
    return build_delivery(s, DeliveryMetrics(registry)), registry


def outcome(registry: CollectorRegistry, sink: str, what: str) -> float:
    return (
        registry.get_sample_value(
            "infertap_logger_events_total",
            {"inference_service": "iris", "component": "predictor", "sink": sink, "outcome": what},
        )
        or 0.0
    )


async def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60.0, **client: Any) -> list[Any]:
    """Every record of `topic` (no consumer group: assigned partitions), until `expected` arrived.

    `client`: more KafkaConsumer arguments (security_protocol, ssl_cafile, sasl_*).
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, **client
    )
    try:
        deadline = time.monotonic() + timeout
        parts = None
        while not parts:
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic} never appeared")
            consumer.topics()  # refresh metadata
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.2)
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        out: list[Any] = []
        while len(out) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        # a moment more: catch duplicates or strays beyond the expected count
        for records in consumer.poll(timeout_ms=500).values():
            out.extend(records)
        return out
    finally:
        consumer.close()


def decode(record: Any) -> CloudEvent:
    """A consumed record decoded by the cloudevents SDK's Kafka binding (binary mode)."""
    return from_binary_event(KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value))


def assert_same_event(record: Any, sent: CloudEvent, ignore: tuple[str, ...] = ()) -> None:
    """Attributes as sent (but `ignore`), key = id, value byte-exact."""
    got = decode(record)
    assert record.key == sent.get_id().encode()
    assert record.value == sent.get_data()
    want = dict(sent.get_attributes())
    attrs = dict(got.get_attributes())
    attrs.pop("partitionkey", None)  # the SDK adds the message key as this extension
    for name in ignore:
        attrs.pop(name, None), want.pop(name, None)
    assert attrs == want


class HttpReceiver:
    """A real HTTP server (uvicorn in a thread) that records CloudEvents POSTed to it.

    `fail_first[id] = n`: answer 500 to the first n attempts of that event id.
    `status_for[id] = code`: always answer `code` for that id.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.attempts: dict[str, int] = {}
        self.fail_first: dict[str, int] = {}
        self.status_for: dict[str, int] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/events"

        async def receive(request: Request) -> Response:
            body = await request.body()
            ce_id = request.headers.get("ce-id", "")
            self.attempts[ce_id] = self.attempts.get(ce_id, 0) + 1
            if ce_id in self.status_for:
                return Response(status_code=self.status_for[ce_id])
            if self.attempts[ce_id] <= self.fail_first.get(ce_id, 0):
                return Response(status_code=500)
            self.requests.append((dict(request.headers), body))
            return Response(status_code=202)

        app = Starlette(routes=[Route("/events", receive, methods=["POST"])])
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise AssertionError("HTTP receiver did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
