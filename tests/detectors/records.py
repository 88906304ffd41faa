"""Building Kafka-shaped records of inference CloudEvents for the detector tests."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from cloudevents.core.bindings import kafka as ce_kafka

from infertap.detectors.decode import Record
from infertap.logger.events import EventBuilder

BUILDER = EventBuilder(source="http://test/", inference_service="iris", component="predictor")


def kafka_record(event, offset: int, partition: int = 0, topic: str = "iris-events", timestamp: float = 0.0) -> Record:
    """An SDK CloudEvent, through the real Kafka binding, as the Record a worker would poll."""
    message = ce_kafka.to_binary_event(event, key_mapper=lambda e: e.get_id())
    headers = {k: (v if isinstance(v, bytes) else str(v).encode()) for k, v in message.headers.items()}
    return Record(
        topic=topic,
        partition=partition,
        offset=offset,
        value=message.value,
        headers=headers,
        timestamp=timestamp,
        key=message.key if isinstance(message.key, bytes) else None,
    )


def request(body: Any, offset: int = 0, eid: str | None = None, content_type: str = "application/json", **kw) -> Record:
    data = body if isinstance(body, bytes) else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    event = BUILDER.request(eid or str(uuid.uuid4()), data, content_type, "{}")
    return kafka_record(event, offset, **kw)


def response(body: Any, eid: str, offset: int = 0, status: int = 200, **kw) -> Record:
    data = body if isinstance(body, bytes) else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    event = BUILDER.response(eid, data, "application/json", "{}", status)
    return kafka_record(event, offset, **kw)
