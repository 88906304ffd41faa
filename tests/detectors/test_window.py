"""Count and time windows, tumbling and sliding: what closes when, and what is retained."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from infertap.detectors.window import CountWindow, TimeWindow, make_window

pytestmark = pytest.mark.fast  # starts no process (make test-fast)


@dataclass
class Item:
    n: int
    timestamp: float = 0.0


def ns(windows):
    return [[i.n for i in w] for w in windows]


def test_count_tumbling_closes_every_size_items_and_retains_the_rest():
    w = CountWindow(3)
    assert ns(w.add([Item(i) for i in range(7)])) == [[0, 1, 2], [3, 4, 5]]
    assert [i.n for i in w.retained()] == [6]
    assert ns(w.add([Item(7), Item(8)])) == [[6, 7, 8]]
    assert w.retained() == []


def test_count_sliding_emits_every_slide_items_after_the_first_full_window():
    w = CountWindow(4, slide=2)
    assert ns(w.add([Item(i) for i in range(3)])) == []
    assert ns(w.add([Item(3)])) == [[0, 1, 2, 3]]
    assert [i.n for i in w.retained()] == [2, 3]  # needed by the next window: never committed past
    assert ns(w.add([Item(4)])) == []
    assert ns(w.add([Item(5), Item(6), Item(7)])) == [[2, 3, 4, 5], [4, 5, 6, 7]]


def test_time_tumbling_is_aligned_and_closes_on_later_items_or_ticks():
    w = TimeWindow(10)
    assert ns(w.add([Item(0, 101), Item(1, 105), Item(2, 109.9)])) == []
    assert ns(w.add([Item(3, 110)])) == [[0, 1, 2]]
    assert ns(w.tick(115)) == []
    assert ns(w.tick(120)) == [[3]]
    assert w.retained() == []


def test_time_windows_skip_empty_stretches():
    w = TimeWindow(10)
    w.add([Item(0, 1)])
    assert ns(w.add([Item(1, 55)])) == [[0]]
    assert ns(w.tick(59)) == [] and ns(w.tick(60)) == [[1]]


def test_time_sliding_windows_overlap():
    w = TimeWindow(10, slide=5)
    w.add([Item(0, 1), Item(1, 6), Item(2, 11)])
    # windows [-5,5) [0,10) [5,15): the first two closed by the item at 11
    assert ns(w.tick(15)) == [[1, 2]]
    assert ns(w.tick(20)) == [[2]]


def test_late_items_join_the_next_window_to_close():
    w = TimeWindow(10)
    w.add([Item(0, 100), Item(1, 111)])  # closes [100,110)
    assert ns(w.add([Item(2, 95)])) == []
    assert ns(w.tick(120)) == [[1, 2]]


def test_drop_forgets_items_of_revoked_partitions():
    w = CountWindow(3)
    w.add([Item(1), Item(2)])
    w.drop(lambda i: i.n == 1)
    assert [i.n for i in w.retained()] == [2]


@pytest.mark.parametrize("kwargs", [{"size": 0}, {"size": 3, "slide": 4}])
def test_bad_windows_are_refused(kwargs):
    with pytest.raises(ValueError):
        make_window(**kwargs)


def test_make_window_needs_size_or_duration():
    with pytest.raises(ValueError):
        make_window()
    assert isinstance(make_window(duration=5), TimeWindow)
