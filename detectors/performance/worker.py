"""The realised-performance worker: a consumer-group member on `<isvc>-events` and
`<isvc>-feedback` that joins labels to predictions by id and publishes the figures of each
window of labelled predictions (`io.infertap.performance` on `<isvc>-detections`, and the
`infertap_performance_*` metrics).

One thread, one loop (no detector process: the figures of a window cost a few ms):

1. poll both topics (range assignment: partition p of each comes to the same member, the
   co-partitioning the ids' keys give);
2. take the records into their shards (`join.Join.apply`), in memory;
3. write the poll's dead letters and every window that closed, and wait for the broker's acks;
4. make the state durable (one SQLite transaction per shard touched), offsets included;
5. commit the consumer offsets the durable state has reached (asynchronously: the state's
   own offsets are the truth, records below them are skipped).

So a worker killed at any point loses no joined pair: what was durable is reloaded (an
assigned partition resumes at the state's offset, whatever Kafka has committed), what was
not is read again; a window published but not yet marked so is published again with the
same id. At start the feedback topic is made if missing, with the events topic's partition
count, and a feedback topic with another count is an error (labels would land on other
partition numbers than their predictions).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from infertap.detectors.decode import Record, Reject
from infertap.detectors.events import Origin, dead_letter_event, to_kafka
from infertap.detectors.kafka import PublishError, Sink
from infertap.detectors.performance.events import performance_event
from infertap.detectors.performance.join import Join
from infertap.detectors.performance.metrics import PerformanceMetrics
from infertap.detectors.performance.settings import PerformanceSettings
from infertap.detectors.performance.state import Pair, StateError
from infertap.stream import clients
from infertap.stream.events import REQUEST_TYPE

log = logging.getLogger(__name__)
LIBRDKAFKA_LOG = "infertap.detectors.performance.librdkafka"
TOPIC_WAIT_LOG_S = 30.0
_REQUEST = REQUEST_TYPE.encode()


class TopicsError(RuntimeError):
    """The topic pair cannot be joined (partition counts differ); the message says what to do."""


def default_state_dir(group: str) -> Path:
    """`$TMPDIR/infertap-state-<uid>/<group>`: per user, never shared with another user."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in group) or "default"
    return Path(tempfile.gettempdir()) / f"infertap-state-{os.geteuid()}" / safe


def _private(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


class PerformanceWorker:
    """One worker process's loop; `run()` until `stop()` (or SIGTERM/SIGINT via `main`)."""

    def __init__(self, settings: PerformanceSettings, metrics: PerformanceMetrics | None = None):
        self.settings = s = settings
        self.metrics = metrics or PerformanceMetrics(s.inference_service, s.name, s.params.classes)
        self.state_dir = _private(Path(s.state_dir) if s.state_dir else default_state_dir(s.consumer_group or s.name))
        self.join = Join(s, self.metrics, self.state_dir)
        self.origin = Origin(s.source_uri, s.inference_service, s.name)
        self._stop = threading.Event()
        self._consumer: Any = None
        self._sink: Sink | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._committed: dict[tuple[str, int], int] = {}
        self._error: BaseException | None = None
        self._skipped: tuple[dict[int, int], int] = ({}, 0)  # request events the last poll left out
        self.windows_published = 0

    def stop(self) -> None:
        self._stop.set()

    # --- lifecycle ----------------------------------------------------------------------

    def run(self) -> None:
        """Make sure of the topics, join the group, loop until stopped, then leave cleanly."""
        s = self.settings
        partitions = self.ensure_topics()
        if partitions is None:
            return  # stopped while waiting for the events topic
        self.join.multi_partition = partitions > 1
        _settle_garbage_collector()
        self._sink = Sink(s.bootstrap, s.kafka_config)
        self._consumer = clients.consumer(
            s.bootstrap,
            s.consumer_group or s.name,
            client_id=f"infertap-performance-{s.name}",
            log_name=LIBRDKAFKA_LOG,
            store_offsets=False,
            max_poll_interval_ms=60_000,
            # partition p of both topics to one member: where a prediction and its label meet
            properties={"partition.assignment.strategy": "range"},
            kafka_config=s.kafka_config,
        )
        self._consumer.subscribe(
            [s.topic, s.feedback_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        log.info(
            "performance %s (%s) joining %s with %s as group %s, state in %s; windows to %s",
            s.name,
            s.params.task,
            s.topic,
            s.feedback_topic,
            s.consumer_group,
            self.state_dir,
            s.output_topic,
        )
        try:
            while not self._stop.is_set():
                self.step(self._poll())
                if self._error is not None:
                    raise self._error
        finally:
            try:
                self.join.flush()
                self._commit(asynchronous=False)
            except Exception as exc:  # noqa: BLE001 - stopping anyway; the state's offsets are the truth
                log.warning("final commit failed: %s", exc)
            self._consumer.close()  # leaves the group (the revoke callback closes the shards)
            self.join.close_all()
            self._sink.close()

    def step(self, records: list[Record]) -> None:
        """One poll: apply, publish (acked), make durable, commit."""
        rejects = self.join.apply(records)
        skipped, count = self._skipped
        if count:  # after the records kept: their offsets lie below these or were taken in already
            self.join.skip(self.settings.topic or "", skipped, count)
            self._skipped = ({}, 0)
        self._dead_letters(rejects)
        for window in self.join.due():
            self.publish(window)
        self.join.flush()
        self._commit(asynchronous=True)

    def ensure_topics(self) -> int | None:
        """The events topic's partition count, once it exists (None: stopped first); makes the feedback
        topic with that count when it is missing; TopicsError when it has another."""
        s = self.settings
        events, feedback = s.topic or "", s.feedback_topic or ""
        admin = clients.admin(
            s.bootstrap, client_id="infertap-performance-admin", log_name=LIBRDKAFKA_LOG, kafka_config=s.kafka_config
        )
        said = 0.0
        while not self._stop.is_set():
            counts = _partition_counts(admin)
            if events in counts:
                break
            if time.monotonic() - said > TOPIC_WAIT_LOG_S:
                log.info("waiting for %s to exist (the logger makes it with its first event)", events)
                said = time.monotonic()
            self._stop.wait(2.0)
        else:
            return None
        if feedback not in counts:
            from confluent_kafka.admin import NewTopic

            futures = admin.create_topics([NewTopic(feedback, counts[events], 1)], operation_timeout=10)
            for future in futures.values():
                try:
                    future.result(15)
                    log.info("made %s with %d partition(s), as %s", feedback, counts[events], events)
                except Exception as exc:  # noqa: BLE001 - made by someone else meanwhile: read it back
                    log.info("making %s: %s", feedback, exc)
            counts = _partition_counts(admin)
        if counts.get(feedback) != counts[events] and self.join.by_partition:
            raise TopicsError(
                f"{events} has {counts[events]} partition(s) and {feedback} {counts.get(feedback)}: a label lands on "
                f"the partition number of its prediction only when both have the same count; recreate {feedback} "
                f"with {counts[events]} partition(s)"
            )
        return counts[events]

    # --- Kafka --------------------------------------------------------------------------

    def _poll(self) -> list[Record]:
        """The poll's records. Events that cannot hold a prediction (request events, a third of the
        topic in the logger's default mode; failed responses) are only counted (`Join.skip`),
        their headers never parsed (parsing a record's headers costs as much as joining it); so
        are the headers of feedback whose body names its id and time (what the sidecar and
        `infertap feedback` write)."""
        out: list[Record] = []
        append = out.append
        events, request = self.settings.topic, _REQUEST
        skipped: dict[int, int] = {}
        count = 0
        for message in self._consumer.consume(self.settings.poll_batch, 0.5):
            error = message.error()
            if error is not None:
                if error.code() != -191:  # _PARTITION_EOF is not an error
                    logging.getLogger(LIBRDKAFKA_LOG).warning("consumer error: %s", error)
                continue
            topic, value = message.topic(), message.value()
            if topic == events:
                if value is None or (b'"predictions"' not in value and b'"outputs"' not in value):
                    skipped[message.partition()] = message.offset()  # the last per partition: offsets rise
                    count += 1
                    continue
                listed = message.headers()
                if listed and _ce_type(listed) == request:  # a V2 request may name its "outputs"
                    skipped[message.partition()] = message.offset()
                    count += 1
                    continue
                headers = dict(listed) if listed else {}
            elif value is not None and b'"id"' in value and b'"time"' in value:
                headers = {}
            else:
                listed = message.headers()
                headers = dict(listed) if listed else {}
            _, stamp = message.timestamp()
            append(
                Record(
                    topic,
                    message.partition(),
                    message.offset(),
                    value,
                    headers,
                    stamp / 1000.0 if stamp and stamp > 0 else time.time(),
                    message.key(),
                )
            )
        self._skipped = (skipped, count)
        return out

    def _on_assign(self, consumer: Any, partitions: list) -> None:
        """Open the shards of the partitions given, and start each where its durable state ends."""
        try:
            for tp in partitions:
                state = self.join.open(self.join.shard_of(tp.partition))
                stored = state.offsets.get((tp.topic, tp.partition))
                if stored is not None:
                    tp.offset = stored
                self._assigned.add((tp.topic, tp.partition))
            log.info("assigned %s", sorted(self._assigned))
        except StateError as exc:
            self._error = exc
            self._stop.set()
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Any, partitions: list) -> None:
        """Partitions move: commit what the durable state reached, then let their shards go."""
        keys = {(tp.topic, tp.partition) for tp in partitions}
        try:
            self._commit(asynchronous=False, only=keys)
        except Exception as exc:  # noqa: BLE001 - the next owner resumes from the state's offsets anyway
            log.warning("commit on revoke failed: %s", exc)
        self._let_go(keys)

    def _on_lost(self, _consumer: Any, partitions: list) -> None:
        self._let_go({(tp.topic, tp.partition) for tp in partitions})

    def _let_go(self, keys: set[tuple[str, int]]) -> None:
        self._assigned -= keys
        kept = {self.join.shard_of(p) for _, p in self._assigned}
        for shard in {self.join.shard_of(p) for _, p in keys} - kept:
            self.join.close(shard)
        for key in keys:
            self._committed.pop(key, None)

    def _commit(self, asynchronous: bool, only: set[tuple[str, int]] | None = None) -> None:
        """Commit the offsets the durable state has taken in (those that moved)."""
        from confluent_kafka import TopicPartition

        due = []
        for state in list(self.join.shards.values()):
            for key, offset in state.committed_offsets().items():
                if key in self._assigned and (only is None or key in only) and self._committed.get(key) != offset:
                    due.append((key, offset))
        if not due:
            return
        self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in due], asynchronous=asynchronous)
        self._committed.update(due)

    # --- publishing ---------------------------------------------------------------------

    def publish(self, pairs: list[Pair]) -> None:
        """One window's figures to the output topic (acked), its pairs then out of the state."""
        body = self.join.body(pairs)
        event = performance_event(self.origin, body)
        self._publish(self.settings.output_topic or "", [to_kafka(event, key=self.settings.name)])
        self.join.published(pairs)
        self.metrics.window(body)
        self.windows_published += 1
        if body["task"] == "classification":
            summary = f"accuracy={body['accuracy']:.4f} f1_macro={body['f1_macro']:.4f}"
        else:
            summary = f"mae={body['mae']:.4g} rmse={body['rmse']:.4g}"
        log.info("window of %d labelled prediction(s): %s share=%s", body["n"], summary, body["labelled_share"])

    def _dead_letters(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        for reject in rejects:
            self.metrics.dead_letter(reject.reason)
            log.info(
                "dead letter %s/%s@%d: %s: %s",
                reject.record.topic,
                reject.record.partition,
                reject.record.offset,
                reject.reason,
                reject.message,
            )
        self._publish(
            self.settings.dead_letter_topic or "", [to_kafka(dead_letter_event(self.origin, r)) for r in rejects]
        )

    def _publish(self, topic: str, messages: list) -> None:
        """Publish until acknowledged, backing off up to 10 s; PublishError when stopped first."""
        assert self._sink is not None  # run() made it
        delay = 0.5
        while True:
            try:
                self._sink.publish(topic, messages)
                return
            except PublishError as exc:
                log.warning("publishing to %s failed (%s); retrying in %.1fs", topic, exc, delay)
                if self._stop.wait(delay):
                    raise
                delay = min(delay * 2, 10.0)


def _settle_garbage_collector() -> None:
    """Keep the cyclic collector off the join: the state holds one small list per waiting
    prediction (a hundred thousand a partition by default), which every older-generation
    collection would walk again, and a poll allocates thousands of short-lived objects that
    reference counting frees anyway (no cycles among them). What the imports left is frozen
    out of the collector's view; young collections come ten times less often."""
    gc.collect()
    gc.freeze()
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, 10_000), max(second, 20), max(third, 100))


def _ce_type(headers: list[tuple[str, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == "ce_type":
            return value
    return None


def _partition_counts(admin: Any) -> dict[str, int]:
    """Partitions per topic the broker has (all topics: asking for one may create it)."""
    metadata = admin.list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}


def serve_metrics(settings: PerformanceSettings, metrics: PerformanceMetrics) -> None:
    """GET /metrics on the metrics port (a daemon thread)."""
    from prometheus_client import start_http_server

    start_http_server(settings.metrics_port, addr=settings.host, registry=metrics.registry)


def main(settings: PerformanceSettings) -> None:
    """Run a worker in this process until SIGTERM or SIGINT; bad state or topics exit 1 with a sentence."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        worker = PerformanceWorker(settings)
    except OSError as exc:
        log.error("performance %s: state folder: %s", settings.name, exc)
        raise SystemExit(1) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    serve_metrics(settings, worker.metrics)
    try:
        worker.run()
    except (StateError, TopicsError) as exc:
        log.error("performance %s stopped: %s", settings.name, exc)
        raise SystemExit(1) from None
