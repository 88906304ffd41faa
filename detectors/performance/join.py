"""The join of predictions and labels, and its windows: everything but Kafka (the worker's
loop, `worker.py`, does the I/O; tests and the benchmark drive this directly).

Per record, in the order each partition delivers them: a response of the events topic is a
prediction (requests, failed responses and responses without the join id are ignored,
counted); a record of the feedback topic is a label (`infertap.stream.feedback.from_record`;
its target checked against the task and the spec's classes). Either meets the other in its
shard (`state.ShardState`) or waits there. Joined pairs fill the worker's current window,
across its shards; a window closes at `size` labelled predictions (rows) or after `duration`
seconds, and `body` computes its figures.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from infertap.detectors.decode import DecodeError, Record, Reject
from infertap.detectors.performance import scores
from infertap.detectors.performance.metrics import PerformanceMetrics
from infertap.detectors.performance.predictions import PredictionReader, is_ok_response
from infertap.detectors.performance.settings import PerformanceSettings
from infertap.detectors.performance.state import Label, Limits, Pair, ShardState
from infertap.stream.events import RESPONSE_TYPE
from infertap.stream.feedback import FeedbackError, Targets, from_record, number

log = logging.getLogger(__name__)
_RESPONSE = RESPONSE_TYPE.encode()
ALL_PARTITIONS = "all"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Join:
    """The shards a worker holds, their join, and its current window."""

    def __init__(self, settings: PerformanceSettings, metrics: PerformanceMetrics, state_dir: Path):
        p = settings.params
        self.settings, self.metrics, self.state_dir = settings, metrics, Path(state_dir)
        self.events_topic, self.feedback_topic = settings.topic or "", settings.feedback_topic or ""
        self.targets = Targets(p.task, p.classes)
        self.reader = PredictionReader(self.targets, p.join_on, p.id_header, settings.output_name, p.probability_output)
        self.limits = Limits(p.max_pending, p.max_pending_labels, p.max_age_s)
        self.by_partition = p.join_on == "event_id"
        self.identity = {
            "events": self.events_topic,
            "feedback": self.feedback_topic,
            "join_on": p.join_on if p.join_on == "event_id" else f"header:{p.id_header}",
        }
        self.shards: dict[str, ShardState] = {}
        self._by_partition: dict[int, ShardState] = {}  # a cache of `shards` by partition number
        self.window: list[Pair] = []
        self._window_rows = 0
        self._window_started: float | None = None
        # outcomes of a poll, counted here and added to the metrics once per poll
        self.tally: collections.Counter[tuple[str, str]] = collections.Counter()
        self.multi_partition = True  # the worker says when each topic has a single partition (any key then fits)

    # --- shards -------------------------------------------------------------------------

    def shard_of(self, partition: int) -> str:
        """The shard a partition's records belong to."""
        return f"partition-{partition}" if self.by_partition else ALL_PARTITIONS

    def open(self, shard: str) -> ShardState:
        """The shard's state, loaded from its file (once); its unpublished pairs join the window."""
        state = self.shards.get(shard)
        if state is None:
            self._by_partition.clear()
            state = self.shards[shard] = ShardState(
                self.state_dir / f"{shard}.sqlite",
                shard,
                self.identity,
                self.limits,
                self.settings.state_synchronous,
                canonical=self._canonical,
            )
            if state.joined:
                self.window = sorted(self.window + state.joined, key=lambda pair: pair.seq)
                self._window_rows = sum(len(p.values) for p in self.window)
                self._window_started = self._window_started or time.time()
                log.info("%s: %d joined pairs not yet published, back in the window", shard, len(state.joined))
        return state

    def close(self, shard: str) -> None:
        """Forget a shard (its partitions moved): its unpublished pairs stay in its file for the next owner."""
        state = self.shards.pop(shard, None)
        self._by_partition.clear()
        if state is None:
            return
        self.window = [p for p in self.window if p.shard != shard]
        self._window_rows = sum(len(p.values) for p in self.window)
        state.close()

    def close_all(self) -> None:
        for shard in list(self.shards):
            self.close(shard)

    # --- records ------------------------------------------------------------------------

    def apply(self, records: Iterable[Record]) -> list[Reject]:
        """Take in a poll's records; returns the rejects (for the dead-letter topic)."""
        rejects: list[Reject] = []
        touched: dict[str, ShardState] = {}
        seq = time.time()
        events = self.events_topic
        states = self._by_partition
        prediction, label = self._prediction, self._label
        for record in records:
            partition = record.partition
            state = states.get(partition)
            if state is None:
                state = self.shards.get(self.shard_of(partition))
                if state is None:  # not (or no longer) ours
                    continue
                states[partition] = state
            if state.seen(record.topic, partition, record.offset):
                continue
            touched[state.shard] = state
            reject = prediction(state, record, seq) if record.topic == events else label(state, record, seq)
            if reject is not None:
                rejects.append(reject)
            state.advance(record.topic, partition, record.offset)
            seq += 1e-6  # join order within the poll
        for state in touched.values():
            rejects += self._evict(state)
        for (kind, outcome), n in self.tally.items():
            (self.metrics.prediction if kind == "p" else self.metrics.label)(outcome, n)
        self.tally.clear()
        self.metrics.held(
            sum(len(s.predictions) for s in self.shards.values()), sum(len(s.labels) for s in self.shards.values())
        )
        return rejects

    def skip(self, topic: str, last: dict[int, int], count: int) -> None:
        """Request events the reader left out of the poll just applied: `last` offset per
        partition, `count` in all. Counted as ignored; the state's offsets move past them."""
        for partition, offset in last.items():
            state = self.shards.get(self.shard_of(partition))
            if state is not None:
                state.advance(topic, partition, offset)
        self.metrics.prediction("ignored", count)

    def _prediction(self, state: ShardState, record: Record, seq: float) -> Reject | None:
        headers = record.headers
        if headers.get("ce_type") != _RESPONSE or not is_ok_response(record):
            self.tally["p", "ignored"] += 1
            return None
        ident = self.reader.prediction_id(record)
        if ident is None:
            self.tally["p", "ignored"] += 1
            return None
        if ident in state.done or ident in state.predictions:  # a response logged twice: no need to decode it
            self.tally["p", "duplicate"] += 1
            return None
        try:
            prediction = self.reader.read(record, ident)
        except DecodeError as err:
            self.tally["p", "rejected"] += 1
            return Reject(record, err.reason, err.message)
        outcome, pair, misfit = state.add_prediction(prediction, seq)
        if outcome == "duplicate":
            self.tally["p", "duplicate"] += 1
            return None
        self.tally["p", "read"] += 1
        if pair is not None:
            self.tally["l", "joined"] += 1
            self._append(pair)
        if misfit is not None:
            why, label = misfit
            self.tally["l", "rejected"] += 1
            return Reject(_label_record(ident, label), "wrong_shape", why)
        return None

    def _label(self, state: ShardState, record: Record, seq: float) -> Reject | None:
        try:
            key = record.key if self.multi_partition and self.by_partition else None
            item = from_record(record.value, record.headers, key)
            rows = self._canonical(item.rows)
            if None in rows:  # a target that fits no class (or is no number): say which and why
                self.targets.check(item)
        except FeedbackError as err:
            self.tally["l", "rejected"] += 1
            return Reject(record, err.reason, err.message)
        when = item.time.timestamp() if item.time is not None else record.timestamp
        label = Label(when, record.value or b"", record.topic, record.partition, record.offset, rows)
        outcome, pair, why = state.add_label(item.id, when, rows, label, seq)
        if outcome == "mismatch":
            self.tally["l", "rejected"] += 1
            return Reject(record, "wrong_shape", why)
        self.tally["l", outcome] += 1
        if pair is not None:
            self._append(pair)
        return None

    def _canonical(self, rows: list) -> list:
        """Target rows as pairs hold them: class names, or numbers (None where they are neither)."""
        if self.targets.task == "regression":
            return [number(v) for v in rows]
        name = self.targets.class_name
        return [name(v) for v in rows]

    def _evict(self, state: ShardState) -> list[Reject]:
        evicted, orphans = state.evict()
        self.metrics.evict("prediction", evicted.predictions)
        self.metrics.evict("label", evicted.labels)
        if orphans:
            log.info("%s: %d label(s) fell out without their prediction (ids never seen)", state.shard, len(orphans))
        return [
            Reject(
                _label_record(ident, label),
                "unknown_id",
                f"no prediction with id {ident!r} was seen within the state's bounds (max_age_s, max_pending_labels)",
            )
            for ident, label in orphans
        ]

    def _append(self, pair: Pair) -> None:
        if not self.window:
            self._window_started = time.time()
        self.window.append(pair)
        self._window_rows += len(pair.values)

    # --- windows ------------------------------------------------------------------------

    def due(self, now: float | None = None, flush: bool = False) -> list[list[Pair]]:
        """Windows that closed: every `size` rows, or the current one after `duration` s (or when `flush`)."""
        w, out = self.settings.window, []
        if w.size is not None:
            while self._window_rows >= w.size:
                rows, cut = 0, 0
                while rows < w.size:
                    rows += len(self.window[cut].values)
                    cut += 1
                out.append(self.window[:cut])
                self.window = self.window[cut:]
                self._window_rows -= rows
            if out:
                self._window_started = time.time() if self.window else None
        elif self.window and w.duration is not None:
            started = self._window_started or time.time()
            if flush or (now or time.time()) - started >= w.duration:
                out.append(self.window)
                self.window, self._window_rows, self._window_started = [], 0, None
        return out

    def published(self, pairs: list[Pair]) -> None:
        """A window is out: its pairs leave their shards' state."""
        by_shard: dict[str, list[str]] = {}
        for pair in pairs:
            by_shard.setdefault(pair.shard, []).append(pair.id)
        for shard, ids in by_shard.items():
            state = self.shards.get(shard)
            if state is not None:
                state.published(ids)

    def flush(self) -> None:
        """Make every shard's changes durable."""
        for state in self.shards.values():
            state.flush()

    def body(self, pairs: list[Pair]) -> dict[str, Any]:
        """The figures of one window: scores, share of labelled predictions, label delays, covered ids."""
        p = self.settings.params
        predicted = [v for pair in pairs for v in pair.values]
        target = [t for pair in pairs for t in pair.target]
        if p.task == "classification":
            figures = scores.classification(predicted, target, p.classes, *self._proba(pairs))
        else:
            figures = scores.regression(predicted, target)
        start = min(pair.pred_time for pair in pairs)
        end = max(pair.pred_time for pair in pairs)
        made = labelled = 0
        for state in self.shards.values():
            a, b = state.coverage(start, end)
            made, labelled = made + a, labelled + b
        return {
            "kind": "realised",
            "task": p.task,
            "detector": self.settings.detector,
            **figures,
            "pairs": len(pairs),
            "labelled_share": labelled / made if made else None,
            "predictions_in_span": made,
            "labelled_in_span": labelled,
            "label_delay_seconds": scores.delays([pair.delay for pair in pairs]),
            "window_start": iso(start),
            "window_end": iso(end),
            "event_ids": [pair.id for pair in pairs],
        }

    def _proba(self, pairs: list[Pair]) -> tuple[np.ndarray | None, list[str] | None]:
        """The probability rows of a window (NaN for rows logged without) and their classes."""
        width = next((len(pair.proba[0]) for pair in pairs if pair.proba), 0)
        if not width:
            return None, None
        rows: list[list[float]] = []
        blank = [float("nan")] * width
        for pair in pairs:
            if pair.proba and len(pair.proba[0]) == width:
                rows += pair.proba
            else:
                rows += [blank] * len(pair.values)
        columns = self.settings.params.classes or [str(j) for j in range(width)]
        return np.asarray(rows, dtype=np.float64), columns


def label_record(feedback: dict, topic: str, partition: int, offset: int, key: str | None = None) -> Record:
    """A feedback record as the worker reads one (tests and the benchmark)."""
    value = orjson.dumps(feedback)
    return Record(topic, partition, offset, value, {}, time.time(), (key or feedback.get("id", "")).encode())


def _label_record(ident: str, label: Label) -> Record:
    """The record a held label came in, for its dead letter (the value as it came; its id as `ce_id`)."""
    headers = {"ce_id": ident.encode(), "content-type": b"application/json"}
    return Record(label.topic, label.partition, label.offset, label.value, headers)
