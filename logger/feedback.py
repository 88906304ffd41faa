"""Feedback at the logger: ground truth POSTed to the sidecar, on its way to `<isvc>-feedback`.

`POST /v1/models/{name}/feedback` takes JSON, one item `{"id": ..., "target": ...}` or a list
of them (`infertap.stream.feedback` says what an item is), or an `io.infertap.feedback`
CloudEvent (binary or structured mode; its data one item or a list, an item without `id`
naming the event's id). A feedback CloudEvent POSTed to the ingest (`POST /`) is taken the
same way. Answers: 202 `{"accepted": n}`; 400 `{"error": reason}` for feedback of an unknown
shape, a wrong type, or a class the model never predicts (when the sidecar knows the classes:
`feedback_classes`), and nothing of a batch with a bad item is taken; 503 when the sidecar
has no feedback sink.

Each item goes on as a CloudEvent of its own whose id is the prediction's id, the record key
the Kafka sink writes, so it lands on the partition of its prediction. Delivery is the
logger's: a `Delivery` of its own (queue, batches, spool, retries), with one sink per
`feedback_url`, by default every `kafka://` log URL with its topic replaced by
`topics(isvc).feedback` (same brokers, same TLS/SASL options). Nothing here blocks: parse,
check, enqueue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from cloudevents.core.v1.event import CloudEvent

from infertap.logger import ingest
from infertap.stream.feedback import Feedback, FeedbackError, Targets, Task, feedback_event, parse_item, parse_items
from infertap.stream.kafka_url import KafkaURL, KafkaURLError
from infertap.stream.topics import topics

NO_SINK = (
    "this logger has no feedback sink: give --feedback-url, or a kafka:// --log-url and --inference-service "
    "(feedback goes to <inference-service>-feedback)"
)


def feedback_urls(settings: Any) -> list[str]:
    """Where feedback goes: `settings.feedback_url`, else each kafka:// log URL with the topic
    `<inference_service>-feedback` (none without an InferenceService name)."""
    given = list(getattr(settings, "feedback_url", []) or [])
    if given:
        return given
    isvc = getattr(settings, "inference_service", "")
    if not isvc:
        return []
    out = []
    for url in getattr(settings, "log_url", []):
        if str(url).lower().startswith("kafka://"):
            try:
                out.append(str(KafkaURL.parse(str(url), default_port=None).with_topic(topics(isvc).feedback)))
            except KafkaURLError:
                continue  # the events sink reports the bad URL
    return out


class FeedbackIngest:
    """Checks feedback and hands it to its delivery (None: answers 503)."""

    def __init__(
        self, delivery: Any, targets: Targets, source: str, inference_service: str = "", max_items: int = 10_000
    ):
        self.delivery, self.targets, self.source = delivery, targets, source
        self.inference_service, self.max_items = inference_service, max_items

    @classmethod
    def from_settings(cls, settings: Any) -> FeedbackIngest:
        """From a `LoggerSettings`: its own delivery when there are feedback URLs (SinkConfigError on a bad one)."""
        urls = feedback_urls(settings)
        delivery = None
        if urls:
            from infertap.logger.delivery import build_delivery

            delivery = build_delivery(settings.model_copy(update={"log_url": urls}))
        wanted = getattr(settings, "feedback_task", "any")
        task: Task | None = (
            "classification" if wanted == "classification" else "regression" if wanted == "regression" else None
        )
        return cls(
            delivery,
            Targets(
                task,
                getattr(settings, "feedback_classes", None) or None,
            ),
            getattr(settings, "source_uri", "infertap://logger/"),
            getattr(settings, "inference_service", ""),
            getattr(settings, "feedback_max_items", 10_000),
        )

    async def start(self) -> None:
        if self.delivery is not None:
            await self.delivery.start()

    async def stop(self) -> None:
        if self.delivery is not None:
            await self.delivery.stop()

    # --- requests -----------------------------------------------------------------------

    def accept(self, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, dict]:
        """A POST to the feedback endpoint: (status, JSON answer)."""
        if self.delivery is None:
            return 503, {"error": NO_SINK}
        if ingest.is_cloudevent(headers):
            try:
                event = ingest.parse(headers, body)
            except ingest.IngestError as exc:
                return 400, {"error": str(exc)}
            return self.accept_event(event)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, {"error": 'feedback is JSON: {"id": ..., "target": ...} or a list of them'}
        try:
            items = parse_items(obj, self.max_items)
        except FeedbackError as exc:
            return 400, {"error": exc.message}
        return self._submit(items)

    def accept_event(self, event: CloudEvent) -> tuple[int, dict]:
        """An `io.infertap.feedback` CloudEvent (the endpoint's, or the ingest's)."""
        if self.delivery is None:
            return 503, {"error": NO_SINK}
        data = event.get_data()
        try:
            obj = orjson.loads(data) if isinstance(data, bytes | str) else data
        except orjson.JSONDecodeError:
            return 400, {"error": "feedback CloudEvent data is not JSON"}
        try:
            if isinstance(obj, dict) and "id" not in obj:  # the event's id names the prediction
                items = [parse_item({**obj, "id": event.get_id()})]
            else:
                items = parse_items(obj, self.max_items)
        except FeedbackError as exc:
            return 400, {"error": exc.message}
        when = event.get_time()
        if when is not None:  # the event's time, for the items that do not say theirs
            items = [i if i.time is not None else Feedback(i.id, i.target, when) for i in items]
        return self._submit(items)

    def _submit(self, items: list[Feedback]) -> tuple[int, dict]:
        many = len(items) > 1
        try:
            for i, item in enumerate(items):
                self.targets.check(item, f"feedback[{i}]" if many else "feedback")
        except FeedbackError as exc:
            return 400, {"error": exc.message}
        now = datetime.now(UTC)
        for item in items:
            self.delivery.submit(feedback_event(item, self.source, self.inference_service, now))
        return 202, {"accepted": len(items)}
