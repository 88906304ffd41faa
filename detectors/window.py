"""Windows over a stream of events: count-based or time-based, tumbling or sliding.

Pure: no clock, no I/O. Items only need a `timestamp` (seconds). `add` returns the windows
that closed; `retained` is what later windows still need (the worker never commits past
it, so a restart re-reads exactly those events).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar


class Timed(Protocol):
    timestamp: float


T = TypeVar("T", bound=Timed)


class Closed(list[T]):
    """A closed window's items; a time window's also carry its bounds [start, end) in epoch seconds.

    The bounds are the window's identity across workers (window k of a time window is the same
    span for every worker that counts in the same duration and slide): a detection names them
    (`window` in its body), so an estimate and the realised figure of the same span line up.
    """

    def __init__(self, items: Sequence[T], start: float | None = None, end: float | None = None):
        super().__init__(items)
        self.start, self.end = start, end


def bounds(items: Sequence[Timed]) -> tuple[float, float] | None:
    """The span [start, end) of a closed time window (`Closed`); None for any other list of items."""
    if isinstance(items, Closed) and items.start is not None and items.end is not None:
        return items.start, items.end
    return None


class Window(Generic[T]):
    """What the worker needs from a window kind."""

    def add(self, items: Sequence[T]) -> list[list[T]]:  # pragma: no cover - interface
        raise NotImplementedError

    def tick(self, now: float) -> list[list[T]]:
        """Close windows whose time has passed (time windows); count windows never close on time."""
        return []

    def retained(self) -> list[T]:  # pragma: no cover - interface
        raise NotImplementedError

    def drop(self, predicate: Callable[[T], bool]) -> None:  # pragma: no cover - interface
        """Forget retained items (e.g. of partitions taken away by a rebalance)."""
        raise NotImplementedError


class CountWindow(Window[T]):
    """`size` items per window; a new window every `slide` items (tumbling: slide = size)."""

    def __init__(self, size: int, slide: int | None = None):
        if size < 1 or (slide is not None and not 1 <= slide <= size):
            raise ValueError(f"need 1 <= slide <= size (got size={size}, slide={slide})")
        self.size, self.slide = size, slide or size
        self._buffer: list[T] = []

    def add(self, items: Sequence[T]) -> list[list[T]]:
        # windows are the slices [k·slide, k·slide + size) of the stream; cut them in one go
        buffer = self._buffer + list(items)
        closed, start = [], 0
        while len(buffer) - start >= self.size:
            closed.append(buffer[start : start + self.size])
            start += self.slide
        self._buffer = buffer[start:]
        return closed

    def retained(self) -> list[T]:
        return list(self._buffer)

    def drop(self, predicate: Callable[[T], bool]) -> None:
        self._buffer = [item for item in self._buffer if not predicate(item)]


class TimeWindow(Window[T]):
    """Windows of `duration` seconds starting every `slide` seconds (tumbling: slide = duration).

    Window k covers [k·slide, k·slide + duration), aligned to the epoch so workers agree.
    A window closes when an item at or past its end arrives, or `tick(now)` passes its end;
    empty windows are skipped. An item older than every open window (late) joins the next
    window to close rather than being lost.
    """

    def __init__(self, duration: float, slide: float | None = None):
        if duration <= 0 or (slide is not None and not 0 < slide <= duration):
            raise ValueError(f"need 0 < slide <= duration (got duration={duration}, slide={slide})")
        self.duration, self.slide = float(duration), float(slide or duration)
        self._buffer: list[T] = []
        self._next_end: float | None = None

    def add(self, items: Sequence[T]) -> list[list[T]]:
        closed: list[list[T]] = []
        for item in items:
            if self._next_end is None:
                self._next_end = self._first_end(item.timestamp)
            closed += self._close_until(item.timestamp)
            self._buffer.append(item)
        return closed

    def tick(self, now: float) -> list[list[T]]:
        return self._close_until(now) if self._next_end is not None else []

    def retained(self) -> list[T]:
        return list(self._buffer)

    def drop(self, predicate: Callable[[T], bool]) -> None:
        self._buffer = [item for item in self._buffer if not predicate(item)]

    def _first_end(self, ts: float) -> float:
        k = math.floor((ts - self.duration) / self.slide) + 1  # the first window holding ts
        return k * self.slide + self.duration

    def _close_until(self, watermark: float) -> list[list[T]]:
        closed: list[list[T]] = []
        while self._next_end is not None and watermark >= self._next_end:
            end = self._next_end
            if not self._buffer:  # nothing open: jump to the window holding the watermark
                self._next_end = self._first_end(watermark)
                if self._next_end <= end:
                    self._next_end = end + self.slide
                continue
            # late items (older than this window's start) belong to no open window any more: they go in this one
            window = [item for item in self._buffer if item.timestamp < end]
            if window:
                closed.append(Closed(window, end - self.duration, end))
            self._next_end = end + self.slide
            keep_from = self._next_end - self.duration
            self._buffer = [item for item in self._buffer if item.timestamp >= keep_from]
        return closed


def make_window(size: int | None = None, duration: float | None = None, slide: float | None = None) -> Window:
    """The window a spec's `window:` block describes."""
    if size is not None:
        return CountWindow(size, int(slide) if slide is not None else None)
    if duration is not None:
        return TimeWindow(duration, slide)
    raise ValueError("a window needs a size (events) or a duration (seconds)")
