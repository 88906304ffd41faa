"""The feedback contract: the shapes an item may take, what a target may be, records on Kafka."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from infertap.logger.sinks.kafka_records import sdk_record, to_record
from infertap.stream import clients
from infertap.stream.feedback import (
    Feedback,
    FeedbackError,
    Targets,
    feedback_event,
    from_record,
    parse_items,
    parse_time,
)

pytestmark = pytest.mark.fast  # no broker, no server child


def test_one_item_a_batch_and_times() -> None:
    one = parse_items({"id": "a", "target": "cat"})
    assert one == [Feedback("a", "cat", None)]
    batch = parse_items(
        [
            {"id": "a", "target": 1, "time": "2026-11-30T12:00:00Z"},
            {"id": "b", "target": [0.5, 2], "time": 1764504000},
        ]
    )
    assert batch[0].time == datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert batch[1].time == datetime.fromtimestamp(1764504000, UTC)
    assert batch[1].rows == [0.5, 2]


@pytest.mark.parametrize(
    ("body", "reason", "words"),
    [
        ("not an object", "wrong_shape", "non-empty list"),
        ([], "wrong_shape", "non-empty list"),
        ({"id": "a"}, "wrong_shape", "lacks target"),
        ({"target": 1}, "wrong_shape", "lacks id"),
        ({"id": "a", "target": 1, "label": 2}, "wrong_shape", "unknown field(s) 'label'"),
        ({"id": 7, "target": 1}, "bad_id", "non-empty string"),
        ({"id": "", "target": 1}, "bad_id", "non-empty string"),
        ({"id": "a", "target": None}, "bad_value", "got null"),
        ({"id": "a", "target": {"k": 1}}, "bad_value", "got dict"),
        ({"id": "a", "target": [1, [2]]}, "bad_value", "one string, number or boolean per row"),
        ({"id": "a", "target": 1, "time": "yesterday"}, "bad_time", "not an ISO 8601 time"),
        ([{"id": "a", "target": 1}, {"id": "b"}], "wrong_shape", "feedback[1] lacks target"),
    ],
)
def test_bad_shapes_say_what_is_wrong(body, reason: str, words: str) -> None:
    with pytest.raises(FeedbackError) as caught:
        parse_items(body)
    assert caught.value.reason == reason
    assert words in caught.value.message


def test_a_batch_over_the_limit_is_refused() -> None:
    with pytest.raises(FeedbackError, match="at most 2"):
        parse_items([{"id": str(i), "target": 0} for i in range(3)], max_items=2)


def test_class_names_positions_only_when_unambiguous() -> None:
    named = Targets("classification", ["setosa", "versicolor", "virginica"])
    assert named.class_name("virginica") == "virginica"
    assert named.class_name(2) == "virginica"  # a model answering 0, 1, 2
    assert named.class_name(2.0) == "virginica"
    assert named.class_name(3) is None and named.class_name("dog") is None
    assert named.class_name("2") is None  # text is a name, never a position
    numbered = Targets("classification", [1, 2, 3])  # classes that are numbers: no positions
    assert numbered.class_name(1) == "1" and numbered.class_name(0) is None
    free = Targets("classification")
    assert free.class_name(True) == "1" and free.class_name(4.0) == "4" and free.class_name(0.5) is None


def test_checks_of_task_and_classes() -> None:
    Targets("regression").check(Feedback("a", [1.5, 2]))
    with pytest.raises(FeedbackError) as caught:
        Targets("regression").check(Feedback("a", "high"))
    assert caught.value.reason == "bad_value" and "finite number" in caught.value.message
    with pytest.raises(FeedbackError) as caught:
        Targets("classification", ["cat", "dog"]).check(Feedback("a", ["cat", "cow"]))
    assert caught.value.reason == "unknown_class" and "target[1]: 'cow'" in caught.value.message
    with pytest.raises(FeedbackError, match="a class is a string"):
        Targets("classification").check(Feedback("a", 0.25))
    Targets(None).check(Feedback("a", 0.25))  # no task: anything a target may be


def test_the_event_is_keyed_by_the_prediction_id_and_reads_back() -> None:
    when = datetime(2026, 11, 30, 12, 5, tzinfo=UTC)
    event = feedback_event(Feedback("req-42", "setosa"), "http://sidecar/", "iris", received=when)
    key, value, headers = to_record(event)
    assert (key, value, headers) == sdk_record(event)  # the sink's fast path and the SDK agree
    assert key == "req-42" and orjson.loads(value) == {
        "id": "req-42",
        "target": "setosa",
        "time": "2026-11-30T12:05:00Z",
    }
    named = dict(headers)
    assert named["ce_type"] == b"io.infertap.feedback" and named["ce_subject"] == b"iris"
    item = from_record(value, named, key.encode())
    assert item == Feedback("req-42", "setosa", when)


def test_plain_json_records_from_any_producer() -> None:
    item = from_record(b'{"id": "x", "target": 3, "time": 1764504000}', {}, b"x")
    assert item.target == 3 and item.time == parse_time(1764504000)
    assert from_record(b'{"id": "x", "target": 3}', {}, None).time is None


@pytest.mark.parametrize(
    ("value", "headers", "key", "reason"),
    [
        (b"[]", {}, None, "wrong_shape"),
        (b"{", {}, None, "not_json"),
        (None, {}, None, "not_json"),
        (b'{"id": "x", "target": 1}', {"ce_type": b"org.kubeflow.serving.inference.response"}, None, "unknown_type"),
        (b'{"id": "x", "target": 1}', {"ce_id": b"y"}, None, "bad_id"),
        (b'{"id": "x", "target": 1}', {}, b"other", "wrong_key"),
    ],
)
def test_bad_records(value, headers, key, reason: str) -> None:
    with pytest.raises(FeedbackError) as caught:
        from_record(value, headers, key)
    assert caught.value.reason == reason


def test_producers_partition_like_java_clients() -> None:
    conf = clients.producer_config("127.0.0.1:9092", client_id="t", logger=clients.librdkafka_logger("t"))
    assert conf["partitioner"] == clients.PARTITIONER == "murmur2_random"
