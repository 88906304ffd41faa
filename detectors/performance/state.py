"""The join state of one shard, in memory and on disk (SQLite): what survives a restart.

A shard is a partition number of the co-partitioned topic pair (`<isvc>-events` partition p
and `<isvc>-feedback` partition p: a prediction and its label meet there), or the whole pair
when feedback names a header rather than the record key (`join_on: header`). Its file,
`<state_dir>/<shard>.sqlite`, holds

- `predictions`: predictions still waiting for their label (id, event time, values);
- `labels`: labels that came before their prediction, or for an id never seen;
- `joined`: joined pairs not yet published in a window;
- `done`: ids already joined (a second label for one is a duplicate), for `max_age_s`;
- `buckets`: predictions and labelled predictions per minute of prediction time (the
  window's share of labelled predictions);
- `offsets`: the next offset of every topic partition the state has taken in; records below
  it are skipped, so the state is applied exactly once whatever Kafka's commits say;
- `meta`: which topics and join the file belongs to (another detector's file is refused).

The memory mirror answers every lookup; writes of one poll are collected and applied in one
transaction (`flush`), net of what cancels within the poll (a prediction joined in the poll
it arrived never touches the disk as a prediction). Bounds: `max_pending` predictions and
`max_pending_labels` labels, oldest out first, and `max_age_s` of event time behind the
newest seen; what falls out is returned for the metrics. Single-threaded: the worker's loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from infertap.detectors.performance.predictions import Prediction

BUCKET_S = 60.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (id TEXT PRIMARY KEY, time REAL NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS labels (
    id TEXT PRIMARY KEY, time REAL NOT NULL, value BLOB NOT NULL, topic TEXT NOT NULL,
    partition INTEGER NOT NULL, offset INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS joined (
    id TEXT PRIMARY KEY, seq REAL NOT NULL, pred_time REAL NOT NULL, label_time REAL NOT NULL,
    prediction BLOB NOT NULL, target BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS done (id TEXT PRIMARY KEY, time REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS buckets (bucket INTEGER PRIMARY KEY, predictions INTEGER NOT NULL, labelled INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
"""


class StateError(RuntimeError):
    """A state file that cannot be used (another detector's, or unreadable); the message says which."""


@dataclass(frozen=True)
class Limits:
    """The bounds of one shard (`PerformanceParams`)."""

    max_pending: int = 100_000
    max_pending_labels: int = 100_000
    max_age_s: float = 86_400.0


@dataclass(slots=True)
class Label:
    """A label waiting for its prediction, and where its record lies (for a dead letter)."""

    time: float
    value: bytes  # the feedback item's JSON
    topic: str
    partition: int
    offset: int
    rows: list | None = None  # its target rows as pairs hold them (None: read them from `value`)


@dataclass(slots=True)
class Pair:
    """A prediction joined to its label."""

    id: str
    shard: str
    seq: float  # join order across shards (wall time of the join)
    pred_time: float
    label_time: float
    values: list
    proba: list | None
    target: list  # one per row

    @property
    def delay(self) -> float:
        return self.label_time - self.pred_time


@dataclass
class Evicted:
    """What fell out of a shard in one sweep, by kind and reason."""

    predictions: dict[str, int] = field(default_factory=lambda: {"age": 0, "count": 0})
    labels: dict[str, int] = field(default_factory=lambda: {"age": 0, "count": 0})


class ShardState:
    """One shard's predictions, labels, joined pairs and offsets; see the module docstring."""

    def __init__(
        self,
        path: Path,
        shard: str,
        identity: dict[str, str],
        limits: Limits,
        synchronous: str = "normal",
        canonical: Callable[[list], list] | None = None,
    ):
        """`canonical`: a label's target rows as the pairs hold them (class names, numbers); the
        labels table keeps each record's item as it came, for its dead letter."""
        self.path, self.shard, self.limits = Path(path), shard, limits
        self.canonical = canonical or (lambda rows: rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"state file {self.path} cannot be used: {exc}") from None
        self._check_identity(identity)
        self.predictions: dict[str, tuple[float, list, list | None]] = {}  # id -> (time, values, proba)
        self.labels: dict[str, Label] = {}
        self.joined: list[Pair] = []
        self.done: dict[str, float] = {}
        self.buckets: dict[int, list[int]] = {}
        self.offsets: dict[tuple[str, int], int] = {}
        self.stream_time = 0.0
        self._load()
        self._clear_writes()

    # --- loading ------------------------------------------------------------------------

    def _check_identity(self, identity: dict[str, str]) -> None:
        stored = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if not stored:
            self.db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(identity.items()))
            return
        if stored != identity:
            raise StateError(
                f"state file {self.path} belongs to {stored} and this worker is {identity}: "
                "give each Detector a state_dir of its own"
            )

    def _load(self) -> None:
        db = self.db
        latest = 0.0
        for ident, when, blob in db.execute("SELECT id, time, value FROM predictions ORDER BY time"):
            values, proba = orjson.loads(blob)
            self.predictions[ident] = (when, values, proba)
            latest = max(latest, when)
        for ident, when, blob, topic, partition, offset in db.execute(
            "SELECT id, time, value, topic, partition, offset FROM labels ORDER BY time"
        ):
            self.labels[ident] = Label(when, blob, topic, partition, offset)
            latest = max(latest, when)
        for ident, seq, pred_time, label_time, prediction, target in db.execute(
            "SELECT id, seq, pred_time, label_time, prediction, target FROM joined ORDER BY seq"
        ):
            values, proba = orjson.loads(prediction)
            self.joined.append(Pair(ident, self.shard, seq, pred_time, label_time, values, proba, orjson.loads(target)))
        self.done = dict(db.execute("SELECT id, time FROM done ORDER BY time").fetchall())
        self.buckets = {b: [p, n] for b, p, n in db.execute("SELECT bucket, predictions, labelled FROM buckets")}
        self.offsets = {(t, p): n for t, p, n in db.execute("SELECT topic, partition, next FROM offsets")}
        self.stream_time = max([latest, *self.done.values()], default=0.0)

    def _clear_writes(self) -> None:
        self._pred_new: dict[str, tuple[float, list, list | None]] = {}
        self._pred_gone: list[str] = []
        self._label_new: dict[str, Label] = {}
        self._label_gone: list[str] = []
        self._joined_new: dict[str, Pair] = {}
        self._joined_gone: list[str] = []
        self._done_new: list[tuple[str, float]] = []
        self._done_gone: list[str] = []
        self._buckets_dirty: set[int] = set()
        self._offsets_dirty: set[tuple[str, int]] = set()

    # --- the join -----------------------------------------------------------------------

    def seen(self, topic: str, partition: int, offset: int) -> bool:
        """Whether the record at `offset` was already taken into this state."""
        return offset < self.offsets.get((topic, partition), -1)

    def advance(self, topic: str, partition: int, offset: int) -> None:
        """The record at `offset` is taken in (applied, ignored or dead-lettered)."""
        key = (topic, partition)
        if offset >= self.offsets.get(key, -1):
            self.offsets[key] = offset + 1
            self._offsets_dirty.add(key)

    def is_known(self, ident: str) -> bool:
        """A prediction or label with this id is held, or it was joined already."""
        return ident in self.done or ident in self.predictions or ident in self.labels

    def add_prediction(self, prediction: Prediction, seq: float) -> tuple[str, Pair | None, tuple[str, Label] | None]:
        """Take in a prediction: (`duplicate` | `joined` | `waiting`, the pair, and an early label
        that did not fit it, (why, label), to dead-letter: the prediction then waits for another)."""
        ident = prediction.id
        if ident in self.done or ident in self.predictions:
            return "duplicate", None, None
        self._note_time(prediction.time)
        self._bucket(prediction.time, predictions=len(prediction.values))
        misfit = None
        label = self.labels.pop(ident, None)
        if label is not None:
            self._forget_label(ident)
            rows = label.rows
            if rows is None:
                target = orjson.loads(label.value)["target"]
                rows = self.canonical(target if isinstance(target, list) else [target])
            if len(rows) == len(prediction.values):
                pair = self._join(ident, prediction.time, label.time, prediction.values, prediction.proba, rows, seq)
                return "joined", pair, None
            misfit = (f"{len(rows)} target(s) for a prediction of {len(prediction.values)} row(s)", label)
        self.predictions[ident] = self._pred_new[ident] = (prediction.time, prediction.values, prediction.proba)
        return "waiting", None, misfit

    def add_label(
        self, ident: str, when: float, target: list, label: Label, seq: float
    ) -> tuple[str, Pair | None, str]:
        """Take in a label: (`duplicate` | `joined` | `early` | `mismatch`, the pair, why a mismatch)."""
        if ident in self.done or ident in self.labels:
            return "duplicate", None, ""
        held = self.predictions.get(ident)
        if held is None:
            self._note_time(when)
            self.labels[ident] = self._label_new[ident] = label
            return "early", None, ""
        pred_time, values, proba = held
        if len(target) != len(values):  # the prediction keeps waiting for a label that fits
            return "mismatch", None, f"{len(target)} target(s) for a prediction of {len(values)} row(s)"
        self._note_time(when)
        del self.predictions[ident]
        if self._pred_new.pop(ident, None) is None:
            self._pred_gone.append(ident)
        return "joined", self._join(ident, pred_time, when, values, proba, target, seq), ""

    def _join(self, ident: str, pred_time: float, label_time: float, values, proba, target, seq: float) -> Pair:
        pair = Pair(ident, self.shard, seq, pred_time, label_time, values, proba, target)
        self.done[ident] = pred_time
        self._done_new.append((ident, pred_time))
        self._bucket(pred_time, labelled=len(values))
        self.joined.append(pair)
        self._joined_new[ident] = pair
        return pair

    def _forget_label(self, ident: str) -> None:
        if self._label_new.pop(ident, None) is None:
            self._label_gone.append(ident)

    def _note_time(self, when: float) -> None:
        if when > self.stream_time:
            self.stream_time = when

    def _bucket(self, when: float, predictions: int = 0, labelled: int = 0) -> None:
        b = int(when // BUCKET_S)
        counts = self.buckets.get(b)
        if counts is None:
            counts = self.buckets[b] = [0, 0]
        counts[0] += predictions
        counts[1] += labelled
        self._buckets_dirty.add(b)

    def published(self, idents: Iterable[str]) -> None:
        """These pairs are in a published window: no longer the state's to keep (their ids stay in `done`)."""
        gone = set(idents)
        self.joined = [p for p in self.joined if p.id not in gone]
        for ident in gone:
            if self._joined_new.pop(ident, None) is None:
                self._joined_gone.append(ident)

    def coverage(self, start: float, end: float) -> tuple[int, int]:
        """(predictions, labelled predictions) with prediction times in the minutes [start, end] touch."""
        first, last = int(start // BUCKET_S), int(end // BUCKET_S)
        predictions = labelled = 0
        for b in range(first, last + 1):
            counts = self.buckets.get(b)
            if counts is not None:
                predictions += counts[0]
                labelled += counts[1]
        return predictions, labelled

    # --- bounds -------------------------------------------------------------------------

    def evict(self) -> tuple[Evicted, list[tuple[str, Label]]]:
        """Apply the bounds: what fell out, and the labels among it (orphans: their ids never showed)."""
        out, orphans = Evicted(), []
        lim, horizon = self.limits, self.stream_time - self.limits.max_age_s
        preds = self.predictions
        while preds:
            ident = next(iter(preds))
            when = preds[ident][0]
            reason = "count" if len(preds) > lim.max_pending else "age" if when < horizon else None
            if reason is None:
                break
            del preds[ident]
            if self._pred_new.pop(ident, None) is None:
                self._pred_gone.append(ident)
            out.predictions[reason] += 1
        labels = self.labels
        while labels:
            ident = next(iter(labels))
            label = labels[ident]
            reason = "count" if len(labels) > lim.max_pending_labels else "age" if label.time < horizon else None
            if reason is None:
                break
            del labels[ident]
            self._forget_label(ident)
            out.labels[reason] += 1
            orphans.append((ident, label))
        done = self.done
        cap = lim.max_pending + lim.max_pending_labels
        while done:
            ident = next(iter(done))
            if len(done) <= cap and done[ident] >= horizon:
                break
            del done[ident]
            self._done_gone.append(ident)
        old = [b for b in self.buckets if (b + 1) * BUCKET_S < horizon]
        for b in old:
            del self.buckets[b]
            self._buckets_dirty.add(b)
        return out, orphans

    # --- durability ---------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return bool(
            self._offsets_dirty
            or self._pred_new
            or self._pred_gone
            or self._label_new
            or self._label_gone
            or self._joined_new
            or self._joined_gone
            or self._done_new
            or self._done_gone
            or self._buckets_dirty
        )

    def flush(self) -> None:
        """Write what changed since the last flush, in one transaction (then it survives a kill)."""
        if not self.dirty:
            return
        db = self.db
        db.execute("BEGIN")
        try:
            if self._pred_gone:
                db.executemany("DELETE FROM predictions WHERE id = ?", ((i,) for i in self._pred_gone))
            if self._pred_new:
                db.executemany(
                    "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?)",
                    ((i, t, orjson.dumps([v, q])) for i, (t, v, q) in self._pred_new.items()),
                )
            if self._label_gone:
                db.executemany("DELETE FROM labels WHERE id = ?", ((i,) for i in self._label_gone))
            if self._label_new:
                db.executemany(
                    "INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?)",
                    ((i, x.time, x.value, x.topic, x.partition, x.offset) for i, x in self._label_new.items()),
                )
            if self._joined_gone:
                db.executemany("DELETE FROM joined WHERE id = ?", ((i,) for i in self._joined_gone))
            if self._joined_new:
                db.executemany(
                    "INSERT OR REPLACE INTO joined VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        (
                            p.id,
                            p.seq,
                            p.pred_time,
                            p.label_time,
                            orjson.dumps([p.values, p.proba]),
                            orjson.dumps(p.target),
                        )
                        for p in self._joined_new.values()
                    ),
                )
            if self._done_gone:
                db.executemany("DELETE FROM done WHERE id = ?", ((i,) for i in self._done_gone))
            if self._done_new:
                db.executemany("INSERT OR REPLACE INTO done VALUES (?, ?)", self._done_new)
            if self._buckets_dirty:
                gone = [(b,) for b in self._buckets_dirty if b not in self.buckets]
                kept = [(b, *self.buckets[b]) for b in self._buckets_dirty if b in self.buckets]
                db.executemany("DELETE FROM buckets WHERE bucket = ?", gone)
                db.executemany("INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)", kept)
            if self._offsets_dirty:
                db.executemany(
                    "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)",
                    ((t, p, self.offsets[(t, p)]) for t, p in self._offsets_dirty),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._clear_writes()

    def committed_offsets(self, partitions: Iterable[tuple[str, int]] | None = None) -> dict[tuple[str, int], int]:
        """The next offset per topic partition that the durable state has taken in."""
        keys = self.offsets if partitions is None else [k for k in partitions if k in self.offsets]
        return {k: self.offsets[k] for k in keys}

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass
