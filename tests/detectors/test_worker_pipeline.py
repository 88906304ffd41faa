"""The worker's pipeline: the bounded hand-off between its threads, commits with windows in
flight, and the detector process it runs beside it."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from infertap.detectors.handoff import Handoff
from infertap.detectors.settings import WorkerSettings
from infertap.detectors.worker import Worker
from tests.conftest import unique
from tests.detectors.conftest import body, wait_log
from tests.detectors.test_worker import FEATURES, KS, spec


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "reference.npy"
    np.save(path, np.random.default_rng(1).normal(size=(500, 4)))
    return path


def test_handoff_is_bounded_in_order_and_drains():
    stop = threading.Event()
    handoff: Handoff[int] = Handoff(slots=1)
    assert handoff.put(1, stop)
    stop.set()
    assert not handoff.put(2, stop)  # full, and stopping: refused rather than waiting
    stop.clear()
    assert not handoff.drain(lambda: True)  # 1 unsettled: the caller gave up
    assert handoff.get(0.0) == 1 and handoff.get(0.0) is None
    assert handoff.put(3, stop)
    assert handoff.get(0.0) == 3
    settled = threading.Timer(0.2, lambda: (handoff.done(), handoff.done()))
    settled.start()
    assert handoff.drain(lambda: False)  # waits until both taken items are done
    assert handoff.put(4, stop) and handoff.abandon() == 1 and handoff.drain(lambda: False)


def test_stopping_with_windows_in_flight_commits_exactly_the_published_windows(broker, kafka, reference):
    """Windows of 20 events, one per poll, a detector that takes 1 s: the worker is stopped while
    windows are in the detector process and in the hand-off. What it committed must be exactly
    the events of the windows it published: never past one that was not, none left out."""
    from confluent_kafka import Consumer, TopicPartition

    topic, group = unique("pipe"), unique("g")
    kafka.create_topic(topic, 1)
    settings = WorkerSettings(
        name="pipe",
        topic=topic,
        bootstrap=broker.bootstrap,
        consumer_group=group,
        features=FEATURES,
        detector=KS,
        params={"sleep": 1.0},
        reference=reference,
        window={"size": 20},
        poll_batch=20,
        output_topic=f"{topic}-detections",
    )
    kafka.send_rows(topic, np.random.default_rng(2).normal(size=(200, 4)))  # 10 windows: more than can be in flight
    worker = Worker(settings)
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + 90
    while worker.windows_published < 1 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    worker.stop()
    thread.join(60)
    assert not thread.is_alive()
    published = worker.windows_published
    assert 1 <= published < 10, published  # stopped mid-stream
    detections = kafka.read(f"{topic}-detections", published, exact=True)
    assert [body(d)["offsets"][0]["last"] for d in detections] == [20 * k + 19 for k in range(published)]
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        consumer.close()
    assert committed == 20 * published


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_detector_process_ends_with_its_worker(broker, kafka, detector_yaml, start_detector, reference):
    """SIGKILL to the worker alone (not its process group): its detector process goes too."""
    topic = unique("orphan")
    kafka.create_topic(topic, 1)
    worker = start_detector(detector_yaml("orphan", spec(broker, topic, reference)))
    kafka.send_rows(topic, np.random.default_rng(3).normal(size=(20, 4)))
    wait_log(worker, "window of 20 events")  # the detector process has judged a window
    detector = [
        pid
        for pid in _children(worker.proc.pid)
        if b"infertap.detectors.predictor" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(detector) == 1, _children(worker.proc.pid)
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(10)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{detector[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    state = (
        Path(f"/proc/{detector[0]}/stat").read_text().split()[2] if Path(f"/proc/{detector[0]}").exists() else "gone"
    )
    assert state in ("gone", "Z"), f"detector process {detector[0]} still running ({state})"


def test_a_worker_whose_detector_process_dies_exits_with_a_sentence(
    broker, kafka, detector_yaml, start_detector, reference
):
    """The detector process killed (e.g. for memory): the worker exits 1 saying so, instead of
    hanging, and commits nothing it did not publish (a restart re-reads the window)."""
    topic = unique("died")
    kafka.create_topic(topic, 1)
    doc = spec(broker, topic, reference)  # one consumer group for both workers
    worker = start_detector(detector_yaml("died", doc))
    (detector,) = [
        pid
        for pid in _children(worker.proc.pid)
        if b"infertap.detectors.predictor" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    os.kill(detector, signal.SIGKILL)
    ids = kafka.send_rows(topic, np.random.default_rng(4).normal(size=(20, 4)))
    assert worker.proc.wait(60) == 1, worker.tail()
    assert "the detector process ended" in worker.tail(), worker.tail()
    assert kafka.read(f"{topic}-detections", 1, timeout=2) == []
    start_detector(detector_yaml("died", doc, file="again.yaml"), name="again")
    assert body(kafka.read(f"{topic}-detections", 1)[0])["event_ids"] == ids
