"""confluent-kafka (librdkafka) backend of the Kafka sink.

librdkafka's producer is thread based: `produce()` only enqueues, delivery reports arrive
through callbacks run by `poll()`. Messages are built and enqueued on a thread of the sink
(the SDK's per-event work stays off the event loop), a daemon thread polls, and the
callbacks count the batch down and resolve one asyncio future per batch with
`call_soon_threadsafe`: the event loop never blocks on Kafka.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Sequence

from cloudevents.core.v1.event import CloudEvent

from .base import SinkError
from .kafka import KafkaSinkConfig, to_record

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

log = logging.getLogger(__name__)


class RepeatFilter(logging.Filter):
    """Lets a message through once per `every` seconds; the next one says how many were held.

    librdkafka retries a broker it cannot reach or log in to many times a second and logs
    each try (about 20 lines/s for a wrong SASL password): the cause stays visible, the flood
    does not fill the sidecar's log.
    """

    def __init__(self, every: float = 30.0, clock=time.monotonic):
        super().__init__()
        self.every, self.clock = every, clock
        self._seen: dict[str, list] = {}  # message -> [when last let through, how many held since]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = record.getMessage(), self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.every:
                seen[1] += 1
                return False
            held = seen[1] if seen else 0
            if len(self._seen) >= 256:  # messages with changing text: keep the table small
                self._seen.clear()
            self._seen[key] = [now, 0]
        if held:
            record.msg, record.args = f"{key} ({held} more like this in the last {self.every:g} s)", None
        return True


_LIBRDKAFKA_LOG = logging.getLogger("logger.sinks.librdkafka")
_LIBRDKAFKA_LOG.addFilter(RepeatFilter())


def producer_config(config: KafkaSinkConfig) -> dict[str, object]:
    """librdkafka settings for a sink URL."""
    conf: dict[str, object] = {
        "bootstrap.servers": config.bootstrap,
        "client.id": "infertap-logger",
        "acks": config.acks,
        "linger.ms": config.linger_ms,
        "message.timeout.ms": config.delivery_timeout_ms,
        "compression.type": config.compression,
        "security.protocol": config.security_protocol,
        # one batch is in flight per sink, so the local queue never holds more than that
        "queue.buffering.max.messages": 1_000_000,
        "logger": _LIBRDKAFKA_LOG,
    }
    conf.update(security_config(config))
    return conf


def security_config(config: KafkaSinkConfig) -> dict[str, str]:
    """The URL's TLS/SASL options as librdkafka properties (what `infertap up` hands the
    consumers of the same topic: detector workers, the explainer stream)."""
    optional = {"security.protocol": config.security_protocol if config.security_protocol != "PLAINTEXT" else None,
                "sasl.mechanism": config.sasl_mechanism, "sasl.username": config.sasl_username,
                "sasl.password": config.sasl_password, "ssl.ca.location": config.ssl_cafile,
                "ssl.certificate.location": config.ssl_certfile, "ssl.key.location": config.ssl_keyfile}
    return {k: str(v) for k, v in optional.items() if v is not None}


class _Batch:
    """Counts delivery reports of one batch down to zero, then resolves its future."""

    def __init__(self, n: int, future: asyncio.Future, loop: asyncio.AbstractEventLoop):
        self.left, self.future, self.loop = n, future, loop
        self.failed: list[int] = []
        self.first_error: str | None = None
        self._lock = threading.Lock()

    def on_delivery(self, index: int, err: object, _msg: object) -> None:  # on the poll thread
        with self._lock:
            if err is not None:
                self.failed.append(index)
                self.first_error = self.first_error or str(err)
            self.left -= 1
            done = self.left == 0
        if done:
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


# produce() holds the GIL: a batch of a few hundred events would keep the proxy's event loop
# from answering for a millisecond or more. A yield every few events bounds that wait.
_YIELD_EVERY = 4


class ConfluentBackend:
    """Produces with confluent_kafka.Producer; one produce thread and one poll thread per sink."""

    def __init__(self, config: KafkaSinkConfig):
        self.config = config
        self._producer = None
        # the last broker-level error (TLS handshake, SASL, connection): a timed-out batch
        # names it, else all it says is "Local: Message timed out"
        self._broker_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-produce-{config.topic}")

    def _ensure(self):
        if self._producer is None:
            import confluent_kafka

            try:
                self._producer = confluent_kafka.Producer({**producer_config(self.config),
                                                           "error_cb": self._on_error})
            except confluent_kafka.KafkaException as exc:
                raise SinkError(f"kafka producer: {exc}") from exc
            self._thread = threading.Thread(target=self._poll, name=f"kafka-poll-{self.config.topic}", daemon=True)
            self._thread.start()
        return self._producer

    def _on_error(self, err: KafkaError) -> None:  # on the poll thread; librdkafka logs it too
        self._broker_error = err.str()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, events: Sequence[CloudEvent]) -> None:
        if not events:
            return
        loop = asyncio.get_running_loop()
        batch = _Batch(len(events), loop.create_future(), loop)
        await loop.run_in_executor(self._io, self._produce, events, batch)
        await batch.future
        if not batch.failed:
            self._broker_error = None
            return
        why = batch.first_error
        if self._broker_error and "timed out" in str(why):
            why = f"{why}; last broker error: {self._broker_error}"
        raise SinkError(f"kafka {self.config.topic}: {len(batch.failed)} of {len(events)} not delivered: {why}",
                        failed=sorted(batch.failed))

    def _produce(self, events: Sequence[CloudEvent], batch: _Batch) -> None:
        producer, topic = self._ensure(), self.config.topic
        report = batch.on_delivery
        for i, event in enumerate(events):
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                time.sleep(0)  # let the event loop's thread have the GIL (see _YIELD_EVERY)
            key, value, headers = to_record(event)
            while True:
                try:
                    producer.produce(topic, value, key, on_delivery=partial(report, i), headers=headers)
                    break
                except BufferError:  # local queue full: the poll thread drains it
                    time.sleep(0.005)
                except Exception as exc:  # noqa: BLE001 - KafkaException, e.g. message too large
                    batch.on_delivery(i, exc, None)
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
