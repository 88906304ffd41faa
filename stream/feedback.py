"""The feedback contract: ground truth for a logged prediction, joined to it by the prediction's id.

A feedback item is a JSON object

    {"id": "<id of the logged prediction>", "target": <ground truth>, "time": <optional>}

- `id`: the id the logged events carry (the CloudEvent `id`: the request's `ce-id`, or the
  header the sidecar's `request_id_header` names, e.g. `X-Request-Id`, else a UUID the
  client never saw), or, for a performance worker that joins on a header
  (`join_on: header`), the value of that header in the events' `metadata` extension.
  A non-empty string of at most `MAX_ID_CHARS` characters.
- `target`: a class (a string, an integer or a boolean) or a number (regression); a list
  of them, one per row in order, when the logged request held several rows.
- `time`: when the ground truth became known, ISO 8601 (`2026-11-30T12:00:00Z`) or seconds
  since the epoch; default: when the feedback was received. The label delay is this time
  minus the prediction's event time.

On Kafka (`topics(isvc).feedback`, `<isvc>-feedback`) each record holds one item: a
binary-mode CloudEvent (`ce_` headers) of type `io.infertap.feedback` whose `id` is the
prediction's id (a second label for the same prediction is, to CloudEvents, the same event
again: the first one counts), `subject` the InferenceService, body the item's JSON. The
record key is the prediction's id, as the events' key is theirs, and both are partitioned
with murmur2 (`clients.PARTITIONER`, Java's default), so a label lands on the partition
number its prediction's events are on: the two topics are co-partitioned when they have
the same partition count. Any producer may write the topic: a plain JSON item keyed by its
id is accepted as well (no `ce_` headers needed).

Parsing here is the one place the shape is checked, by the sidecar's endpoint, the backfill
command and the performance worker alike; `FeedbackError.reason` is from a closed set
(`REASONS`), so metric labels stay bounded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from .events import FEEDBACK_TYPE

MAX_ID_CHARS = 512
#: why a feedback item was refused (HTTP 400 messages, dead-letter `reason`s)
REASONS = (
    "not_json",
    "wrong_shape",
    "bad_id",
    "bad_value",
    "unknown_class",
    "bad_time",
    "wrong_key",
    "unknown_type",
    "unknown_id",  # the worker's: no prediction with this id showed within its state's bounds
)
Task = Literal["classification", "regression"]
Scalar = str | int | float | bool


class FeedbackError(ValueError):
    """A feedback item that cannot be used; `reason` is one of `REASONS`, the message a sentence."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True, slots=True)
class Feedback:
    """One item: the ground truth `target` of the prediction `id`, known at `time` (None: unsaid)."""

    id: str
    target: Any  # a Scalar, or a list of them (one per row of the request)
    time: datetime | None = None

    def body(self) -> bytes:
        """The item as JSON (what a record's value holds)."""
        item: dict[str, Any] = {"id": self.id, "target": self.target}
        if self.time is not None:
            item["time"] = iso(self.time)
        return orjson.dumps(item)

    @property
    def rows(self) -> list[Any]:
        """The target per row (a scalar target is one row)."""
        return list(self.target) if isinstance(self.target, list) else [self.target]


def iso(when: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as the CloudEvents `time` attribute reads."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: Any, where: str = "time") -> datetime:
    """An aware datetime from ISO 8601 text or seconds since the epoch; FeedbackError otherwise."""
    if isinstance(value, bool):
        raise FeedbackError("bad_time", f"{where} must be ISO 8601 text or seconds since the epoch (got a boolean)")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < 253402300800:  # before the year 10000
            raise FeedbackError("bad_time", f"{where} {value!r} is not a time in seconds since the epoch")
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise FeedbackError("bad_time", f"{where} {value[:60]!r} is not an ISO 8601 time") from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    raise FeedbackError(
        "bad_time", f"{where} must be ISO 8601 text or seconds since the epoch (got {type(value).__name__})"
    )


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and not (isinstance(value, float) and not math.isfinite(value))


_FIELDS = frozenset({"id", "target", "time"})


def parse_item(obj: Any, where: str = "feedback", when: datetime | None = None) -> Feedback:
    """One item from its decoded JSON; FeedbackError naming `where` and what is wrong. `when`:
    the item's time as its envelope says it (then the body's `time` is not read)."""
    if not isinstance(obj, dict):
        raise FeedbackError("wrong_shape", f'{where} must be a JSON object {{"id": ..., "target": ...}}')
    if not _FIELDS.issuperset(obj):
        unknown = sorted(set(obj) - _FIELDS)
        raise FeedbackError("wrong_shape", f"{where} has unknown field(s) {', '.join(map(repr, unknown[:5]))}")
    if "id" not in obj or "target" not in obj:
        missing = [k for k in ("id", "target") if k not in obj]
        raise FeedbackError("wrong_shape", f"{where} lacks {' and '.join(missing)}")
    ident = obj["id"]
    if not isinstance(ident, str) or not ident or len(ident) > MAX_ID_CHARS:
        raise FeedbackError("bad_id", f"{where}.id must be a non-empty string of at most {MAX_ID_CHARS} characters")
    target = obj["target"]
    if isinstance(target, list):
        if not target or not all(_scalar(t) for t in target):
            raise FeedbackError("bad_value", f"{where}.target: a list must hold one string, number or boolean per row")
    elif not _scalar(target):
        shown = "null" if target is None else type(target).__name__
        raise FeedbackError(
            "bad_value", f"{where}.target must be a string, number or boolean, or a list of them (got {shown})"
        )
    if when is None and obj.get("time") is not None:
        when = parse_time(obj["time"], f"{where}.time")
    return Feedback(ident, target, when)


def parse_items(obj: Any, max_items: int = 10_000) -> list[Feedback]:
    """The items of a request body: one object, or a list of them (a batch)."""
    if isinstance(obj, dict):
        return [parse_item(obj)]
    if not isinstance(obj, list) or not obj:
        raise FeedbackError("wrong_shape", 'feedback must be {"id": ..., "target": ...} or a non-empty list of them')
    if len(obj) > max_items:
        raise FeedbackError("wrong_shape", f"a batch holds at most {max_items} feedback items (got {len(obj)})")
    return [parse_item(item, f"feedback[{i}]") for i, item in enumerate(obj)]


# --- targets ------------------------------------------------------------------------------


def label_text(value: Any) -> str | None:
    """A class value as text: strings as they are, booleans and integers (integral floats too)
    in decimal; None for anything else (a fraction is no class)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def number(value: Any) -> float | None:
    """A regression value as a float; None for booleans, text and non-finite numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


class Targets:
    """What a target may be: any class or number (`task` None), a class (of `classes` when
    they are known) or a number. Predictions and labels are compared as class names
    (`class_name`): the same rule for both."""

    def __init__(self, task: Task | None = None, classes: Sequence[Any] | None = None):
        self.task = task
        self.classes = [str(c) for c in classes] if classes else None
        self._index = {c: i for i, c in enumerate(self.classes or ())}
        # integers stand for classes by position only when no class name is itself an integer
        # (classes [setosa, versicolor, virginica] and a model that answers 0, 1, 2)
        self._positional = bool(self.classes) and not any(_integer_text(c) for c in self.classes or ())

    def class_name(self, value: Any) -> str | None:
        """The class `value` names: its text when it is a known class (or any text when the
        classes are unknown), the class at that position for an integer when positions are
        unambiguous; None when it names no class."""
        if type(value) is str and (self.classes is None or value in self._index):  # the common case, first
            return value
        text = label_text(value)
        if text is None or self.classes is None or text in self._index:
            return text
        if self._positional and not isinstance(value, str) and _integer_text(text):
            i = int(text)
            if 0 <= i < len(self.classes):
                return self.classes[i]
        return None

    def check(self, item: Feedback, where: str = "feedback") -> None:
        """FeedbackError when a target does not fit the task (or names a class the model never predicts)."""
        if self.task is None:
            return
        for j, value in enumerate(item.rows):
            at = f"{where}.target" + (f"[{j}]" if isinstance(item.target, list) else "")
            if self.task == "regression":
                if number(value) is None:
                    raise FeedbackError(
                        "bad_value", f"{at} must be a finite number for a regression model (got {value!r})"
                    )
            elif self.class_name(value) is None:
                if self.classes is not None:
                    raise FeedbackError(
                        "unknown_class",
                        f"{at}: {value!r} is not a class the model predicts ({', '.join(self.classes[:20])})",
                    )
                raise FeedbackError("bad_value", f"{at}: a class is a string, an integer or a boolean (got {value!r})")


def _integer_text(text: str) -> bool:
    return text.lstrip("-").isdigit()


# --- on Kafka -----------------------------------------------------------------------------


def feedback_event(item: Feedback, source: str, inference_service: str = "", received: datetime | None = None):
    """The binary-mode CloudEvent of one item: `id` the prediction's id (also the record key),
    `time` the item's time (else `received`, else now), body the item's JSON."""
    from cloudevents.core.v1.event import CloudEvent

    when = item.time or received or datetime.now(UTC)
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": item.id,
        "type": FEEDBACK_TYPE,
        "source": source,
        "time": when,
        "datacontenttype": "application/json",
    }
    if inference_service:
        attributes["subject"] = inference_service
    return CloudEvent(attributes, Feedback(item.id, item.target, when).body())


def from_record(value: bytes | None, headers: Mapping[str, bytes], key: bytes | None = None) -> Feedback:
    """The item of one record of the feedback topic (a binary-mode `io.infertap.feedback`
    CloudEvent, or plain JSON); FeedbackError with the reason otherwise. The item's time is
    the body's `time`, else the event's (None when neither says: the caller takes the
    record's timestamp). A reader may leave out the headers of a body that names its id and
    time: they say nothing the body does not."""
    ce_type = headers.get("ce_type")
    if ce_type is not None and ce_type != FEEDBACK_TYPE.encode():
        raise FeedbackError("unknown_type", f"event type {ce_type.decode('utf-8', 'replace')!r} is not {FEEDBACK_TYPE}")
    if not value:
        raise FeedbackError("not_json", "empty record")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise FeedbackError("not_json", "record value is not JSON") from None
    if isinstance(obj, list):
        raise FeedbackError("wrong_shape", "one feedback item per record (keyed by its id), not a list")
    ce_id = headers.get("ce_id")
    if ce_id is not None and isinstance(obj, dict) and "id" not in obj:
        obj = {**obj, "id": ce_id.decode("utf-8", "replace")}  # the event's id names the prediction
    item = parse_item(obj)
    ce_time = headers.get("ce_time")
    if item.time is None and ce_time:  # the body's time, else the event's
        item = Feedback(item.id, item.target, parse_time(ce_time.decode("utf-8", "replace"), "ce_time"))
    if ce_id is not None and ce_id.decode("utf-8", "replace") != item.id:
        raise FeedbackError("bad_id", f"the event id and the body's id differ ({item.id!r})")
    if key is not None and key != item.id.encode():
        raise FeedbackError(
            "wrong_key", "the record key is not the feedback's id: it may be on another partition than its prediction"
        )
    return item
