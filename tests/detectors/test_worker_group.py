"""Two workers in one consumer group share partitions; killing one hands its partitions over."""

from __future__ import annotations

import re
import signal
import time

import numpy as np

from tests.conftest import unique
from tests.detectors.conftest import body
from tests.detectors.test_worker import covered_offsets, spec


def assigned(child) -> list[int] | None:
    found = re.findall(r"assigned partitions \[([0-9, ]*)\]", child.log.read_text(errors="replace"))
    return [int(p) for p in found[-1].split(",") if p.strip()] if found else None


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached within {timeout}s")


def test_two_workers_share_partitions_and_take_over_on_kill(broker, kafka, detector_yaml, start_detector, tmp_path):
    topic = unique("grp")
    kafka.create_topic(topic, 2)
    reference = tmp_path / "ref.npy"
    np.save(reference, np.random.default_rng(0).normal(size=(300, 4)))
    path = detector_yaml("group", spec(broker, topic, reference, size=10))
    a = start_detector(path, name="a")
    wait_for(lambda: assigned(a) == [0, 1], what="a owns both partitions")
    b = start_detector(path, name="b")
    wait_for(
        lambda: assigned(b) is not None and len(assigned(b)) == 1 and len(assigned(a) or []) == 1,
        what="one partition each",
    )
    rng = np.random.default_rng(1)
    ids = []
    for partition in (0, 1):
        ids += kafka.send_rows(topic, rng.normal(size=(15, 4)), partition=partition)
    detections = kafka.read(f"{topic}-detections", 2)
    # one window per worker, each of its own partition (the detections topic has several
    # partitions, so read order is not publication order)
    assert sorted((s["partition"], s["first"], s["last"]) for d in detections for s in body(d)["offsets"]) == [
        (0, 0, 9),
        (1, 0, 9),
    ]
    a_partition = assigned(a)[0]
    a.kill(signal.SIGKILL)  # 5 events of its partition sit uncommitted in its open window
    wait_for(lambda: assigned(b) == [0, 1], timeout=60, what="b takes over a's partition")
    for partition in (0, 1):
        ids += kafka.send_rows(topic, rng.normal(size=(5, 4)), partition=partition)
    detections = kafka.read(f"{topic}-detections", 4, exact=True)
    offsets = set(covered_offsets(detections))
    assert offsets == {(p, o) for p in (0, 1) for o in range(20)}, "every event of both partitions judged"
    assert {eid for d in detections for eid in body(d)["event_ids"]} == set(ids)
    # b re-read a's uncommitted events (offsets 10-14) and judged them with its own
    takeover = [body(d)["offsets"] for d in detections if len(body(d)["offsets"]) == 2]
    assert any(s["partition"] == a_partition and s["first"] == 10 for spans in takeover for s in spans)
