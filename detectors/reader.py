"""The reader: owns the Kafka consumer, turns records into events, fills the window, decodes
every window that closes into one frame and hands it to the judge; commits what the ledger
says is safe.

Per poll: records become events (request, response, or both joined by id), undecodable ones
rejects; closed windows are reported to the ledger (`CommitLedger.read`, with what the reader
still holds) before any of them is handed over, then decoded and handed over one by one (at
most `slots` waiting: memory stays bounded). The poll's own rejects go with its last work.
The consumer is made here and only here (`open`), and used from this thread only, but for
`close` once the thread has ended: a commit from the judge's thread could wait on a
rebalance the reader is waiting in. Before partitions move, the reader waits for the judge to
settle what it was handed, commits what is safe, and forgets their events (the next owner
re-reads them from the last commit).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from infertap.detectors.decode import DecodedWindow, Event, Joiner, Record, Reject, records_to_events
from infertap.detectors.framing import make_decoder
from infertap.detectors.handoff import Handoff, Work
from infertap.detectors.kafka import Source, TopicPartitionKey
from infertap.detectors.ledger import CommitLedger
from infertap.detectors.metrics import DetectorMetrics
from infertap.detectors.settings import WorkerSettings
from infertap.detectors.window import bounds, make_window

log = logging.getLogger(__name__)

LAG_EVERY = 5.0  # seconds between lag updates
IDLE_COMMIT_EVERY = 2.0  # seconds between commits when no window is settled (ignored/dead-lettered records)


class Reader:
    """Consumer, events, window and decoding of one worker; `run` is its thread's loop."""

    def __init__(
        self,
        settings: WorkerSettings,
        metrics: DetectorMetrics,
        ledger: CommitLedger,
        handoff: Handoff[Work],
        stop: threading.Event,
        judging: Callable[[], bool] = lambda: False,
    ):
        self.settings = settings
        self.metrics = metrics
        self.ledger = ledger
        self.handoff = handoff
        self._stop = stop
        self._judging = judging  # whether the judge still settles work (a drain waits only then)
        self.decoder = make_decoder(settings)  # numbers, or text for the text detectors
        self.window = make_window(settings.window.size, settings.window.duration, settings.window.slide)
        self.joiner = Joiner(settings.join_timeout) if settings.events == "joined" else None
        self.source: Source | None = None
        self.error: BaseException | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def open(self) -> None:
        """Join the consumer group (the one place a worker's consumer is made)."""
        s = self.settings
        if s.topic is None or s.consumer_group is None:  # WorkerSettings fills both for the kafka transport
            raise ValueError("reading from Kafka needs a topic and a consumer group")
        self.source = Source(
            s.bootstrap, s.topic, s.consumer_group, on_revoke=self.on_revoke, kafka_config=s.kafka_config
        )

    def close(self) -> None:
        """Leave the group (the revoke callback commits what is safe first)."""
        if self.source is not None:
            self.source.close()

    def run(self) -> None:
        """Poll, step and commit until stopped; an exception is kept in `error` and stops the worker."""
        last_lag = last_commit = 0.0
        try:
            source = self._opened()
            while not self._stop.is_set():
                records = source.poll(self.settings.poll_batch, 0.5)
                now = time.time()
                if not self.step(records, now):
                    return
                if self.ledger.fresh or now - last_commit > IDLE_COMMIT_EVERY:
                    self.commit()
                    last_commit = now
                if now - last_lag > LAG_EVERY:
                    self._update_lag()
                    last_lag = now
        except BaseException as exc:  # noqa: BLE001 - re-raised by Worker.run on the judge's thread
            self.error = exc
            self._stop.set()

    # --- one poll -----------------------------------------------------------------------

    def step(self, records: list[Record], now: float) -> bool:
        """Events into the window, closed windows owed to the ledger, decoded and handed over;
        False when stopping first (what was not handed over stays owed)."""
        events, rejects, ignored = self.events(records, now)
        self.metrics.count_events("ignored", ignored)
        self.reject(rejects)
        closed = self.window.add(events) + self.window.tick(now)
        owed: list[Iterable[Record]] = [[r for e in window for r in e.records] for window in closed]
        if rejects:
            owed.append([r.record for r in rejects])
        tickets = self.ledger.read(records, self._held(), owed)
        last = len(closed) - 1
        for i, window in enumerate(closed):
            decoded = self.decode(window)
            work = Work(decoded if decoded.x.shape[0] else None, decoded.rejects, [tickets[i]], checkpoint=i == last)
            if i == last and rejects:
                work.rejects = work.rejects + rejects
                work.tickets.append(tickets[-1])
            if not self.handoff.put(work, self._stop):
                return False
        if not closed and rejects:
            return self.handoff.put(Work(None, rejects, [tickets[-1]]), self._stop)
        return True

    def events(self, records: list[Record], now: float) -> tuple[list[Event], list[Reject], int]:
        """(events, rejects, ignored) of a poll; joined mode: pairs completed, requests expired."""
        if self.joiner is None:
            return records_to_events(records, self.settings.events)
        events, rejects, ignored = self.joiner.add(records)
        expired, dropped = self.joiner.expire(now)
        return events, rejects + expired, ignored + dropped

    def decode(self, events: list[Event]) -> DecodedWindow:
        """One closed window as a frame; its rejects and left-out rows and events counted."""
        decoded = self.decoder.decode(events)
        decoded.bounds = bounds(events)  # a time window's span: the window's identity in its detection
        self.reject(decoded.rejects)
        m = self.metrics
        m.count_excluded("failed_response", decoded.excluded["failed_response"])
        m.count_excluded("missing_value", decoded.excluded["missing_value"])
        m.count_events("excluded", sum(len(e.records) for e in decoded.left_out))
        return decoded

    def reject(self, rejects: Iterable[Reject]) -> None:
        """Count and log rejects (their dead letters go with the work that owes them)."""
        for reject in rejects:
            self.metrics.count_dead(reject.reason)
            self.metrics.count_events("rejected")
            log.info(
                "dead letter %s/%s@%d: %s: %s",
                reject.record.topic,
                reject.record.partition,
                reject.record.offset,
                reject.reason,
                reject.message,
            )

    def _opened(self) -> Source:
        """The consumer `open` made."""
        if self.source is None:
            raise RuntimeError("the reader's consumer is not open (call open first)")
        return self.source

    def _held(self) -> list[Record]:
        """Records later windows still need: open windows' events, requests awaiting a response."""
        held = [r for e in self.window.retained() for r in e.records]
        if self.joiner is not None:
            held.extend(self.joiner.pending())
        return held

    # --- commits ------------------------------------------------------------------------

    def commit(self) -> None:
        """Commit what the ledger says is safe (and moved since the last commit)."""
        due = self.ledger.due()
        if due:
            self._opened().commit(due)
            self.ledger.committed(due)

    def on_revoke(self, partitions: list[TopicPartitionKey]) -> None:
        """Before partitions move (inside poll, or close): let the judge settle what it was handed,
        commit what is safe, then forget their events."""
        try:
            if not self.handoff.drain(lambda: not self._judging()):
                log.warning(
                    "the judge stopped with work unsettled: partitions %s resume from their last safe offset",
                    [p for _, p in partitions],
                )
            self.commit()  # always safe: unsettled work keeps the commit point before it
        except Exception as exc:  # noqa: BLE001 - the new owner re-reads from the last good commit
            log.warning("commit on revoke failed: %s", exc)
        gone = set(partitions)
        self.window.drop(lambda e: any((r.topic, r.partition) in gone for r in e.records))
        if self.joiner is not None:
            self.joiner.drop_partitions({p for _, p in gone})
        self.ledger.forget(gone)
        for tp in gone:
            self.metrics.forget_lag(tp[1])

    def _update_lag(self) -> None:
        for partition, lag in self._opened().lag(self.ledger.positions()).items():
            self.metrics.set_lag(partition, lag)
