"""The join of labels to predictions and its durable, bounded state, without Kafka: records as
the worker reads them, driven through `Join` (the worker's loop adds only the I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from infertap.detectors.decode import Record
from infertap.detectors.performance.join import Join
from infertap.detectors.performance.metrics import PerformanceMetrics
from infertap.detectors.performance.settings import PerformanceSettings
from infertap.detectors.performance.state import StateError
from infertap.logger.events import EventBuilder
from infertap.logger.sinks.kafka_records import to_record
from infertap.stream.feedback import Feedback, feedback_event

pytestmark = pytest.mark.fast  # no broker, no server child

EVENTS, FEEDBACK = "iris-events", "iris-feedback"
CLASSES = ["setosa", "versicolor", "virginica"]
T0 = 1_800_000_000.0  # event times: the join never looks at the clock for them
BUILDER = EventBuilder(source="http://test/", inference_service="iris", metadata_headers=["X-Request-Id"])


class Stream:
    """Records of both topics with increasing offsets, as one partition of each delivers them."""

    def __init__(self, partition: int = 0):
        self.partition, self.offsets = partition, {EVENTS: 0, FEEDBACK: 0}

    def _record(self, topic: str, key: str, value: bytes, headers: list) -> Record:
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        return Record(topic, self.partition, offset, value, dict(headers), T0, key.encode())

    def response(self, ident: str, predictions, at: float = 0.0, status: int = 200, metadata: str = "{}") -> Record:
        when = datetime.fromtimestamp(T0 + at, UTC)
        body = orjson.dumps({"predictions": predictions})
        key, value, headers = to_record(BUILDER.response(ident, body, "application/json", metadata, status, when))
        return self._record(EVENTS, key, value, headers)

    def request(self, ident: str) -> Record:
        key, value, headers = to_record(
            BUILDER.request(ident, b'{"instances": [[1, 2, 3, 4]]}', "application/json", "{}")
        )
        return self._record(EVENTS, key, value, headers)

    def label(self, ident: str, target, at: float = 0.0) -> Record:
        item = Feedback(ident, target, datetime.fromtimestamp(T0 + at, UTC))
        key, value, headers = to_record(feedback_event(item, "http://test/", "iris"))
        return self._record(FEEDBACK, key, value, headers)

    def raw_label(self, value: bytes, key: str | None = None) -> Record:
        return self._record(FEEDBACK, key or "", value, [])


def settings(tmp_path: Path, **params) -> PerformanceSettings:
    window = params.pop("window", {"size": 4})
    return PerformanceSettings(
        name="iris-perf",
        inference_service="iris",
        params={"task": "classification", "classes": CLASSES, **params},
        window=window,
        state_dir=tmp_path,
    )


def make(tmp_path: Path, **params) -> tuple[Join, PerformanceMetrics]:
    s = settings(tmp_path, **params)
    m = PerformanceMetrics("iris", "iris-perf", s.params.classes, CollectorRegistry())
    join = Join(s, m, tmp_path)
    join.open("partition-0")
    return join, m


def count(m: PerformanceMetrics, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    return sum(
        sample.value
        for family in m.registry.collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_labels_early_late_duplicated_and_for_unknown_ids(tmp_path: Path) -> None:
    join, m = make(tmp_path, max_pending_labels=2)
    s = Stream()
    rejects = join.apply(
        [
            s.label("b", "versicolor", at=50),  # before its prediction
            s.response("a", [0], at=0),
            s.response("b", [[0.1, 0.7, 0.2]], at=1),  # probabilities: predicted versicolor
            s.request("c"),  # requests are not predictions
            s.label("a", "setosa", at=300),  # five minutes late
            s.label("a", "virginica", at=400),  # a second label: the first one counts
            s.label("ghost-1", "setosa"),
            s.label("ghost-2", "setosa"),
            s.label("ghost-3", "setosa"),  # a third waiting label: the oldest falls out
        ]
    )
    assert [(r.reason, orjson.loads(r.record.value)["id"]) for r in rejects] == [("unknown_id", "ghost-1")]
    assert count(m, "infertap_performance_labels_total", outcome="early") == 4
    assert count(m, "infertap_performance_labels_total", outcome="joined") == 2
    assert count(m, "infertap_performance_labels_total", outcome="duplicate") == 1
    assert count(m, "infertap_performance_evicted_total", kind="label", reason="count") == 1
    assert count(m, "infertap_performance_predictions_total", outcome="ignored") == 1
    assert count(m, "infertap_performance_pending", kind="label") == 2
    assert [(p.id, p.target, p.values) for p in join.window] == [
        ("b", ["versicolor"], ["versicolor"]),
        ("a", ["setosa"], ["setosa"]),
    ]
    assert sorted(p.delay for p in join.window) == [49.0, 300.0]  # label time minus prediction time, event times


def test_windows_of_rows_their_figures_and_the_share_labelled(tmp_path: Path) -> None:
    join, m = make(tmp_path, window={"size": 4})
    s = Stream()
    records = [s.response(f"r{i}", [i % 3], at=i) for i in range(10)]
    truth = ["setosa", "versicolor", "setosa", "setosa", "versicolor", "virginica", "setosa", "setosa"]
    records += [s.label(f"r{i}", truth[i], at=60 + i) for i in range(8)]  # r8, r9 stay unlabelled
    join.apply(records)
    windows = join.due()
    assert [len(w) for w in windows] == [4, 4] and not join.window
    body = join.body(windows[0])
    predicted = [CLASSES[i % 3] for i in range(4)]
    assert body["n"] == 4 and body["accuracy"] == sum(p == t for p, t in zip(predicted, truth[:4], strict=True)) / 4
    assert body["label_delay_seconds"]["p50"] == 60.0
    assert body["predictions_in_span"] == 10 and body["labelled_in_span"] == 8 and body["labelled_share"] == 0.8
    assert body["event_ids"] == ["r0", "r1", "r2", "r3"]
    assert body["window_start"] == "2027-01-15T08:00:00Z"
    m.window(body)
    assert (
        count(m, "infertap_performance_metric", kind="realised", metric="accuracy", **{"class": "_all"})
        == body["accuracy"]
    )
    assert count(m, "infertap_performance_labelled_share") == 0.8


def test_a_restart_keeps_every_joined_pair_and_skips_what_it_took_in(tmp_path: Path) -> None:
    join, _ = make(tmp_path, window={"size": 10})
    s = Stream()
    first = [s.response(f"r{i}", [0], at=i) for i in range(6)] + [s.label(f"r{i}", "setosa", at=9) for i in range(4)]
    join.apply(first)
    join.flush()
    assert len(join.window) == 4
    join.close_all()  # the process is gone; a new one opens the same files

    again, m = make(tmp_path, window={"size": 10})
    assert [p.id for p in again.window] == ["r0", "r1", "r2", "r3"]
    state = again.shards["partition-0"]
    assert state.offsets == {(EVENTS, 0): 6, (FEEDBACK, 0): 4}
    assert len(again.apply(first)) == 0 and len(again.window) == 4  # records below the offsets: already in
    assert count(m, "infertap_performance_labels_total", outcome="joined") == 0
    rest = [s.label(f"r{i}", "versicolor", at=20) for i in (4, 5)]
    again.apply(rest)
    assert [p.id for p in again.window] == [f"r{i}" for i in range(6)]
    closed = again.due(flush=True)  # a count window closes only when full
    assert closed == []
    window = again.window[:]
    again.published(window)
    again.flush()
    again.close_all()
    third, m3 = make(tmp_path, window={"size": 10})
    assert third.window == []  # published pairs are not published again
    third.apply([s.label("r0", "virginica", at=30)])
    assert count(m3, "infertap_performance_labels_total", outcome="duplicate") == 1


def test_bounds_by_age_count_the_predictions_never_labelled(tmp_path: Path) -> None:
    join, m = make(tmp_path, max_age_s=3600)
    s = Stream()
    join.apply([s.response("old", [0], at=0), s.response("new", [1], at=2 * 3600)])
    assert count(m, "infertap_performance_evicted_total", kind="prediction", reason="age") == 1
    assert list(join.shards["partition-0"].predictions) == ["new"]
    rejects = join.apply([s.label("old", "setosa", at=2 * 3600)])  # too late: waits as a label
    assert rejects == [] and count(m, "infertap_performance_labels_total", outcome="early") == 1


def test_bad_labels_are_dead_lettered_with_a_reason(tmp_path: Path) -> None:
    join, m = make(tmp_path)
    s = Stream()
    rejects = join.apply(
        [
            s.response("a", [0], at=0),
            s.response("batch", [0, 1], at=0),
            s.label("a", "dog"),
            s.label("batch", "setosa"),  # one target for two rows
            s.raw_label(b"not json", key="x"),
            s.raw_label(b'{"id": "a", "target": "setosa"}', key="someone-else"),
            s.raw_label(b'[{"id": "a", "target": "setosa"}]'),
        ]
    )
    assert [r.reason for r in rejects] == ["unknown_class", "wrong_shape", "not_json", "wrong_key", "wrong_shape"]
    assert count(m, "infertap_performance_labels_total", outcome="rejected") == 5
    join.apply([s.label("batch", ["setosa", "virginica"]), s.label("a", 0)])  # fitting labels still join
    assert sorted(p.id for p in join.window) == ["a", "batch"]


def test_responses_that_say_no_prediction(tmp_path: Path) -> None:
    join, m = make(tmp_path)
    s = Stream()
    rejects = join.apply(
        [
            s.response("failed", [0], status=500),
            s.response("odd", [7]),
            s.response("wide", [[0.5, 0.5]]),
        ]
    )
    assert [r.reason for r in rejects] == ["unknown_category", "wrong_shape"]
    assert count(m, "infertap_performance_predictions_total", outcome="ignored") == 1


def test_join_on_a_header_copied_into_metadata(tmp_path: Path) -> None:
    join, _ = make(tmp_path, join_on="header", id_header="x-request-id")
    join.open("all")
    s = Stream(partition=3)
    join.apply(
        [
            s.response("uuid-1", [2], metadata='{"X-Request-Id":["client-7"]}'),
            s.response("uuid-2", [1]),  # no header: nothing to join on
            s.label("client-7", "virginica"),
        ]
    )
    assert [(p.id, p.values) for p in join.window] == [("client-7", ["virginica"])]


def test_regression_pairs(tmp_path: Path) -> None:
    s_ = PerformanceSettings(
        name="r", inference_service="iris", params={"task": "regression"}, window={"size": 2}, state_dir=tmp_path
    )
    join = Join(s_, PerformanceMetrics("iris", "r", registry=CollectorRegistry()), tmp_path)
    join.open("partition-0")
    s = Stream()
    rejects = join.apply(
        [s.response("a", [1.5]), s.response("b", [[3.0]]), s.label("a", 2.0), s.label("b", "3"), s.label("b", 2)]
    )
    assert [r.reason for r in rejects] == ["bad_value"]
    body = join.body(join.due()[0])
    assert body["mae"] == pytest.approx(0.75) and body["task"] == "regression"


def test_a_state_file_of_another_detector_is_refused(tmp_path: Path) -> None:
    join, _ = make(tmp_path)
    join.close_all()
    other = PerformanceSettings(
        name="x", inference_service="wine", params={"task": "classification"}, state_dir=tmp_path
    )
    with pytest.raises(StateError, match="give each Detector a state_dir of its own"):
        Join(other, PerformanceMetrics("wine", "x", registry=CollectorRegistry()), tmp_path).open("partition-0")


def test_duration_windows_close_on_time_with_what_they_hold(tmp_path: Path) -> None:
    join, _ = make(tmp_path, window={"duration": 30})
    s = Stream()
    join.apply([s.response("a", [0]), s.response("b", [1]), s.label("a", "setosa"), s.label("b", "setosa")])
    started = join._window_started
    assert started is not None
    assert join.due(now=started + 10) == []
    (window,) = join.due(now=started + 31)
    assert [p.id for p in window] == ["a", "b"] and join.window == []
    assert join.due(now=started + 100) == []  # nothing held: nothing to publish
