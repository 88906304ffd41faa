"""The detector worker: a consumer-group member that judges windows of inference events.

Three parts, so reading and decoding the next window overlaps the detector's work on this
one: the detector runs in a process of its own (`infertap.detectors.predictor`: a predict holds the
GIL, so a thread beside it would slow it down rather than overlap it), and this process
has two threads with a bounded hand-off between them (`infertap.detectors.handoff`):

- the reader owns the Kafka consumer: it polls a batch, turns records into events
  (request, response, or both joined by id), feeds the window, decodes every window that
  closes into one frame and hands it over (at most one waiting), with, after the last
  window of a poll, the commit point and the dead letters found so far; it commits what the
  judge has settled;
- the judge (the thread that called `run`) sends frames to the detector (the next ones
  before it publishes this one, unless the detector is online), publishes the detection
  CloudEvent (Kafka topic, then the reply URL if any), publishes the dead letters, saves
  online state, and only then marks the commit point settled.

The commit point per partition never passes a record that a later window still needs or
whose dead letter is not yet published, and it is computed after every window of its poll
was handed over, so a worker killed at any moment loses nothing: its successor re-reads
from the last commit (at-least-once; detections carry offsets so duplicates can be
recognised). Before partitions move, the reader waits for the judge to settle everything
handed over, then commits what is safe.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from infertap.detectors.decode import DecodedWindow, Decoder, Event, Joiner, Record, Reject, records_to_events
from infertap.detectors.evaluator import Evaluator
from infertap.detectors.events import Origin, dead_letter_event, detection_event, to_http, to_kafka
from infertap.detectors.handoff import Handoff
from infertap.detectors.kafka import PublishError, Sink, Source, TopicPartitionKey, as_offsets
from infertap.detectors.metrics import DetectorMetrics
from infertap.detectors.predictor import PredictorError, RemoteEvaluator
from infertap.detectors.result import DetectionResult
from infertap.detectors.settings import WorkerSettings
from infertap.detectors.window import make_window

log = logging.getLogger(__name__)

LAG_EVERY = 5.0  # seconds between lag updates
IDLE_COMMIT_EVERY = 2.0  # seconds between commits when no window closes (ignored/dead-lettered records)


@dataclass
class Work:
    """What the reader hands the judge: a decoded window to judge, and/or dead letters then a commit."""

    window: DecodedWindow | None = None
    rejects: list[Reject] = field(default_factory=list)
    offsets: dict[TopicPartitionKey, int] | None = None


class Worker:
    """One worker process's state; `run()` until `stop()` (or SIGTERM/SIGINT via `main`).

    Reader-thread state: the consumer, `consumed`, `window`, `joiner`, `rejects`, `committed`.
    Judge-thread state: the evaluator and the producer (the reader uses them only while the
    judge has nothing unsettled, in a rebalance, or once the judge has stopped).
    """

    def __init__(
        self,
        settings: WorkerSettings,
        evaluator: Evaluator | RemoteEvaluator | None = None,
        metrics: DetectorMetrics | None = None,
    ):
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
        self._handoff: Handoff[Work] = Handoff(slots=1)
        self._handed: dict[TopicPartitionKey, int] = {}  # the last commit point handed over
        self._settled: dict[TopicPartitionKey, int] | None = None  # settled by the judge, for the reader to commit
        self._settled_lock = threading.Lock()
        # set when handed-over work was dropped or failed: the reader's state then runs ahead
        # of what was published, so only commit points the judge settled may be committed
        self._unsafe = False
        self._judging = False
        self._reader_error: BaseException | None = None
        self._source: Source | None = None
        self._sink: Sink | None = None
        self._http = None
        self.windows_published = 0

    # --- lifecycle ----------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Start the detector process (unless given an evaluator), join the group, judge until
        stopped, then leave cleanly."""
        s = self.settings
        if self.evaluator is None:
            self.evaluator = RemoteEvaluator(s)
        # Detector libraries (an in-process evaluator's) leave millions of long-lived objects;
        # without this, full collections triggered by the per-record allocations walk them all
        # (measured: ~40% of a TabularDrift worker's time on 1,000-event windows).
        gc.freeze()
        self._sink = Sink(s.bootstrap, s.kafka_config)
        self._source = Source(
            s.bootstrap, s.topic, s.consumer_group, on_revoke=self._on_revoke, kafka_config=s.kafka_config
        )
        log.info(
            "detector %s (%s) reading %s as group %s; detections to %s",
            s.name,
            s.detector,
            s.topic,
            s.consumer_group,
            s.output_topic,
        )
        reader = threading.Thread(target=self._read, name=f"reader-{s.name}", daemon=True)
        # The judge mostly waits (detector process, broker acks); when it wakes, it needs the GIL
        # from the busy reader. 1 ms switches instead of 5 keep the detector fed (measured: the
        # detector idled 1-2 ms a window at 5 ms, 0.5 ms at 1 ms).
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, 0.001))
        self._judging = True
        reader.start()
        try:
            self._judge_loop(reader)
        except BaseException:
            self._unsafe = True  # work the judge took may be unsettled: commit only what it settled
            raise
        finally:
            sys.setswitchinterval(switch)
            self._judging = False
            self._stop.set()
            reader.join()
            if self._handoff.abandon():
                self._unsafe = True
            try:
                self._commit()  # only what is safe: retained events stay uncommitted
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                log.warning("final commit failed: %s", exc)
            self._source.close()
            self._sink.close()
            self.evaluator.close()
        if self._reader_error is not None:
            raise self._reader_error

    # --- reader thread -------------------------------------------------------------------

    def _read(self) -> None:
        s = self.settings
        last_lag = last_commit = 0.0
        try:
            while not self._stop.is_set():
                records = self._source.poll(s.poll_batch, 0.5)
                self._commit_settled()
                now = time.time()
                if not self._step(records, now):
                    return
                if now - last_lag > LAG_EVERY:
                    self._update_lag()
                    last_lag = now
                if now - last_commit > IDLE_COMMIT_EVERY:
                    if not self._hand_off(None, commit=True):
                        return
                    last_commit = now
        except BaseException as exc:  # noqa: BLE001 - re-raised by run() on the judge's thread
            self._unsafe = True
            self._reader_error = exc
            self._stop.set()

    def _step(self, records: list[Record], now: float) -> bool:
        """One poll: events into the window, closed windows decoded and handed over; False when stopping."""
        consumed = self.consumed
        for record in records:
            consumed[(record.topic, record.partition)] = record.offset + 1
        events, rejects, ignored = self._events(records, now)
        self.metrics.count_events("ignored", ignored)
        self._reject(rejects)
        closed = self.window.add(events) + self.window.tick(now)
        for i, window in enumerate(closed):
            if not self._hand_off(self._decode(window), commit=i == len(closed) - 1):
                return False
        return True

    def _events(self, records: list[Record], now: float) -> tuple[list[Event], list[Reject], int]:
        if self.joiner is None:
            return records_to_events(records, self.settings.events)
        events, rejects, ignored = self.joiner.add(records)
        expired, dropped = self.joiner.expire(now)
        return events, rejects + expired, ignored + dropped

    def _decode(self, events: list[Event]) -> DecodedWindow | None:
        """One closed window as a frame (None when no event of it decodes); rejects kept for dead letters."""
        decoded = self.decoder.decode(events)
        self._reject(decoded.rejects)
        return decoded if decoded.events else None

    def _hand_off(self, window: DecodedWindow | None, commit: bool) -> bool:
        """Queue work for the judge (waiting for a free slot); with `commit`, the dead letters so far
        and the commit point of everything polled. False when stopping first."""
        work = Work(window)
        if commit:
            work.offsets = self.commit_points()
            if not self.rejects and work.offsets == self._handed:
                work.offsets = None  # nothing new to commit
            else:
                work.rejects, self.rejects = self.rejects, []
                self._handed = work.offsets
        if work.window is None and work.offsets is None:
            return True
        if self._handoff.put(work, self._stop):
            return True
        self._unsafe = True  # dropped: a window or dead letters the reader's state counts as done
        return False

    def _reject(self, rejects: Iterable[Reject]) -> None:
        for reject in rejects:
            self.metrics.count_dead(reject.reason)
            self.metrics.count_events("rejected")
            self.rejects.append(reject)
            log.info(
                "dead letter %s/%s@%d: %s: %s",
                reject.record.topic,
                reject.record.partition,
                reject.record.offset,
                reject.reason,
                reject.message,
            )

    # --- judge thread --------------------------------------------------------------------

    def _judge_loop(self, reader: threading.Thread) -> None:
        """Settle handed-over work, in order, until the reader has stopped and nothing is left.

        With an evaluator that has `lookahead` (a detector process), the next windows are
        submitted before this one is published, so the detector never waits on the broker.
        """
        ahead: deque[Work] = deque()  # taken from the hand-off in order; their windows submitted
        lookahead = getattr(self.evaluator, "lookahead", 0)
        while True:
            self._take(ahead, 1 + lookahead, wait=True)
            if not ahead:
                if not reader.is_alive() and self._handoff.empty():
                    return
                continue
            work = ahead.popleft()
            try:
                judged = self.evaluator.collect() if work.window is not None else None
                self._take(ahead, lookahead, wait=False)  # the detector goes on while this one is published
                self._settle(work, judged)
            except BaseException:
                self._unsafe = True  # before `done`: a draining reader must not commit past this
                raise
            finally:
                self._handoff.done()

    def _take(self, ahead: deque[Work], windows: int, wait: bool) -> None:
        """Take handed-over work until `windows` windows of it are with the detector, or none is waiting."""
        while sum(1 for w in ahead if w.window is not None) < windows:
            work = self._handoff.get(0.2 if wait and not ahead else 0.0)
            if work is None:
                return
            if work.window is not None:
                self.evaluator.submit(work.window.x)
            ahead.append(work)

    def _settle(self, work: Work, judged: tuple[DetectionResult, float] | None) -> None:
        if work.window is not None:
            self._deliver(work.window, *judged)
        if work.offsets is not None:
            self._publish_dead_letters(work.rejects)
            self.evaluator.save_state()
            with self._settled_lock:
                self._settled = work.offsets

    def _judge(self, events: list[Event]) -> None:
        """Decode, detect, publish one window in this thread (the reader and judge steps back to back)."""
        decoded = self._decode(events)
        if decoded is not None:
            self._deliver(decoded, *self.evaluator.evaluate(decoded.x))

    def _deliver(self, decoded: DecodedWindow, result: DetectionResult, seconds: float) -> None:
        """Publish one judged window (retrying the publish until it succeeds or we stop)."""
        self.metrics.count_events(
            "used", len(decoded.events) if self.joiner is None else sum(len(e.records) for e in decoded.events)
        )
        self.metrics.observe(result, seconds)
        event = detection_event(self.origin, result, decoded.events, rejected=len(decoded.rejects))
        self._publish(self.settings.output_topic, [to_kafka(event, key=self.settings.name)], "kafka")
        if self.settings.reply_url:
            self._reply(event)
        self.windows_published += 1
        log.info("window of %d events (%d rows): %s", len(decoded.events), decoded.x.shape[0], _summary(result))

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

    def _publish_dead_letters(self, rejects: list[Reject]) -> None:
        if rejects:
            self._publish(
                self.settings.dead_letter_topic,
                [to_kafka(dead_letter_event(self.origin, r)) for r in rejects],
                "deadletter",
            )

    def _commit(self) -> None:
        """From the reader's state, with nothing handed over unsettled: what the judge settled, then
        pending dead letters, online state, and what nothing needs any more. The latter skipped
        once work was dropped (the reader's state then runs ahead of what was published)."""
        self._commit_settled()
        if self._unsafe:
            return
        batch, self.rejects = self.rejects, []
        self._publish_dead_letters(batch)
        self.evaluator.save_state()
        self._commit_offsets(self.commit_points())

    def _commit_settled(self) -> None:
        """Commit the last commit point the judge settled (the reader's thread owns the consumer:
        a commit from the judge's thread could wait on a rebalance the reader is waiting in)."""
        with self._settled_lock:
            offsets, self._settled = self._settled, None
        if offsets:
            self._commit_offsets(offsets)

    def _commit_offsets(self, offsets: dict[TopicPartitionKey, int]) -> None:
        todo = {tp: o for tp, o in offsets.items() if self.committed.get(tp) != o}
        if todo:
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
        """Before partitions move (reader thread, inside poll; or close): let the judge settle what it
        was handed, commit what is safe, then forget their events (the next owner re-reads them)."""
        try:
            if self._handoff.drain(lambda: not self._judging):
                self._commit()
            else:
                log.warning(
                    "the judge stopped with work unsettled: partitions %s resume from their last commit",
                    [p for _, p in partitions],
                )
        except Exception as exc:  # noqa: BLE001 - the new owner re-reads from the last good commit
            log.warning("commit on revoke failed: %s", exc)
        gone = set(partitions)
        self.window.drop(lambda e: any((r.topic, r.partition) in gone for r in e.records))
        if self.joiner is not None:
            self.joiner.drop_partitions({p for _, p in gone})
        for tp in gone:
            self.consumed.pop(tp, None)
            self.committed.pop(tp, None)
            self._handed.pop(tp, None)
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
        from infertap.detectors.ingress import run

        run(settings)
        return
    worker = Worker(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    try:
        worker.evaluator = RemoteEvaluator(settings)
    except PredictorError as exc:  # a sentence and exit 1, not a traceback
        log.error("cannot build detector %s (%s): %s", settings.name, settings.detector, exc)
        raise SystemExit(1) from None
    serve_metrics(settings, worker.metrics)
    try:
        worker.run()
    except PredictorError as exc:  # e.g. killed for memory: exit 1 and let the supervisor restart us
        log.error("detector %s (%s) stopped: %s", settings.name, settings.detector, exc)
        raise SystemExit(1) from None
