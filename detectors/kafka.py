"""Kafka I/O of a worker, with confluent-kafka (librdkafka).

Chosen over kafka-python because the worker reads whole windows: librdkafka fetched
~100k+ records/s here against ~4.5k/s for kafka-python (benchmarks/detector_throughput.py
measures the worker end to end). Both classes are plain blocking objects: the worker is a
thread loop, never an event loop.

Broker quirks handled here (Tansu, see docs): groups join in about 3 s with
`session.timeout.ms=6000`; the high watermark can lag behind what was actually fetched, so
lag is clamped at zero rather than trusted to be exact. The clients are built by the
stream contract's factories (`infertap.stream.clients`): its group settings, and
librdkafka's lines held to one per message per 30 s while a broker is down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence

from infertap.detectors.decode import Record
from infertap.stream import clients

log = logging.getLogger(__name__)
#: librdkafka's lines (and the clients' errors), a message at most once per 30 s: the stream contract's RepeatFilter
LIBRDKAFKA_LOG = "infertap.detectors.librdkafka"
_client_log = clients.librdkafka_logger(LIBRDKAFKA_LOG)

TopicPartitionKey = tuple[str, int]


class PublishError(RuntimeError):
    """A message was not acknowledged by the broker."""


class Source:
    """A consumer-group member on one topic; offsets committed only when asked."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        on_revoke: Callable[[list[TopicPartitionKey]], None] | None = None,
        on_assign: Callable[[list[TopicPartitionKey]], None] | None = None,
        session_timeout_ms: int = 6000,
        max_poll_interval_ms: int = 60000,
        kafka_config: dict[str, str] | None = None,
    ):
        self.topic = topic
        self._on_revoke, self._on_assign = on_revoke, on_assign
        self._consumer = clients.consumer(
            bootstrap,
            group,
            client_id=f"infertap-detector-{group}",
            log_name=LIBRDKAFKA_LOG,
            store_offsets=False,
            session_timeout_ms=session_timeout_ms,
            max_poll_interval_ms=max_poll_interval_ms,
            kafka_config=kafka_config,  # TLS, SASL
        )
        self._consumer.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)
        self.assignment: list[TopicPartitionKey] = []

    def _assigned(self, _consumer, partitions) -> None:
        self.assignment = [(p.topic, p.partition) for p in partitions]
        log.info("assigned partitions %s", [p for _, p in self.assignment])
        if self._on_assign:
            self._on_assign(self.assignment)

    def _revoked(self, _consumer, partitions) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        log.info("partitions %s taken away", [p for _, p in keys])
        if self._on_revoke:
            self._on_revoke(keys)
        self.assignment = [k for k in self.assignment if k not in keys]

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Up to `max_records` records (fewer after `timeout` seconds); rebalance callbacks run in here."""
        out: list[Record] = []
        append = out.append  # a few µs per record add up at thousands of records a window
        for message in self._consumer.consume(max_records, timeout):
            error = message.error()
            if error is not None:
                if error.code() != -191:  # _PARTITION_EOF is not an error
                    _client_log.warning("consumer error: %s", error)  # held when it repeats
                continue
            _, stamp = message.timestamp()
            headers = message.headers()
            append(
                Record(
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    message.value(),
                    dict(headers) if headers else {},
                    stamp / 1000.0 if stamp and stamp > 0 else 0.0,
                    message.key(),
                )
            )
        return out

    def commit(self, offsets: dict[TopicPartitionKey, int]) -> None:
        """Commit `offsets` (the next offset to read, per partition), synchronously."""
        if not offsets:
            return
        from confluent_kafka import TopicPartition

        self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)

    def lag(self, positions: dict[TopicPartitionKey, int]) -> dict[int, int]:
        """Per assigned partition: high watermark minus position, clamped at zero (broker quirk)."""
        from confluent_kafka import TopicPartition

        out = {}
        for topic, partition in self.assignment:
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=1.0, cached=False
                )
            except Exception as exc:  # noqa: BLE001 - lag is best effort
                log.debug("watermarks of %s/%s: %s", topic, partition, exc)
                continue
            position = positions.get((topic, partition))
            if high is None or high < 0 or position is None:
                continue
            out[partition] = max(0, high - position)
        return out

    def close(self) -> None:
        """Leave the group (a fast hand-over of the partitions to the others)."""
        try:
            self._consumer.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.warning("closing the consumer: %s", exc)


class Sink:
    """Publishes CloudEvent Kafka messages and waits until the broker has them."""

    def __init__(self, bootstrap: str, kafka_config: dict[str, str] | None = None):
        self._producer = clients.producer(
            bootstrap, client_id="infertap-detector", log_name=LIBRDKAFKA_LOG, kafka_config=kafka_config
        )
        self._lock = threading.Lock()

    def publish(self, topic: str, messages: Sequence, timeout: float = 30.0) -> None:
        """Send SDK KafkaMessages to `topic`; PublishError unless every one is acknowledged."""
        if not messages:
            return
        errors: list[str] = []

        def report(err, _msg) -> None:
            if err is not None:
                errors.append(str(err))

        with self._lock:
            for message in messages:
                self._producer.produce(
                    topic,
                    key=message.key,
                    value=message.value,
                    headers=list(message.headers.items()),
                    on_delivery=report,
                )
                self._producer.poll(0)
            left = self._producer.flush(timeout)
        if left or errors:
            raise PublishError(f"{topic}: {left} message(s) unsent, errors: {errors[:3]}")

    def close(self) -> None:
        self._producer.flush(5.0)


def as_offsets(items: Iterable[Record]) -> dict[TopicPartitionKey, int]:
    """Lowest offset per partition among `items`."""
    out: dict[TopicPartitionKey, int] = {}
    for record in items:
        key = (record.topic, record.partition)
        if key not in out or record.offset < out[key]:
            out[key] = record.offset
    return out
