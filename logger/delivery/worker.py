"""One sink's delivery: a bounded in-memory queue, a sender and a spiller, over a spool.

Two modes keep events in order while never blocking `offer()`:

* memory: the sender takes batches straight from the queue and sends them.
* spool: the spiller moves the queue to the disk spool (one fsync per batch) and the
  sender replays the spool; once the spool is empty, back to memory.

The worker enters spool mode when a send fails (the failed batch goes to the *front* of
the spool: it is older than anything spilled meanwhile), when the queue passes half its
limits (slow sink), and at start when a previous run left events in the spool. A switch
happens under `_mode_lock`, which the spiller also holds while it moves events, so
everything in the spool is always older than everything in the queue.

A spool the disk refuses (full disk, quota, I/O error) is not the end of delivery: the events
it could not take go back to the front of the queue, the reason is logged (rate-limited),
live events keep going to the sink straight from memory once the spool is replayed, and
spooling is tried again every `spool_retry_s` (issue 19: one ENOSPC used to stop delivery
until a restart). Only when the queue is full as well are events dropped, and the log line
says why. Neither loop ends on an unexpected error: it is logged and the loop goes on.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cloudevents.core.v1.event import CloudEvent

from ..metrics import SinkMetrics
from ..sinks.base import Sink, SinkError
from . import record
from .spool import AppendResult, FullPolicy, ReadToken, Spool

log = logging.getLogger(__name__)

_Item = tuple[CloudEvent, int]  # event, size in bytes


@dataclass(frozen=True)
class Limits:
    """Bounds and pacing of one sink's delivery (from LoggerSettings)."""

    queue_max_events: int = 10_000
    queue_max_bytes: int = 64 * 1024 * 1024
    batch_max_events: int = 1000
    batch_max_bytes: int = 4 * 1024 * 1024
    batch_linger_s: float = 0.02
    spool_max_bytes: int = 1024 * 1024 * 1024
    spool_segment_bytes: int = 16 * 1024 * 1024
    spool_full_policy: FullPolicy = "drop_newest"
    sink_timeout_s: float = 60.0
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 10.0
    spool_retry_s: float = 0.25  # after the disk refused a spool write, wait this long before writing again


class _RateLimitedLog:
    """Logs a recurring loss at most every `every` seconds, with the count since the last line."""

    def __init__(self, every: float = 10.0, level: int = logging.WARNING):
        self.every, self.last, self.pending, self.level = every, 0.0, 0, level

    def __call__(self, n: int, message: str, *args: object) -> None:
        self.pending += n
        now = time.monotonic()
        if now - self.last >= self.every:
            log.log(self.level, message + " (%d events since last report)", *args, self.pending)
            self.last, self.pending = now, 0


class SinkWorker:
    """Queue → batches → sink, spilling to a spool; see the module docstring."""

    def __init__(self, sink: Sink, spool_dir: Path, limits: Limits, metrics: SinkMetrics):
        self.sink, self.spool_dir, self.limits, self.metrics = sink, Path(spool_dir), limits, metrics
        self.counts = {"sent": 0, "retried": 0, "spooled": 0, "dropped": 0}
        self._q: deque[_Item] = deque()
        self._q_bytes = 0
        self._q_lock = threading.Lock()  # offer() may come from any thread
        self._closed = False
        self._spool: Spool | None = None
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"spool-{sink.name}")
        self._mode = "memory"
        self._failures = 0
        self._inflight: list[_Item] | None = None
        self._send_task: asyncio.Task | None = None
        self._stopping = False
        self._flushing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._tasks: list[asyncio.Task] = []
        self._drop_log = _RateLimitedLog()
        self._spool_log = _RateLimitedLog()
        self._crash_log = _RateLimitedLog(level=logging.ERROR)
        self._spool_error: str | None = None  # why the disk refused the last spool write; None: it took it
        self._spool_retry_at = 0.0  # monotonic time before which the spiller does not write

    # --- intake (any thread, never blocks) -----------------------------------------
    def offer(self, event: CloudEvent, size: int) -> None:
        lim = self.limits
        with self._q_lock:
            full = self._closed or len(self._q) >= lim.queue_max_events or self._q_bytes + size > lim.queue_max_bytes
            if not full:
                self._q.append((event, size))
                self._q_bytes += size
                high = len(self._q) * 2 > lim.queue_max_events or self._q_bytes * 2 > lim.queue_max_bytes
                full_batch = len(self._q) >= lim.batch_max_events or self._q_bytes >= lim.batch_max_bytes
        if full:
            self._count("dropped", 1)
            self._drop_log(1, "%s: %s; event dropped", self.sink.name, self._full_reason())
            return
        if self._mode == "spool" or high:
            self._wake(self._wake_spiller)
        else:
            self._wake(self._wake_sender)
            if full_batch:
                self._wake(self._batch_full)

    def _full_reason(self) -> str:
        if self._closed:
            return "delivery stopped"
        if self._spool_error is not None:
            return f"queue full and the spool cannot be written ({self._spool_error})"
        return "queue full (spool cannot keep up)"

    def _requeue(self, items: list[_Item]) -> None:
        """Put items taken from the queue back at its front (they are older than what is there)."""
        with self._q_lock:
            self._q.extendleft(reversed(items))
            self._q_bytes += sum(size for _, size in items)

    def _wake(self, ev: asyncio.Event | None) -> None:
        if ev is None or ev.is_set():
            return
        if threading.get_ident() == self._loop_thread:
            ev.set()
        else:
            assert self._loop is not None  # start() sets the loop before the events
            self._loop.call_soon_threadsafe(ev.set)

    _wake_sender: asyncio.Event | None = None
    _wake_spiller: asyncio.Event | None = None
    _batch_full: asyncio.Event | None = None

    def _take(self, max_events: int, max_bytes: int) -> list[_Item]:
        out: list[_Item] = []
        size = 0
        with self._q_lock:
            q = self._q
            while q and len(out) < max_events and (not out or size + q[0][1] <= max_bytes):
                item = q.popleft()
                out.append(item)
                size += item[1]
            self._q_bytes -= size
        return out

    # --- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake_sender, self._wake_spiller, self._batch_full = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._mode_lock = asyncio.Lock()
        self._stop_event = asyncio.Event()
        lim = self.limits
        self._spool = await self._run_io(
            Spool, self.spool_dir, lim.spool_max_bytes, lim.spool_full_policy, lim.spool_segment_bytes
        )
        if self._spool.unread:
            self._mode = "spool"  # replay what a previous run left before anything new
        self._gauges()
        self._tasks = [
            asyncio.create_task(self._sender(), name=f"sender-{self.sink.name}"),
            asyncio.create_task(self._spiller(), name=f"spiller-{self.sink.name}"),
        ]
        if self._q:
            self._wake_sender.set()
            self._wake_spiller.set()

    def idle(self) -> bool:
        """Nothing queued, in flight or spooled."""
        return not self._q and self._inflight is None and (self._spool is None or self._spool.unread == 0)

    async def stop(self, flush_timeout: float) -> None:
        """Send what the sink takes within `flush_timeout`, spool the rest, release all."""
        if not self._tasks:
            return
        # start() ran (it made the tasks): all of these are set
        assert self._loop is not None and self._spool is not None
        assert self._batch_full is not None and self._wake_sender is not None and self._wake_spiller is not None
        deadline = self._loop.time() + flush_timeout
        self._flushing = True  # no more lingering for full batches
        self._batch_full.set()
        while not self.idle() and self._failures == 0 and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        with self._q_lock:
            self._closed = True
        self._stopping = True
        self._stop_event.set()
        if self._send_task is not None and not self._send_task.done():
            self._send_task.cancel()  # the sender spools its in-flight batch
        self._wake_sender.set()
        self._wake_spiller.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        async with self._mode_lock:
            while self._q:
                if not await self._spill(self._take(self.limits.batch_max_events * 4, self.limits.batch_max_bytes * 4)):
                    self._drop_queue_at_stop()
        self._gauges()
        try:
            await asyncio.wait_for(self.sink.close(), timeout=5.0)
        except Exception as exc:  # noqa: BLE001 - shutdown goes on
            log.warning("%s: close failed: %r", self.sink.name, exc)
        await self._run_io(self._spool.close)
        self._io.shutdown(wait=False)

    def _drop_queue_at_stop(self) -> None:
        """At stop, with a spool the disk refuses: what is still queued is lost; count and say so."""
        lost = self._take(len(self._q), self._q_bytes + 1)
        self._count("dropped", len(lost))
        log.error(
            "%s: %d events dropped at shutdown: the spool cannot be written (%s)",
            self.sink.name,
            len(lost),
            self._spool_error,
        )

    async def _guarded(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        """Run `step()` until stopping; an unexpected error is logged and the loop goes on,
        so one bug or I/O error never ends delivery for good."""
        while not self._stopping:
            try:
                await step()
            except Exception as exc:  # noqa: BLE001 - see the docstring
                self._crash_log(1, "%s: %s failed, trying again: %r", self.sink.name, what, exc)
                await self._sleep_unless_stopping(1.0)

    # --- sender --------------------------------------------------------------------
    async def _sender(self) -> None:
        await self._guarded(self._send_step, "sending")

    async def _send_step(self) -> None:
        if self._failures:
            delay = min(self.limits.retry_backoff_s * 2 ** (self._failures - 1), self.limits.retry_backoff_max_s)
            await self._sleep_unless_stopping(delay)
            if self._stopping:
                return
        if self._mode == "spool":
            await self._send_from_spool()
            return
        if self._q:
            await self._linger()
        batch = self._take(self.limits.batch_max_events, self.limits.batch_max_bytes)
        if batch:
            await self._send_from_memory(batch)
            return
        self._gauges()
        assert self._wake_sender is not None  # the sender runs after start()
        self._wake_sender.clear()
        if not self._q and self._mode == "memory":
            await self._wake_sender.wait()

    async def _linger(self) -> None:
        """Wait up to `batch_linger_s` for a full batch before sending a partial one.

        Fewer, bigger batches: a batch's fixed cost (thread hand-offs, a produce request, its
        acknowledgement) is paid per event when traffic is light (Kafka sink at 2,000 events/s:
        109 -> 74 us of CPU per event with 20 ms, 35 of which build the event). Delivery is
        asynchronous, so the inference path never waits for it.
        """
        lim = self.limits
        if lim.batch_linger_s <= 0 or self._flushing or self._mode != "memory":
            return
        if len(self._q) >= lim.batch_max_events or self._q_bytes >= lim.batch_max_bytes:
            return
        assert self._batch_full is not None  # the sender runs after start()
        self._batch_full.clear()
        try:
            await asyncio.wait_for(self._batch_full.wait(), timeout=lim.batch_linger_s)
        except TimeoutError:
            pass

    async def _sleep_unless_stopping(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._stop_event.wait(), timeout=delay)
        except TimeoutError:
            pass

    async def _deliver(self, events: list[CloudEvent]) -> None:
        """Send one batch; SinkError on failure, timeout, or cancellation by stop()."""
        started = time.perf_counter()
        self._send_task = asyncio.ensure_future(self.sink.send_batch(events))
        try:
            await asyncio.wait_for(self._send_task, timeout=self.limits.sink_timeout_s)
        except TimeoutError:
            raise SinkError(f"{self.sink.name}: no acknowledgement within {self.limits.sink_timeout_s}s") from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None  # a coroutine awaited here runs in a task
            if task.cancelling():
                raise
            raise SinkError(f"{self.sink.name}: cancelled at shutdown") from None
        except SinkError:
            raise
        except Exception as exc:  # a sink bug must not kill delivery: treat as a failed batch
            log.exception("%s: unexpected error from send_batch", self.sink.name)
            raise SinkError(f"{self.sink.name}: {exc!r}") from exc
        finally:
            self._send_task = None
        self.metrics.latency.observe(time.perf_counter() - started)

    async def _send_from_memory(self, batch: list[_Item]) -> None:
        self._inflight = batch
        try:
            await self._deliver([e for e, _ in batch])
        except SinkError as exc:
            failed = range(len(batch)) if exc.failed is None else exc.failed
            self._count("sent", len(batch) - len(failed) - len(exc.rejected))
            self._reject(batch, exc)
            if not failed:  # only events refused for good: the sink itself is fine
                self._failures = 0
                return
            self._count("retried", len(failed))
            self._note_failure(exc)
            assert self._spool is not None and self._wake_spiller is not None  # the sender runs after start()
            async with self._mode_lock:
                self._mode = "spool"
                if not await self._spill([batch[i] for i in failed], front=True) and self._spool.unread == 0:
                    self._mode = "memory"  # the disk refused them: they wait in the queue for the next try
            self._wake_spiller.set()
        else:
            self._count("sent", len(batch))
            self._failures = 0
        finally:
            self._inflight = None

    async def _send_from_spool(self) -> None:
        assert self._spool is not None  # the sender runs after start()
        events, token = await self._run_io(self._read_spool)
        if token is None:  # drained: back to the fast path, unless the spiller added more meanwhile
            async with self._mode_lock:
                if self._spool.unread == 0:
                    self._mode = "memory"
            self._gauges()
            return
        if events:
            try:
                await self._deliver(events)
            except SinkError as exc:
                if exc.failed or exc.failed is None:
                    self._count("retried", len(events))
                    self._note_failure(exc)
                    return  # not acknowledged: read again after the backoff
                self._reject([(e, 0) for e in events], exc)
                self._count("sent", len(events) - len(exc.rejected))
            else:
                self._count("sent", len(events))
            self._failures = 0
        await self._run_io(self._spool.ack, token)
        self._gauges()

    def _read_spool(self) -> tuple[list[CloudEvent], ReadToken | None]:
        assert self._spool is not None  # called by the sender, after start()
        records, token = self._spool.read(self.limits.batch_max_events, self.limits.batch_max_bytes)
        return [record.decode(r) for r in records], token

    def _reject(self, batch: list[_Item], exc: SinkError) -> None:
        if exc.rejected:
            self._count("dropped", len(exc.rejected))
            log.error(
                "%s refused %d events for good (ids %s...); dropped",
                self.sink.name,
                len(exc.rejected),
                [batch[i][0].get_id() for i in exc.rejected[:3]],
            )

    def _note_failure(self, exc: SinkError) -> None:
        self._failures += 1
        if self._failures == 1 or self._failures % 20 == 0:
            log.warning(
                "%s: delivery failed (%d in a row), spooling and retrying: %s", self.sink.name, self._failures, exc
            )

    # --- spiller -------------------------------------------------------------------
    async def _spiller(self) -> None:
        await self._guarded(self._spill_step, "spooling")

    async def _spill_step(self) -> None:
        # the spiller runs after start()
        assert self._wake_spiller is not None and self._wake_sender is not None and self._spool is not None
        self._wake_spiller.clear()
        if not (self._q and (self._mode == "spool" or self._over_watermark())):
            await self._wake_spiller.wait()
            return
        wait = self._spool_retry_at - time.monotonic()
        if wait > 0:  # the disk refused the last write: the events wait in memory until the retry
            await self._sleep_unless_stopping(wait)
            return
        async with self._mode_lock:
            self._mode = "spool"
            spilled = await self._spill(self._take(self.limits.batch_max_events * 4, self.limits.batch_max_bytes * 4))
            if not spilled and self._spool.unread == 0:
                self._mode = "memory"  # nothing older on disk: the sender takes the queue directly
        self._wake_sender.set()
        if spilled and len(self._q) < self.limits.batch_max_events:
            await asyncio.sleep(0.005)  # gather a bigger batch: one fsync covers more events

    def _over_watermark(self) -> bool:
        return len(self._q) * 2 > self.limits.queue_max_events or self._q_bytes * 2 > self.limits.queue_max_bytes

    async def _spill(self, items: list[_Item], front: bool = False) -> bool:
        """Write items to the spool (caller holds _mode_lock); count spooled and dropped.

        False when the disk refused the write: the items it did not take are back at the
        front of the queue, and spooling waits `spool_retry_s` before the next write.
        """
        if not items:
            return True
        events = [e for e, _ in items]
        spool = self._spool
        assert spool is not None  # the loops and stop() spill, all after start()
        result = await self._run_io(lambda: spool.append([record.encode(e) for e in events], front=front))
        self._count("spooled", result.written)
        self._note_spool_write(result, items)
        if result.dropped:
            self._count("dropped", result.dropped)
            self._drop_log(
                result.dropped,
                "%s: spool full (%d bytes, policy %s); events dropped",
                self.sink.name,
                self.limits.spool_max_bytes,
                self.limits.spool_full_policy,
            )
        self._gauges()
        return result.error is None

    def _note_spool_write(self, result: AppendResult, items: list[_Item]) -> None:
        """Requeue what the disk refused and say why (rate-limited); say when it takes writes again."""
        if result.error is None:
            if self._spool_error is not None:
                log.warning("%s: the spool takes writes again (it failed with: %s)", self.sink.name, self._spool_error)
                self._spool_error = None
            return
        self._spool_error = _describe(result.error)
        self._spool_retry_at = time.monotonic() + self.limits.spool_retry_s
        self._requeue(items[result.written : result.written + result.unwritten])
        self._spool_log(
            result.unwritten,
            "%s: the spool in %s cannot be written (%s): events wait in memory and go to the sink from there; "
            "spooling is tried again every %gs",
            self.sink.name,
            self.spool_dir,
            self._spool_error,
            self.limits.spool_retry_s,
        )

    # --- bookkeeping ---------------------------------------------------------------
    async def _run_io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _count(self, outcome: str, n: int) -> None:
        if n > 0:
            self.counts[outcome] += n
            self.metrics.count(outcome, n)

    def _gauges(self) -> None:
        self.metrics.queue_depth.set(len(self._q))
        self.metrics.queue_bytes.set(self._q_bytes)
        if self._spool is not None:
            self.metrics.spool_bytes.set(self._spool.bytes)
            self.metrics.spool_events.set(self._spool.unread)


def _describe(exc: OSError) -> str:
    """`[Errno 28] No space left on device` as `ENOSPC: No space left on device`."""
    name = errno.errorcode.get(exc.errno or 0)
    return f"{name}: {exc.strerror}" if name and exc.strerror else repr(exc)
