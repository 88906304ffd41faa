"""Detection and dead-letter CloudEvents, built with the cloudevents SDK.

Detection: `type` `io.infertap.detection.drift|outlier|adversarial`, `subject` the
InferenceService, body the `DetectionResult` plus the ids of the events covered and the
first and last offset per partition (so duplicates after a restart can be recognised).

Dead letter: `type` `io.infertap.detection.deadletter`, the original body byte-exact, and
extensions saying why (`reason`, `reasondetail`) and where it came from (`originalid`,
`originaltype`, `originaltopic`, `originalpartition`, `originaloffset`). Bodies over
512 KiB are cut to that prefix (`bodytruncated: "true"`, `originalsize`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

from infertap.detectors.decode import Event, Reject
from infertap.detectors.result import DetectionResult
from infertap.stream.events import DEAD_LETTER_TYPE, detection_type

#: Most bytes of the original body a dead letter carries. A record that reached the events
#: topic near the broker's size limit would not fit again with the dead-letter attributes
#: added (MSG_SIZE_TOO_LARGE killed the worker, and again after every restart); beyond this
#: the dead letter holds the prefix and says `bodytruncated`.
DEAD_LETTER_MAX_BODY = 512 * 1024


@dataclass(frozen=True)
class Origin:
    """Who emits: the `source`, the InferenceService (`subject`) and the detector's name."""

    source: str
    inference_service: str
    detector: str


def offsets_of(events: Iterable[Event]) -> list[dict[str, Any]]:
    """First and last offset per (topic, partition) of the records behind `events`."""
    spans: dict[tuple[str, int], list[int]] = {}
    for event in events:  # a thousand events a window: plain comparisons, no min/max calls
        for record in event.records:
            offset, span = record.offset, spans.get((record.topic, record.partition))
            if span is None:
                spans[(record.topic, record.partition)] = [offset, offset]
            elif offset < span[0]:
                span[0] = offset
            elif offset > span[1]:
                span[1] = offset
    return [{"topic": t, "partition": p, "first": a, "last": b} for (t, p), (a, b) in sorted(spans.items())]


def detection_body(result: DetectionResult, events: list[Event], rejected: int = 0) -> dict[str, Any]:
    body = result.model_dump(mode="json")
    body["event_ids"] = [e.id for e in events]
    body["offsets"] = offsets_of(events)
    body["events"] = len(events)
    body["rejected"] = rejected
    if events:
        body["window_start"] = _iso(min(e.timestamp for e in events))
        body["window_end"] = _iso(max(e.timestamp for e in events))
    return body


def detection_event(origin: Origin, result: DetectionResult, events: list[Event], rejected: int = 0) -> CloudEvent:
    """The detection CloudEvent of one window."""
    attrs = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": detection_type(result.kind),
        "source": origin.source,
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
        "subject": origin.inference_service or origin.detector,
        "detector": origin.detector,
        "inferenceservicename": origin.inference_service,
    }
    data = orjson.dumps(detection_body(result, events, rejected), option=orjson.OPT_SERIALIZE_NUMPY)
    return CloudEvent(attrs, data)


def dead_letter_event(origin: Origin, reject: Reject) -> CloudEvent:
    """A rejected record as a CloudEvent carrying its original body and the reason."""
    record = reject.record
    attrs = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": DEAD_LETTER_TYPE,
        "source": origin.source,
        "time": datetime.now(UTC),
        "subject": origin.inference_service or origin.detector,
        "reason": reject.reason,
        "reasondetail": reject.message[:1000],
        "detector": origin.detector,
        "originaltopic": record.topic,
        "originalpartition": record.partition,
        "originaloffset": record.offset,
        "datacontenttype": record.header("content-type") or "application/octet-stream",
    }
    for name, attr in (("ce_id", "originalid"), ("ce_type", "originaltype")):
        if record.headers.get(name):
            attrs[attr] = record.header(name)
    body = record.value or b""
    if len(body) > DEAD_LETTER_MAX_BODY:
        attrs["bodytruncated"] = "true"
        attrs["originalsize"] = len(body)
        body = body[:DEAD_LETTER_MAX_BODY]
    return CloudEvent(attrs, body)


def to_kafka(event: CloudEvent, key: str | None = None) -> ce_kafka.KafkaMessage:
    """Kafka binding, binary mode; key = `key`, else the event id.

    Detections are keyed by detector name, so one detector's detections stay in order on
    one partition of the output topic; dead letters by their own id.
    """
    return ce_kafka.to_binary_event(event, key_mapper=lambda e: key or e.get_id())


def to_http(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """HTTP binding, binary mode: (headers, body)."""
    message = ce_http.to_binary_event(event)
    return dict(message.headers), message.body


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
