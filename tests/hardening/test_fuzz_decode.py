"""Fuzzing the detector's event decoding with hypothesis (issue 7, bad input).

4,000 malformed CloudEvents (10,000 with `INFERTAP_FUZZ_EVENTS=10000`, the recorded run of
docs/hardening.md; `make test` takes the smaller number to stay inside CI's time) go through the real worker's decode path in-process
(the worker's reader: attribute checks, window, one-frame decode, rejects, the dead-letter
metric) with a real detector behind it; then a smaller set goes end to end through Kafka
to a running `infertap detect` process. Every record must be dead-lettered with a reason
from the closed set, the worker must stay alive, and the counts must be in the metrics.
"""

from __future__ import annotations

import collections
import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from infertap.detectors.decode import REASONS
from infertap.detectors.evaluator import Evaluator, build_backend
from infertap.detectors.events import DEAD_LETTER_MAX_BODY, Origin, dead_letter_event, to_kafka
from infertap.detectors.settings import FeatureSettings, WorkerSettings
from infertap.detectors.worker import Worker
from tests.conftest import unique
from tests.detectors.conftest import metric
from tests.hardening.malformed_events import malformed_record

TOTAL = int(os.environ.get("INFERTAP_FUZZ_EVENTS", "4000"))
BATCH = 50
FEATURES = [{"name": n} for n in "abcd"]


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "reference.npy"
    np.save(path, np.random.default_rng(0).normal(size=(300, 4)))
    return path


def dead_count(worker: Worker, reason: str | None = None) -> float:
    total = 0.0
    for family in worker.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "infertap_detector_dead_lettered_total" and reason in (None, sample.labels["reason"]):
                total += sample.value
    return total


def test_thousands_of_malformed_events_are_all_dead_lettered_in_process(reference) -> None:
    """The worker's own reader (attribute checks, window of 500 events, its one-frame
    decode, `reject`): every record becomes a reject with a known reason (none raises, none
    is judged as data), the dead-letter metric counts each, and each reject serialises as a
    dead-letter Kafka message."""
    s = WorkerSettings(
        name="fuzz",
        topic="fuzz",
        bootstrap="127.0.0.1:1",
        features=[FeatureSettings(**f) for f in FEATURES],
        detector="ScipyKS",
        reference=reference,
        window={"size": 500},
    )
    worker = Worker(s, evaluator=Evaluator(build_backend(s), None))
    reader = worker.reader
    origin = Origin(s.source_uri, "", s.name)
    accepted: list = []
    decode = worker.decoder.decode

    def spy(events):  # what each closing window decodes to
        decoded = decode(events)
        accepted.extend(decoded.events)
        return decoded

    worker.decoder.decode = spy
    seen: collections.Counter[str] = collections.Counter()
    offset = iter(range(1 << 40))

    # generate only: shrinking examples of several MiB takes minutes and prints them whole
    @settings(
        max_examples=TOTAL // BATCH,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(malformed_record(), min_size=BATCH, max_size=BATCH))
    def feed(batch) -> None:
        records = []
        for category, record in batch:
            record.offset = next(offset)
            seen[category] += 1
            records.append(record)
        try:  # the reader's step without its hand-off (dead-letter publishing is the Kafka test's part)
            events, rejects, ignored = reader.events(records, time.time())
            assert ignored == 0
            reader.reject(rejects)
            for window in reader.window.add(events):
                rejects = rejects + reader.decode(window).rejects
        except Exception as exc:  # noqa: BLE001 - any error is the finding; the report stays short (MiB-sized bodies)
            bodies = [(e.records[0].value or b"")[:120] for e in accepted[:3]]
            raise AssertionError(f"worker step raised {exc!r}; accepted as data: {bodies}") from None
        for reject in rejects:  # what the judge would publish
            assert reject.reason in REASONS, reject
            message = to_kafka(dead_letter_event(origin, reject))
            assert message.value == (reject.record.value or b"")[:DEAD_LETTER_MAX_BODY]
            assert len(message.value) + sum(len(v) for v in message.headers.values()) < 1_000_000  # fits a Kafka record

    feed()
    # the events still in the open window are decoded as the window's end would
    leftover = reader.window.retained()
    decoded = worker.decoder.decode(leftover)
    assert decoded.events == [], f"accepted as data: {[e.records[0].value[:80] for e in decoded.events]}"
    reader.reject(decoded.rejects)
    assert all(r.reason in REASONS for r in decoded.rejects)

    generated = sum(seen.values())
    assert generated >= TOTAL
    assert dead_count(worker) == generated  # every single one dead-lettered
    assert accepted == [] and worker.windows_published == 0  # nothing malformed was judged as data
    by_reason = {r: dead_count(worker, r) for r in REASONS if dead_count(worker, r)}
    print(f"malformed events: {generated} by category {dict(seen)}; dead-lettered by reason {by_reason}")
    assert {"not_json", "wrong_shape", "wrong_feature_count", "unknown_type", "missing_attributes"} <= set(by_reason)


def test_malformed_events_through_kafka_are_dead_lettered_by_a_running_worker(
    broker, kafka, detector_yaml, start_detector, reference
) -> None:
    """A smaller set, end to end: produced to a topic, read by `infertap detect`, each one on
    the dead-letter topic with its reason; the worker then still judges good events."""
    from hypothesis import find

    topic = unique("fuzz")
    kafka.create_topic(topic, 1)
    spec = {
        "source": {"topic": topic, "bootstrap": f"kafka://{broker.bootstrap}", "consumerGroup": unique("g")},
        "features": FEATURES,
        "detector": {"name": "ScipyKS", "reference": str(reference)},
        "window": {"size": 20},
        "outputs": {"topic": f"{topic}-detections", "deadLetterTopic": f"{topic}-deadletter"},
    }
    worker = start_detector(detector_yaml("fuzz", spec))
    batch = find(
        st.lists(malformed_record(), min_size=200, max_size=200),
        lambda _: True,
        settings=settings(
            database=None, derandomize=True, phases=[Phase.generate], suppress_health_check=list(HealthCheck)
        ),
    )
    # one body just under the producer's 1 MiB request limit: its dead letter (same body plus
    # the reason headers) is the largest message the worker will ever have to publish
    big = b'{"instances": [["' + b"y" * 1_040_000 + b'"]]}'
    batch.append(
        (
            "huge",
            batch[0][1].__class__(
                topic="",
                partition=0,
                offset=0,
                value=big,
                headers={
                    **batch[0][1].headers,
                    "ce_id": b"fuzz-biggest",
                    "ce_type": b"org.kubeflow.serving.inference.request",
                    "ce_specversion": b"1.0",
                },
            ),
        )
    )
    # bodies over 900 kB are left out, but for the one above (kafka-python's 1 MiB request limit)
    batch = [(c, r) for c, r in batch if len(r.value or b"") <= 900_000 or r.headers["ce_id"] == b"fuzz-biggest"]
    for _, record in batch:
        headers = [(k, v) for k, v in record.headers.items()]
        kafka.producer.send(topic, key=b"fuzz", value=record.value, headers=headers)
    kafka.producer.flush()
    good = kafka.send_rows(topic, np.random.default_rng(1).normal(size=(20, 4)))

    dead = kafka.read(f"{topic}-deadletter", len(batch), timeout=120)
    detections = kafka.read(f"{topic}-detections", 1, timeout=60)
    assert worker.proc.poll() is None, worker.tail()
    assert len(dead) >= len(batch), f"{len(dead)} of {len(batch)} dead-lettered:\n{worker.tail()}"
    assert all(d.get_extension("reason") in REASONS for d in dead)
    biggest = next(d for d in dead if d.get_extension("originalid") == "fuzz-biggest")
    assert biggest.get_extension("bodytruncated") == "true"  # it would not fit the topic whole
    judged = [eid for d in detections for eid in _body(d)["event_ids"]]
    assert judged and set(judged) <= set(good), "a malformed event was judged as data"  # the worker went on
    total = sum(
        metric(worker.metrics_url, "infertap_detector_dead_lettered_total", reason=r, detector="ScipyKS") or 0
        for r in REASONS
    )
    assert total == len(batch)


def _body(event):
    import orjson

    data = event.get_data()
    return orjson.loads(data) if isinstance(data, (bytes, str)) else data
