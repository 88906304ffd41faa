"""The commit ledger's rules, without Kafka: an offset is committed only after every window
that covers it has its detection published and its dead letters written."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from infertap.detectors.ledger import CommitLedger, lowest_offsets

pytestmark = pytest.mark.fast  # starts no process (make test-fast)

T = "events"


@dataclass
class Rec:
    offset: int
    partition: int = 0
    topic: str = T


def recs(first: int, last: int, partition: int = 0) -> list[Rec]:
    return [Rec(o, partition) for o in range(first, last + 1)]


def commit(ledger: CommitLedger) -> dict:
    due = ledger.due()
    ledger.committed(due)
    return due


def test_nothing_owed_or_held_commits_everything_read():
    ledger = CommitLedger()
    assert ledger.read(recs(0, 9)) == []
    assert commit(ledger) == {(T, 0): 10}
    assert ledger.due() == {}  # nothing moved since


def test_open_windows_hold_the_commit_point():
    ledger = CommitLedger()
    ledger.read(recs(0, 9), held=recs(4, 9))  # 0-3 ignored records, 4-9 in the open window
    assert ledger.commit_points() == {(T, 0): 4}


def test_a_window_is_committed_only_once_settled_and_in_order():
    ledger = CommitLedger()
    t1, t2 = ledger.read(recs(0, 39), held=[], owed=[recs(0, 19), recs(20, 39)])
    assert ledger.commit_points() == {(T, 0): 0}
    ledger.settle([t2])  # the later window settled first: the earlier still holds the point
    assert ledger.commit_points() == {(T, 0): 0}
    ledger.settle([t1])
    assert ledger.fresh and commit(ledger) == {(T, 0): 40} and not ledger.fresh


def test_a_ticket_never_settled_holds_the_point_forever():
    """Work dropped at a stop, or a judge that failed: what was not published is re-read."""
    ledger = CommitLedger()
    (t1,) = ledger.read(recs(0, 19), owed=[recs(0, 19)])
    ledger.settle([t1])
    ledger.read(recs(20, 59), held=recs(40, 59), owed=[recs(20, 39)])  # handed over, never settled
    for _ in range(3):
        ledger.read(recs(60, 79, partition=0), held=recs(40, 79))
    assert commit(ledger) == {(T, 0): 20}
    assert ledger.owed == 1


def test_sliding_windows_hold_what_the_next_window_still_needs():
    """Windows of 20 sliding by 10: the closed window's second half is still held."""
    ledger = CommitLedger()
    (t,) = ledger.read(recs(0, 19), held=recs(10, 19), owed=[recs(0, 19)])
    ledger.settle([t])
    assert ledger.commit_points() == {(T, 0): 10}
    (t,) = ledger.read(recs(20, 29), held=recs(20, 29), owed=[recs(10, 29)])
    assert ledger.commit_points() == {(T, 0): 10}
    ledger.settle([t])
    assert ledger.commit_points() == {(T, 0): 20}


def test_dead_letters_are_owed_like_windows():
    """Rejected records are in no window: their ticket holds the point until they are written."""
    ledger = CommitLedger()
    (dead,) = ledger.read([Rec(0), Rec(1), Rec(2)], owed=[[Rec(1)]])
    assert ledger.commit_points() == {(T, 0): 1}
    ledger.settle([dead])
    assert ledger.commit_points() == {(T, 0): 3}


def test_partitions_are_independent_and_forgotten_on_revoke():
    ledger = CommitLedger()
    a, b = ledger.read(recs(0, 9, 0) + recs(0, 4, 1), owed=[recs(0, 9, 0), recs(0, 4, 1)])
    ledger.settle([a])
    assert commit(ledger) == {(T, 0): 10, (T, 1): 0}  # partition 1 waits on its window (at 0)
    ledger.forget([(T, 1)])  # its unsettled ticket goes with it: the next owner re-reads 0-4
    assert ledger.commit_points() == {(T, 0): 10} and ledger.owed == 0
    ledger.read(recs(5, 7, 1))  # given back later: starts afresh from what it reads
    assert commit(ledger) == {(T, 1): 8}
    ledger.settle([b])  # a stale ticket settled late changes nothing
    assert ledger.due() == {}


def test_the_point_never_moves_back_and_the_read_offset_is_the_highest():
    ledger = CommitLedger()
    ledger.read([Rec(5), Rec(3)])
    assert commit(ledger) == {(T, 0): 6}
    ledger.read([Rec(2)])  # an older record (re-delivered) must not pull the read offset back
    assert ledger.commit_points() == {(T, 0): 6} and ledger.positions() == {(T, 0): 6}


def test_joined_mode_requests_awaiting_their_response_are_held():
    ledger = CommitLedger()
    # offsets 0, 2: requests, 1: a response whose pair (request 0) made a window; 2 waits
    (t,) = ledger.read(recs(0, 2), held=[Rec(2)], owed=[[Rec(0), Rec(1)]])
    ledger.settle([t])
    assert ledger.commit_points() == {(T, 0): 2}


def test_commit_points_seen_from_another_thread_are_always_safe():
    """The judge settles while the reader reads: every commit point computed in between is at or
    below the first offset of the oldest unsettled window (never past an unpublished one)."""
    ledger = CommitLedger()
    size, windows = 10, 300
    owed: list[tuple[int, int]] = []  # (ticket, first offset), in order
    published = threading.Event()
    lock = threading.Lock()
    violations: list[str] = []

    def judge():
        settled = 0
        while settled < windows:
            with lock:
                ready = owed[settled:]
            for ticket, _ in ready:
                ledger.settle([ticket])
                settled += 1
        published.set()

    def watch():
        while not published.is_set():
            point = ledger.commit_points().get((T, 0))
            with lock:
                unsettled = [first for ticket, first in owed if ticket in ledger._owed]
            if point is not None and unsettled and point > min(unsettled):
                violations.append(f"committed {point} past unsettled window at {min(unsettled)}")

    threads = [threading.Thread(target=judge), threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    for k in range(windows):
        first = k * size
        with lock:
            (ticket,) = ledger.read(
                recs(first, first + size + 4),
                held=recs(first + size, first + size + 4),
                owed=[recs(first, first + size - 1)],
            )
            owed.append((ticket, first))
    for thread in threads:
        thread.join(30)
    assert not violations, violations[:3]
    assert ledger.commit_points() == {(T, 0): windows * size}


def test_lowest_offsets():
    assert lowest_offsets([Rec(4), Rec(2, 1), Rec(1), Rec(7, 1)]) == {(T, 0): 1, (T, 1): 2}
