"""A bounded hand-off between a worker's reader thread and its judge thread.

The reader polls, decodes and queues work; the judge runs the detector and publishes; the
ledger (`infertap.detectors.ledger`) says what may be committed. `slots` bounds how far the
reader may run ahead (memory stays bounded: one window being judged, `slots` waiting).
`drain` lets the reader wait, inside a rebalance callback, until everything it handed over
is settled, so what it commits then includes all the judge published.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from infertap.detectors.decode import DecodedWindow, Reject

T = TypeVar("T")


@dataclass
class Work:
    """What the reader hands the judge: a decoded window to judge (None when nothing of it is
    left to judge), the dead letters to write with it, and the ledger tickets its settling
    settles. `checkpoint`: the last work of its poll (the judge saves online state there)."""

    window: DecodedWindow | None = None
    rejects: list[Reject] = field(default_factory=list)
    tickets: list[int] = field(default_factory=list)
    checkpoint: bool = True


class Handoff(Generic[T]):
    """A queue of at most `slots` items that also counts items taken but not yet `done`."""

    def __init__(self, slots: int = 1):
        if slots < 1:
            raise ValueError("a hand-off needs at least one slot")
        self.slots = slots
        self._items: deque[T] = deque()
        self._unsettled = 0  # put and not yet done (queued or being worked on)
        self._cond = threading.Condition()

    def put(self, item: T, stop: threading.Event, poll: float = 0.1) -> bool:
        """Queue `item`, waiting for a free slot; False (item not queued) once `stop` is set."""
        with self._cond:
            while len(self._items) >= self.slots:
                if stop.is_set():
                    return False
                self._cond.wait(poll)
            self._items.append(item)
            self._unsettled += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> T | None:
        """The oldest item, or None after `timeout` seconds without one; call `done` when settled."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
                if not self._items:
                    return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def done(self) -> None:
        """The item last taken is settled (published and committed, or given up)."""
        with self._cond:
            self._unsettled -= 1
            self._cond.notify_all()

    def drain(self, give_up: Callable[[], bool], poll: float = 0.1) -> bool:
        """Wait until every item put is done; False if `give_up()` turns true first."""
        with self._cond:
            while self._unsettled:
                if give_up():
                    return False
                self._cond.wait(poll)
            return True

    def abandon(self) -> int:
        """Drop the queued items (their taker is gone); how many were dropped."""
        with self._cond:
            dropped = len(self._items)
            self._items.clear()
            self._unsettled -= dropped
            self._cond.notify_all()
            return dropped

    def empty(self) -> bool:
        with self._cond:
            return not self._items
