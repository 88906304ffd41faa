"""Dynamic batching: merge concurrent requests into one model call (as Triton's dynamic batcher).

Generic over the model: a request is a list of numpy arrays that share a first (batch)
axis; the batcher concatenates compatible requests along it, makes one call, and splits
the outputs back by row counts. One call runs at a time, and requests that arrive while
it runs are merged into the next one, so batches grow with load on their own; a lone
request waits at most `max_wait_ms` for company.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

Arrays = list[np.ndarray]


@dataclass
class _Pending:
    arrays: Arrays
    rows: int
    signature: tuple
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    """Queue requests and run them through `run` in merged batches of at most `max_batch_size` rows.

    `run(arrays) -> arrays` gets the concatenated inputs and must return outputs whose first
    axis is the total row count. `observe(rows)` is called once per model call (metrics).
    A request larger than `max_batch_size` runs alone, unsplit.
    """

    def __init__(
        self,
        run: Callable[[Arrays], Awaitable[Arrays]],
        max_batch_size: int,
        max_wait_ms: float,
        observe: Callable[[int], None] | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.observe = observe
        self._queue: deque[_Pending] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self.calls = 0  # model calls made, for tests and logs
        self.rows = 0

    async def submit(self, arrays: Arrays) -> Arrays:
        """Queue one request (arrays with a common first axis) and wait for its slice of the outputs."""
        if not arrays:
            raise ValueError("a request needs at least one input array")
        rows = arrays[0].shape[0] if arrays[0].ndim else 1
        if any(a.ndim == 0 or a.shape[0] != rows for a in arrays):
            raise ValueError("all inputs of a batched request need the same first (batch) dimension")
        arrived = self._ensure_worker()
        future = asyncio.get_running_loop().create_future()
        signature = tuple((a.shape[1:], a.dtype.str) for a in arrays)
        self._queue.append(_Pending(arrays, rows, signature, future))
        arrived.set()
        return await future

    def _ensure_worker(self) -> asyncio.Event:
        """The running loop's worker, started when missing; returns the event that wakes it."""
        loop = asyncio.get_running_loop()
        if self._arrived is None or self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._arrived = asyncio.Event()
            self._worker = loop.create_task(self._work(self._arrived), name="dynamic-batcher")
        return self._arrived

    async def close(self) -> None:
        """Stop the worker; requests still queued fail with CancelledError."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, RuntimeError):
                pass
        while self._queue:
            self._queue.popleft().future.cancel()

    async def _work(self, arrived: asyncio.Event) -> None:
        while True:
            if not self._queue:
                arrived.clear()
                await arrived.wait()
            batch = await self._collect(arrived)
            if batch:
                await self._execute(batch)

    async def _collect(self, arrived: asyncio.Event) -> list[_Pending]:
        first = self._queue.popleft()
        batch, rows = [first], first.rows
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while rows < self.max_batch_size:
            rows, full = self._take(batch, rows)
            remaining = deadline - asyncio.get_running_loop().time()
            if full or rows >= self.max_batch_size or remaining <= 0:
                break
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), remaining)
            except TimeoutError:
                self._take(batch, rows)
                break
        return [p for p in batch if not p.future.done()]  # drop requests whose clients went away

    def _take(self, batch: list[_Pending], rows: int) -> tuple[int, bool]:
        """Move queued requests that fit (same trailing shapes and dtypes, room left) into `batch`.

        Returns the new row count and whether a compatible request had to wait for lack of room.
        """
        signature = batch[0].signature
        kept: deque[_Pending] = deque()
        full = False
        while self._queue:
            pending = self._queue.popleft()
            if pending.signature != signature:
                kept.append(pending)
            elif rows + pending.rows <= self.max_batch_size:
                batch.append(pending)
                rows += pending.rows
            else:
                kept.append(pending)
                full = True
        self._queue.extendleft(reversed(kept))
        return rows, full

    async def _execute(self, batch: list[_Pending]) -> None:
        total = sum(p.rows for p in batch)
        try:
            merged = (
                batch[0].arrays
                if len(batch) == 1
                else [np.concatenate([p.arrays[i] for p in batch]) for i in range(len(batch[0].arrays))]
            )
            outputs = await self._run(merged)
            if any(o.ndim == 0 or o.shape[0] != total for o in outputs):
                raise RuntimeError(
                    f"model returned outputs without a batch axis of {total} rows; "
                    "turn dynamic batching off for this model"
                )
        except Exception as err:  # noqa: BLE001 - whatever the model raised, every waiting request gets it
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(err)
            return
        self.calls += 1
        self.rows += total
        if self.observe is not None:
            self.observe(total)
        start = 0
        for p in batch:
            if not p.future.done():
                p.future.set_result([o[start : start + p.rows] for o in outputs])
            start += p.rows
