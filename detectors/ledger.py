"""Which offsets a worker may commit: the one place that holds the commit rules.

An offset is committed only when nothing still needs the record there, or any record
before it on its partition. Per partition the commit point (the next offset a successor
reads) is the lowest of:

1. what was read: the offset after the last record polled;
2. what the reader still holds: the lowest offset of the events in open windows and of the
   requests waiting for their response (joined mode); later windows will cover them;
3. what is owed: the lowest offset of every window (and every batch of dead letters) handed
   to the judge whose ticket is not yet settled. The judge settles a ticket once the
   window's detection is published, its dead letters are written and an online detector's
   state is saved. A ticket that is never settled (its work was dropped at a stop, or the
   judge failed) keeps holding the commit point: what a successor re-reads is exactly what
   was not published (at-least-once), and no flag has to remember that work went missing.

The reader reports each poll in one `read` call (records read, records held, tickets for
the windows that closed), so a commit point computed at any moment, from either thread,
never sees the read offset advanced without the holds and tickets of the same poll. Pure
bookkeeping: no Kafka, no clock; thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Protocol

Partition = tuple[str, int]


class Located(Protocol):
    """What the ledger needs of a record: where it lies."""

    topic: str
    partition: int
    offset: int


def lowest_offsets(records: Iterable[Located]) -> dict[Partition, int]:
    """Lowest offset per (topic, partition) among `records`."""
    out: dict[Partition, int] = {}
    for record in records:
        key = (record.topic, record.partition)
        offset = out.get(key)
        if offset is None or record.offset < offset:
            out[key] = record.offset
    return out


class CommitLedger:
    """Offsets read, held and owed per partition; `due()` is what may be committed now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: dict[Partition, int] = {}  # the next offset after the last record polled
        self._held: dict[Partition, int] = {}  # lowest offset the reader still holds
        self._owed: dict[int, dict[Partition, int]] = {}  # ticket -> lowest offset per partition
        self._committed: dict[Partition, int] = {}
        self._next_ticket = 0
        self.fresh = False  # a ticket was settled since the last commit

    # --- the reader ---------------------------------------------------------------------

    def read(
        self,
        records: Iterable[Located],
        held: Iterable[Located] = (),
        owed: Sequence[Iterable[Located]] = (),
    ) -> list[int]:
        """One poll: `records` read, `held` (everything the reader still keeps, replacing what it
        kept before) and one ticket per item of `owed` (the records of a window or of a batch of
        dead letters about to be handed over). Returns the tickets, in the order of `owed`."""
        read: dict[Partition, int] = {}
        for record in records:
            key = (record.topic, record.partition)
            if record.offset >= read.get(key, -1):
                read[key] = record.offset + 1
        held_now = lowest_offsets(held)
        spans = [lowest_offsets(items) for items in owed]
        with self._lock:
            for key, upto in read.items():
                if upto > self._read.get(key, -1):
                    self._read[key] = upto
            self._held = held_now
            tickets = []
            for span in spans:
                ticket = self._next_ticket
                self._next_ticket += 1
                self._owed[ticket] = span
                tickets.append(ticket)
            return tickets

    def due(self) -> dict[Partition, int]:
        """Commit points that moved past what was last committed."""
        points = self.commit_points()
        with self._lock:
            return {tp: o for tp, o in points.items() if o > self._committed.get(tp, -1)}

    def committed(self, offsets: dict[Partition, int]) -> None:
        """`offsets` were committed."""
        with self._lock:
            self._committed.update(offsets)
            self.fresh = False

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Partitions taken away: their next owner starts from their last commit."""
        gone = set(partitions)
        with self._lock:
            for table in (self._read, self._held, self._committed):
                for tp in gone:
                    table.pop(tp, None)
            for span in self._owed.values():
                for tp in gone:
                    span.pop(tp, None)
            for ticket in [t for t, span in self._owed.items() if not span]:
                del self._owed[ticket]

    # --- the judge ----------------------------------------------------------------------

    def settle(self, tickets: Iterable[int]) -> None:
        """These tickets' detections are published, dead letters written, state saved."""
        with self._lock:
            for ticket in tickets:
                self._owed.pop(ticket, None)
            self.fresh = True

    # --- either -------------------------------------------------------------------------

    def commit_points(self) -> dict[Partition, int]:
        """Per partition read: the lowest of read, held and owed (the rules above)."""
        with self._lock:
            points = dict(self._read)
            for needs in (self._held, *self._owed.values()):
                for tp, offset in needs.items():
                    if tp in points and offset < points[tp]:
                        points[tp] = offset
            return points

    def positions(self) -> dict[Partition, int]:
        """The next offset to read per partition (for the lag metric)."""
        with self._lock:
            return dict(self._read)

    @property
    def owed(self) -> int:
        """Tickets not yet settled."""
        with self._lock:
            return len(self._owed)
