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

from infertap.detectors.decode import DecodedWindow, Event, Reject
from infertap.detectors.result import DetectionResult, QualityViolation
from infertap.stream.events import DATA_QUALITY_TYPE, DEAD_LETTER_TYPE, PERFORMANCE_TYPE, detection_type

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


#: body fields only performance results carry (left out of the others' bodies)
PERFORMANCE_FIELDS = {"performance_kind", "problem", "metrics", "is_alert"}
#: body fields only data-quality results carry (`is_alert` too)
QUALITY_FIELDS = {"violations", "quality"}


def detection_body(
    result: DetectionResult, events: list[Event], rejected: int = 0, bounds: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The body: the result, the covered events' ids and offsets, and the window's identity.

    `window_start` / `window_end`: the first and last event time of the window. `window`
    (time windows only): the window's span `{"start", "end"}` as the window counts it, [k·slide,
    k·slide + duration) from the epoch: the same for every worker counting the same duration
    and slide, so two detectors' figures of one span (an estimate and the realised figure)
    are recognised as one window.
    """
    if result.kind == "performance":
        body = performance_body(result)
    elif result.kind == "dataquality":
        body = result.model_dump(mode="json", exclude=PERFORMANCE_FIELDS - {"is_alert"})
    else:
        body = result.model_dump(mode="json", exclude=PERFORMANCE_FIELDS | QUALITY_FIELDS)
    body["event_ids"] = [e.id for e in events]
    body["offsets"] = offsets_of(events)
    body["events"] = len(events)
    body["rejected"] = rejected
    if events:
        body["window_start"] = _iso(min(e.timestamp for e in events))
        body["window_end"] = _iso(max(e.timestamp for e in events))
    if bounds is not None:
        body["window"] = {"start": _iso(bounds[0]), "end": _iso(bounds[1])}
    return body


def performance_body(result: DetectionResult) -> dict[str, Any]:
    """A performance result as the performance worker's bodies read (`infertap.detectors.performance`):
    `kind` estimated or realised, `task`, the flat figures (`accuracy`, `precision_macro`, ...,
    `roc_auc`, `per_class`; `mae`, `rmse`), and beside them `metrics`: every figure with its
    confidence band (estimates), thresholds and alert."""
    body = result.model_dump(mode="json", exclude={"performance_kind"})
    body["kind"] = result.performance_kind
    body["task"] = "regression" if result.problem == "regression" else "classification"
    per_class: dict[str, dict[str, float | None]] = {}
    for m in result.metrics:
        if m.klass == "_all":
            body[m.name] = m.value
        elif m.klass == "_macro":
            body[m.name if m.name == "roc_auc" else f"{m.name}_macro"] = m.value
        else:
            per_class.setdefault(m.klass, {})[m.name] = m.value
    if per_class:
        body["per_class"] = per_class
    return body


def window_event(origin: Origin, decoded: DecodedWindow, result: DetectionResult) -> CloudEvent:
    """The detection CloudEvent of a judged window, as the worker publishes it (and the replay writes it)."""
    result = result.model_copy(update={"excluded": decoded.excluded})
    if result.violations:  # examples name the event their row came from
        result = result.model_copy(update={"violations": _with_event_ids(result.violations, decoded)})
    return detection_event(origin, result, decoded.events, rejected=len(decoded.rejects), bounds=decoded.bounds)


def detection_event(
    origin: Origin,
    result: DetectionResult,
    events: list[Event],
    rejected: int = 0,
    bounds: tuple[float, float] | None = None,
) -> CloudEvent:
    """The detection CloudEvent of one window (`io.infertap.performance` for performance results,
    with the extension `performancekind`: estimated or realised)."""
    attrs = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": _event_type(result.kind),
        "source": origin.source,
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
        "subject": origin.inference_service or origin.detector,
        "detector": origin.detector,
        "inferenceservicename": origin.inference_service,
    }
    if result.performance_kind is not None:
        attrs["performancekind"] = result.performance_kind
    data = orjson.dumps(detection_body(result, events, rejected, bounds), option=orjson.OPT_SERIALIZE_NUMPY)
    return CloudEvent(attrs, data)


def _event_type(kind: str) -> str:
    """`io.infertap.performance`, `io.infertap.dataquality`, else `io.infertap.detection.<kind>`."""
    if kind == "performance":
        return PERFORMANCE_TYPE
    if kind == "dataquality":
        return DATA_QUALITY_TYPE
    return detection_type(kind)


def _with_event_ids(violations: list[QualityViolation], decoded: DecodedWindow) -> list[QualityViolation]:
    """The violations with each example's `event_id`: the event its row of the frame came from."""
    owners, events = decoded.row_event, decoded.events
    out = []
    for violation in violations:
        examples = [
            e.model_copy(update={"event_id": events[int(owners[e.row])].id}) if 0 <= e.row < len(owners) else e
            for e in violation.examples
        ]
        out.append(violation.model_copy(update={"examples": examples}))
    return out


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
