"""A time window's span is its identity: the reader hands each closed window over with its bounds
[k·duration, (k+1)·duration), and its detection names them (`window`), so figures of one span from two
detectors (an estimate, the realised figure) line up. Count windows have no span."""

from __future__ import annotations

import threading

import orjson
import pytest

from infertap.detectors.events import Origin, window_event
from infertap.detectors.handoff import Handoff
from infertap.detectors.ledger import CommitLedger
from infertap.detectors.metrics import DetectorMetrics
from infertap.detectors.reader import Reader
from infertap.detectors.result import DetectionResult
from infertap.detectors.settings import WorkerSettings
from infertap.detectors.window import CountWindow, TimeWindow, bounds
from tests.detectors.records import request

pytestmark = pytest.mark.fast  # starts no process (make test-fast)

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class At:
    def __init__(self, timestamp: float):
        self.timestamp = timestamp


def test_time_windows_close_with_their_span_count_windows_without() -> None:
    closed = TimeWindow(10, slide=5).add([At(T0 + t) for t in (1, 4, 7, 12, 16)])
    assert [bounds(w) for w in closed] == [(T0 - 5, T0 + 5), (T0, T0 + 10), (T0 + 5, T0 + 15)]
    assert [[i.timestamp - T0 for i in w] for w in closed] == [[1, 4], [1, 4, 7], [7, 12]]
    assert [bounds(w) for w in CountWindow(2).add([At(1), At(2)])] == [None]


def test_the_reader_hands_over_the_span_and_the_detection_names_it() -> None:
    settings = WorkerSettings(
        name="span",
        inference_service="iris",
        features=[{"name": n} for n in "abcd"],
        detector="ScipyKS",
        reference="unused.npy",
        window={"duration": 60},
    )
    handoff: Handoff = Handoff(slots=4)
    reader = Reader(settings, DetectorMetrics("iris", "ScipyKS"), CommitLedger(), handoff, threading.Event())
    records = [request({"instances": [[1.0, 2.0, 3.0, 4.0]]}, offset=i, timestamp=T0 + 61 + i) for i in range(3)]
    assert reader.step(records, now=T0 + 64)  # nothing closes: 08:01:00-08:02:00 is still open
    assert handoff.get(0.0) is None
    assert reader.step([], now=T0 + 120.5)  # the clock passed its end
    work = handoff.get(0.0)
    assert work is not None and work.window is not None
    assert work.window.bounds == (T0 + 60, T0 + 120)
    result = DetectionResult(kind="drift", detector="ScipyKS", n=3, is_drift=False)
    event = window_event(Origin("infertap://detector/span", "iris", "span"), work.window, result)
    data = orjson.loads(event.get_data())
    assert data["window"] == {"start": "2027-01-15T08:01:00Z", "end": "2027-01-15T08:02:00Z"}
    assert data["window_start"] == "2027-01-15T08:01:01Z" and data["window_end"] == "2027-01-15T08:01:03Z"
    assert "metrics" not in data and "performance_kind" not in data  # drift bodies keep their fields
