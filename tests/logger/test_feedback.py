"""The feedback ingest of the logger (`infertap.logger.feedback`): where feedback goes, what is
taken and what is answered, with a delivery that keeps what it is handed."""

from __future__ import annotations

import orjson
import pytest

from infertap.logger.feedback import NO_SINK, FeedbackIngest, feedback_urls
from infertap.logger.sinks.kafka_records import to_record
from infertap.sidecar.settings import LoggerSettings
from infertap.stream.feedback import Targets

pytestmark = pytest.mark.fast  # no broker, no server child


class Kept:
    """A delivery that keeps the events it is handed (the real one queues them for the sinks)."""

    def __init__(self) -> None:
        self.events: list = []

    def submit(self, event) -> None:
        self.events.append(event)


def ingest(task=None, classes=None) -> tuple[FeedbackIngest, Kept]:
    kept = Kept()
    return FeedbackIngest(kept, Targets(task, classes), "http://sidecar/", "iris", max_items=3), kept


def test_feedback_goes_to_the_feedback_topic_of_every_kafka_log_url() -> None:
    settings = LoggerSettings(
        inference_service="iris",
        log_url=["kafka://b1:9092,b2:9093/iris-events?security_protocol=SSL", "http://broker/", "file:///tmp/x"],
    )
    assert feedback_urls(settings) == ["kafka://b1:9092,b2:9093/iris-feedback?security_protocol=SSL"]
    assert feedback_urls(settings.model_copy(update={"feedback_url": ["http://labels/"]})) == ["http://labels/"]
    assert feedback_urls(LoggerSettings(log_url=["kafka://b:9092/t"])) == []  # no InferenceService: no topic name


def test_json_items_and_batches_become_one_event_each_keyed_by_id() -> None:
    feedback, kept = ingest("classification", ["cat", "dog"])
    assert feedback.accept([], b'{"id": "a", "target": "cat"}') == (202, {"accepted": 1})
    assert feedback.accept([], b'[{"id": "b", "target": 1}, {"id": "c", "target": "dog", "time": 0}]') == (
        202,
        {"accepted": 2},
    )
    keys = [to_record(e)[0] for e in kept.events]
    assert keys == ["a", "b", "c"]
    assert [e.get_subject() for e in kept.events] == ["iris"] * 3
    assert orjson.loads(kept.events[2].get_data())["time"] == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"nope", "feedback is JSON"),
        (b'{"id": "a", "target": "cow"}', "'cow' is not a class the model predicts"),
        (b'[{"id": "a", "target": "cat"}, {"id": "b", "target": "cow"}]', "feedback[1].target"),
        (
            b'[{"id": "a", "target": "cat"}, {"id": "b", "target": "dog"}, {"id": "c", "target": 0}, {"id": "d", "target": 1}]',
            "at most 3",
        ),
    ],
)
def test_bad_feedback_is_400_and_nothing_of_it_is_taken(body: bytes, words: str) -> None:
    feedback, kept = ingest("classification", ["cat", "dog"])
    status, answer = feedback.accept([], body)
    assert status == 400 and words in answer["error"]
    assert kept.events == []


def test_cloudevents_binary_and_structured() -> None:
    feedback, kept = ingest("regression")
    binary = [
        (b"ce-specversion", b"1.0"),
        (b"ce-id", b"pred-9"),
        (b"ce-source", b"labeller"),
        (b"ce-type", b"io.infertap.feedback"),
        (b"ce-time", b"2026-11-30T10:00:00Z"),
        (b"content-type", b"application/json"),
    ]
    assert feedback.accept(binary, b'{"target": 2.5}') == (202, {"accepted": 1})
    structured = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "x",
            "source": "s",
            "type": "io.infertap.feedback",
            "data": {"id": "p", "target": 1},
        }
    )
    assert feedback.accept([(b"content-type", b"application/cloudevents+json")], structured)[0] == 202
    first, second = kept.events
    assert (first.get_id(), orjson.loads(first.get_data())) == (
        "pred-9",
        {"id": "pred-9", "target": 2.5, "time": "2026-11-30T10:00:00Z"},
    )
    assert second.get_id() == "p"
    status, answer = feedback.accept(binary, b'{"target": "high"}')
    assert status == 400 and "finite number" in answer["error"]


def test_without_a_sink_it_says_how_to_get_one() -> None:
    feedback = FeedbackIngest(None, Targets(), "http://sidecar/")
    assert feedback.accept([], b'{"id": "a", "target": 1}') == (503, {"error": NO_SINK})
