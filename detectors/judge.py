"""The judge: takes the reader's work from the hand-off, in order, has the detector judge each
window, has the publisher publish the detection and the dead letters, and settles the work's
ledger tickets.

With an evaluator that has `lookahead` (a detector process), the next windows are submitted
before this one is published, so the detector never waits on the broker. Tickets are settled
at the work marked `checkpoint` (the last of its poll), after the evaluator saved an online
detector's state, so a commit never passes rows the saved state has not seen; and once more
when the judge ends normally (the reader gone, nothing left). When it fails, what it took but
did not settle stays owed: the ledger keeps the commit point before it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

import numpy as np

from infertap.detectors.handoff import Handoff, Work
from infertap.detectors.ledger import CommitLedger
from infertap.detectors.publisher import Publisher
from infertap.detectors.result import DetectionResult


class WindowEvaluator(Protocol):
    """What the judge needs of an evaluator (`Evaluator`, `RemoteEvaluator`); an optional
    `lookahead` says how many windows may be submitted beyond the one collected."""

    def submit(self, x: np.ndarray) -> None: ...

    def collect(self) -> tuple[DetectionResult, float]: ...

    def save_state(self) -> None: ...


class Judge:
    """Runs in the thread that called `Worker.run`; `running` while it takes work."""

    def __init__(self, handoff: Handoff[Work], publisher: Publisher, ledger: CommitLedger):
        self.handoff = handoff
        self.publisher = publisher
        self.ledger = ledger
        self.running = False
        self.evaluator: WindowEvaluator | None = None
        self._unsaved: list[int] = []  # tickets of work published since the last checkpoint

    def run(self, evaluator: WindowEvaluator, reader: threading.Thread) -> None:
        """Settle handed-over work until `reader` has stopped and nothing is left."""
        self.evaluator = evaluator
        ahead: deque[Work] = deque()  # taken from the hand-off in order; their windows submitted
        lookahead = getattr(evaluator, "lookahead", 0)
        try:
            while True:
                self._take(ahead, 1 + lookahead, wait=True)
                if not ahead:
                    if not reader.is_alive() and self.handoff.empty():
                        break
                    continue
                work = ahead.popleft()
                try:
                    judged = evaluator.collect() if work.window is not None else None
                    self._take(ahead, lookahead, wait=False)  # the detector goes on while this one is published
                    self._settle(work, judged)
                finally:
                    self.handoff.done()
            self._checkpoint()
        finally:
            self.running = False

    def _take(self, ahead: deque[Work], windows: int, wait: bool) -> None:
        """Take handed-over work until `windows` windows of it are with the detector, or none is waiting."""
        while sum(1 for w in ahead if w.window is not None) < windows:
            work = self.handoff.get(0.2 if wait and not ahead else 0.0)
            if work is None:
                return
            if work.window is not None:
                self._evaluator().submit(work.window.x)
            ahead.append(work)

    def _settle(self, work: Work, judged: tuple[DetectionResult, float] | None) -> None:
        if work.window is not None:
            assert judged is not None  # collected for every window (run)
            self.publisher.detection(work.window, *judged)
        self.publisher.dead_letters(work.rejects)
        self._unsaved += work.tickets
        if work.checkpoint:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Save online state, then settle the tickets published since the last checkpoint."""
        if self._unsaved:
            self._evaluator().save_state()
            self.ledger.settle(self._unsaved)
            self._unsaved = []

    def _evaluator(self) -> WindowEvaluator:
        if self.evaluator is None:
            raise RuntimeError("the judge has no evaluator (run sets it)")
        return self.evaluator
