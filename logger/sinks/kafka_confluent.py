"""confluent-kafka (librdkafka) backend of the Kafka sink.

librdkafka's producer is thread based: `produce()` only enqueues, delivery reports arrive
through callbacks run by `poll()`/`flush()`. A batch is built and enqueued on a thread of the
sink (the SDK's per-event work stays off the event loop), which then flushes it: one batch
is in flight per sink, so `flush()` returning means every message of the batch was
acknowledged or failed. Delivery reports come for failures only
(`delivery.report.only.error`): a Python callback per acknowledged message cost GIL time the
proxy's event loop waits for. The event loop awaits the thread's work and never blocks on
Kafka. A daemon thread polls between batches, for broker errors and librdkafka's log lines.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

from cloudevents.core.v1.event import CloudEvent

from infertap.stream.clients import RepeatFilter, librdkafka_logger
from infertap.stream.clients import producer_config as client_producer_config

from .base import SinkError
from .kafka_config import KafkaSinkConfig
from .kafka_records import to_record

__all__ = ["ConfluentBackend", "RepeatFilter", "producer_config", "security_config"]

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Producer

log = logging.getLogger(__name__)


# one rate-limited librdkafka logger per process for the sink: librdkafka retries a broker it
# cannot reach or log in to many times a second and logs each try (about 20 lines/s for a
# wrong SASL password); the stream contract's RepeatFilter lets each message through once per 30 s
_LIBRDKAFKA_LOG = librdkafka_logger("infertap.logger.sinks.librdkafka")


def producer_config(config: KafkaSinkConfig) -> dict[str, object]:
    """librdkafka settings for a sink URL."""
    return client_producer_config(
        config.bootstrap,
        client_id="infertap-logger",
        logger=_LIBRDKAFKA_LOG,
        acks=config.acks,
        linger_ms=config.linger_ms,
        message_timeout_ms=config.delivery_timeout_ms,
        properties={
            "compression.type": config.compression,
            "security.protocol": config.security_protocol,
            # one batch is in flight per sink, so the local queue never holds more than that
            "queue.buffering.max.messages": 1_000_000,
            # failures name their message; success is `flush()` coming back (see the module docstring)
            "delivery.report.only.error": True,
        },
        kafka_config=security_config(config),
    )


def security_config(config: KafkaSinkConfig) -> dict[str, str]:
    """The URL's TLS/SASL options as librdkafka properties (the stream contract's `KafkaSecurity`)."""
    return config.security.librdkafka()


def _never_fits(err: object) -> bool:
    """Whether a produce error says the message is too large for Kafka: retrying cannot help."""
    import confluent_kafka

    error = err.args[0] if isinstance(err, confluent_kafka.KafkaException) and err.args else err
    code = getattr(error, "code", None)
    E = confluent_kafka.KafkaError
    return callable(code) and code() in (E.MSG_SIZE_TOO_LARGE, E.INVALID_MSG_SIZE, E.RECORD_LIST_TOO_LARGE)


class _Batch:
    """The failures of one batch (delivery reports come for failures only)."""

    def __init__(self) -> None:
        self.failed: set[int] = set()  # worth another try
        self.rejected: set[int] = set()  # too large for Kafka, ever
        self.first_error: str | None = None
        self._lock = threading.Lock()

    def on_delivery(self, index: int, err: object, _msg: object) -> None:  # on the produce or poll thread
        if err is not None:
            with self._lock:
                (self.rejected if _never_fits(err) else self.failed).add(index)
                self.first_error = self.first_error or str(err)

    def fail_all(self, n: int, why: str) -> None:
        """Every one of the batch's `n` messages counts as failed (worth another try)."""
        with self._lock:
            self.failed.update(range(n))
            self.first_error = self.first_error or why


# produce() holds the GIL: a batch of a few hundred events would keep the proxy's event loop
# from answering for a millisecond or more. A yield every few events bounds that wait.
_YIELD_EVERY = 4


class ConfluentBackend:
    """Produces with confluent_kafka.Producer; one produce thread and one poll thread per sink."""

    def __init__(self, config: KafkaSinkConfig):
        self.config = config
        self._producer: Producer | None = None
        # the last broker-level error (TLS handshake, SASL, connection): a timed-out batch
        # names it, else all it says is "Local: Message timed out"
        self._broker_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-produce-{config.topic}")

    def _ensure(self) -> Producer:
        if self._producer is None:
            import confluent_kafka

            try:
                self._producer = confluent_kafka.Producer({**producer_config(self.config), "error_cb": self._on_error})
            except confluent_kafka.KafkaException as exc:
                raise SinkError(f"kafka producer: {exc}") from exc
            self._thread = threading.Thread(target=self._poll, name=f"kafka-poll-{self.config.topic}", daemon=True)
            self._thread.start()
        return self._producer

    def _on_error(self, err: KafkaError) -> None:  # on the poll thread; librdkafka logs it too
        self._broker_error = err.str()

    def _poll(self) -> None:
        producer = self._producer
        assert producer is not None  # _ensure starts this thread once the producer exists
        while not self._stop.is_set():
            producer.poll(0.05)

    async def send(self, events: Sequence[CloudEvent]) -> None:
        if not events:
            return
        batch = _Batch()
        await asyncio.get_running_loop().run_in_executor(self._io, self._deliver, events, batch)
        if not batch.failed:
            self._broker_error = None
            if not batch.rejected:
                return
        why = batch.first_error
        if self._broker_error and "timed out" in str(why):
            why = f"{why}; last broker error: {self._broker_error}"
        lost = len(batch.failed) + len(batch.rejected)
        raise SinkError(
            f"kafka {self.config.topic}: {lost} of {len(events)} not delivered: {why}",
            failed=sorted(batch.failed),
            rejected=sorted(batch.rejected),
        )

    def _deliver(self, events: Sequence[CloudEvent], batch: _Batch) -> None:
        """Produce the batch, then wait until each message is acknowledged or failed (on the produce thread)."""
        self._produce(events, batch)
        producer = self._producer
        assert producer is not None  # _produce made it
        # librdkafka fails a message after message.timeout.ms itself: flush returns by then
        left = producer.flush(self.config.delivery_timeout_ms / 1000 + 5.0)
        if left:  # not expected; these may yet arrive, but unreported they count as failed (at least once)
            batch.fail_all(len(events), f"{left} messages still queued after the delivery timeout")

    def _produce(self, events: Sequence[CloudEvent], batch: _Batch) -> None:
        producer, topic = self._ensure(), self.config.topic
        report = batch.on_delivery
        for i, event in enumerate(events):
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                time.sleep(0)  # let the event loop's thread have the GIL (see _YIELD_EVERY)
            key, value, headers = to_record(event)
            while True:
                try:
                    # confluent-kafka's stub types headers as an invariant List of str | bytes | None
                    # values: our list of bytes values is what it takes (its C code only reads it)
                    producer.produce(topic, value, key, on_delivery=partial(report, i), headers=headers)  # type: ignore[arg-type]
                    break
                except BufferError:  # local queue full: the poll thread drains it
                    time.sleep(0.005)
                except Exception as exc:  # noqa: BLE001 - KafkaException, e.g. message too large
                    batch.on_delivery(i, exc, None)  # (on_delivery tells "too large" from the rest)
                    break

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._producer is not None:
            # flush blocks: give it a thread; whatever is still queued after this was spooled
            await loop.run_in_executor(self._io, self._producer.flush, 2.0)
            self._stop.set()
            if self._thread is not None:
                await loop.run_in_executor(None, self._thread.join, 2.0)
            self._producer = None
        self._io.shutdown(wait=False)
