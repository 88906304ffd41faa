"""The detector worker: a consumer-group member that judges windows of inference events.

A plain thread loop (Kafka calls block; the detector is CPU work): poll a batch, turn
records into events (request, response, or both joined by id), feed the window, and for
every window that closes decode it into one frame, run the detector, publish the detection
CloudEvent (Kafka topic, then the reply URL if any), save online state, and only then
commit. The commit point per partition never passes a record that a later window still
needs or whose dead letter is not yet published, so a worker killed at any moment loses
nothing: its successor re-reads from the last commit (at-least-once; detections carry
offsets so duplicates can be recognised).
"""
from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from typing import Iterable

from detectors.decode import Decoder, Event, Joiner, Record, Reject, records_to_events
from detectors.evaluator import Evaluator, build_backend
from detectors.events import Origin, dead_letter_event, detection_event, to_http, to_kafka
from detectors.kafka import PublishError, Sink, Source, TopicPartitionKey, as_offsets
from detectors.metrics import DetectorMetrics
from detectors.settings import WorkerSettings
from detectors.window import make_window

log = logging.getLogger(__name__)

LAG_EVERY = 5.0  # seconds between lag updates
IDLE_COMMIT_EVERY = 2.0  # seconds between commits when no window closes (ignored/dead-lettered records)


class Worker:
    """One worker process's state; `run()` until `stop()` (or SIGTERM/SIGINT via `main`)."""

    def __init__(self, settings: WorkerSettings, evaluator: Evaluator | None = None,
                 metrics: DetectorMetrics | None = None):
        self.settings = settings
        self.metrics = metrics or DetectorMetrics(settings.inference_service, settings.detector)
        self.evaluator = evaluator
        self.decoder = Decoder(settings.features, settings.events, settings.input_name, settings.output_name)
        self.window = make_window(settings.window.size, settings.window.duration, settings.window.slide)
        self.joiner = Joiner(settings.join_timeout) if settings.events == "joined" else None
        self.origin = Origin(settings.source_uri, settings.inference_service, settings.name)
        self.rejects: list[Reject] = []
        self.consumed: dict[TopicPartitionKey, int] = {}  # next offset after the last record polled
        self.committed: dict[TopicPartitionKey, int] = {}
        self._stop = threading.Event()
        self._source: Source | None = None
        self._sink: Sink | None = None
        self._http = None
        self.windows_published = 0

    # --- lifecycle ----------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Build the detector, join the group, loop until stopped, then leave cleanly."""
        s = self.settings
        if self.evaluator is None:
            self.evaluator = Evaluator(build_backend(s), s.state_dir)
        # The detector libraries leave millions of long-lived objects; without this, full
        # collections triggered by the per-record allocations walk them all (measured:
        # ~40% of a TabularDrift worker's time on 1,000-event windows).
        gc.freeze()
        self._sink = Sink(s.bootstrap)
        self._source = Source(s.bootstrap, s.topic, s.consumer_group, on_revoke=self._on_revoke)
        log.info("detector %s (%s) reading %s as group %s; detections to %s", s.name, s.detector, s.topic,
                 s.consumer_group, s.output_topic)
        last_lag = last_commit = 0.0
        try:
            while not self._stop.is_set():
                records = self._source.poll(s.poll_batch, 0.5)
                now = time.time()
                self._step(records, now)
                if now - last_lag > LAG_EVERY:
                    self._update_lag()
                    last_lag = now
                if now - last_commit > IDLE_COMMIT_EVERY:
                    self._commit()
                    last_commit = now
        finally:
            try:
                self._commit()  # only what is safe: retained events stay uncommitted
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                log.warning("final commit failed: %s", exc)
            self._source.close()
            self._sink.close()

    # --- one poll ------------------------------------------------------------------------

    def _step(self, records: list[Record], now: float) -> None:
        for record in records:
            self.consumed[(record.topic, record.partition)] = record.offset + 1
        events, rejects, ignored = self._events(records, now)
        self.metrics.count_events("ignored", ignored)
        self._reject(rejects)
        closed = self.window.add(events) + self.window.tick(now)
        for window in closed:
            self._judge(window)
        if closed:
            self._commit()

    def _events(self, records: list[Record], now: float) -> tuple[list[Event], list[Reject], int]:
        if self.joiner is None:
            return records_to_events(records, self.settings.events)
        events, rejects, ignored = self.joiner.add(records)
        expired, dropped = self.joiner.expire(now)
        return events, rejects + expired, ignored + dropped

    def _judge(self, events: list[Event]) -> None:
        """Decode, detect, publish one window (retrying the publish until it succeeds or we stop)."""
        decoded = self.decoder.decode(events)
        self._reject(decoded.rejects)
        if not decoded.events:
            return
        self.metrics.count_events("used", sum(len(e.records) for e in decoded.events))
        result, seconds = self.evaluator.evaluate(decoded.x)
        self.metrics.observe(result, seconds)
        event = detection_event(self.origin, result, decoded.events, rejected=len(decoded.rejects))
        self._publish(self.settings.output_topic, [to_kafka(event, key=self.settings.name)], "kafka")
        if self.settings.reply_url:
            self._reply(event)
        self.windows_published += 1
        log.info("window of %d events (%d rows): %s", len(decoded.events), decoded.x.shape[0], _summary(result))

    def _reject(self, rejects: Iterable[Reject]) -> None:
        for reject in rejects:
            self.metrics.count_dead(reject.reason)
            self.metrics.count_events("rejected")
            self.rejects.append(reject)
            log.info("dead letter %s/%s@%d: %s: %s", reject.record.topic, reject.record.partition,
                     reject.record.offset, reject.reason, reject.message)

    # --- delivery ------------------------------------------------------------------------

    def _publish(self, topic: str, messages: list, sink: str) -> None:
        delay = 0.5
        while True:
            try:
                self._sink.publish(topic, messages)
                self.metrics.count_published(sink, "ok")
                return
            except PublishError as exc:
                self.metrics.count_published(sink, "retried")
                log.warning("publishing to %s failed (%s); retrying in %.1fs", topic, exc, delay)
                if self._stop.wait(delay):
                    raise
                delay = min(delay * 2, 10.0)

    def _reply(self, event) -> None:
        import httpx

        headers, body = to_http(event)
        for attempt in range(3):
            try:
                if self._http is None:
                    self._http = httpx.Client(timeout=5.0)
                reply = self._http.post(self.settings.reply_url, headers=headers, content=body)
                if reply.status_code < 300:
                    self.metrics.count_published("http", "ok")
                    return
                log.warning("reply URL answered %d", reply.status_code)
            except httpx.HTTPError as exc:
                log.warning("reply URL %s: %s", self.settings.reply_url, exc)
            time.sleep(0.2 * (attempt + 1))
        self.metrics.count_published("http", "failed")  # the topic has it; the reply URL is a courtesy copy

    def _commit(self) -> None:
        """Publish pending dead letters, save online state, then commit what nothing needs any more."""
        if self.rejects:
            batch, self.rejects = self.rejects, []
            self._publish(self.settings.dead_letter_topic, [to_kafka(dead_letter_event(self.origin, r)) for r in batch],
                          "deadletter")
        offsets = self.commit_points()
        todo = {tp: o for tp, o in offsets.items() if self.committed.get(tp) != o}
        if not todo:
            return
        self.evaluator.save_state()
        self._source.commit(todo)
        self.committed.update(todo)

    def commit_points(self) -> dict[TopicPartitionKey, int]:
        """Per partition: the lowest offset still needed (retained or awaiting a join), else all consumed."""
        needed = as_offsets(r for e in self.window.retained() for r in e.records)
        if self.joiner is not None:
            for tp, offset in as_offsets(self.joiner.pending()).items():
                needed[tp] = min(offset, needed.get(tp, offset))
        return {tp: min(upto, needed.get(tp, upto)) for tp, upto in self.consumed.items()}

    def _on_revoke(self, partitions: list[TopicPartitionKey]) -> None:
        """Before partitions move: commit what is safe, then forget their events (the next owner re-reads them)."""
        try:
            self._commit()
        except Exception as exc:  # noqa: BLE001 - the new owner re-reads from the last good commit
            log.warning("commit on revoke failed: %s", exc)
        gone = set(partitions)
        self.window.drop(lambda e: any((r.topic, r.partition) in gone for r in e.records))
        if self.joiner is not None:
            self.joiner.drop_partitions({p for _, p in gone})
        for tp in gone:
            self.consumed.pop(tp, None)
            self.committed.pop(tp, None)
            self.metrics.forget_lag(tp[1])

    def _update_lag(self) -> None:
        for partition, lag in self._source.lag(self.consumed).items():
            self.metrics.set_lag(partition, lag)


def _summary(result) -> str:
    if result.kind == "drift":
        drifted = [f.name for f in result.features if f.is_drift]
        return f"drift={result.is_drift} p={result.p_val} features={drifted}"
    flags = result.is_outlier if result.kind == "outlier" else result.is_adversarial
    return f"{result.kind}: {sum(bool(f) for f in flags or [])} of {result.n} flagged"


def serve_metrics(settings: WorkerSettings, metrics: DetectorMetrics) -> None:
    """GET /metrics on the metrics port (a daemon thread)."""
    from prometheus_client import start_http_server

    start_http_server(settings.metrics_port, addr=settings.host, registry=metrics.registry)


def main(settings: WorkerSettings) -> None:
    """Run a worker in this process until SIGTERM or SIGINT; metrics served once the detector is ready."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.transport == "http":
        from detectors.ingress import run

        run(settings)
        return
    worker = Worker(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    try:
        worker.evaluator = Evaluator(build_backend(settings), settings.state_dir)
    except Exception as exc:  # noqa: BLE001 - a sentence and exit 1, not a traceback
        log.error("cannot build detector %s (%s): %s: %s", settings.name, settings.detector, type(exc).__name__, exc)
        raise SystemExit(1) from None
    serve_metrics(settings, worker.metrics)
    worker.run()
