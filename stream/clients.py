"""Kafka clients: the one place consumers and producers are configured and built.

confluent-kafka (librdkafka) for the workers and the logger's sink; kafka-python for the
readers that print (`infertap tail`, `infertap report`). Every factory takes the user's
librdkafka properties (`kafka_config`: TLS, SASL, anything `-X` gives) last, so they win.

librdkafka retries a broker it cannot reach (or log in to) many times a second and logs
each try: about 20 ERROR lines a second while a broker is down. Every client built here
logs through a `librdkafka_logger`, which lets a message through once per 30 s and says
how many like it were held; its error callback logs through the same logger.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .kafka_url import KafkaURL
from .security import kafka_python_options

DEFAULT_SESSION_TIMEOUT_MS = 6000  # groups join in about half of it on the embedded broker
#: How keyed records are spread over partitions: murmur2 of the key, as Java's clients and
#: kafka-python do (librdkafka's own default is CRC32). A feedback record keyed by a
#: prediction's id then lands on the partition number of that prediction's events, whichever
#: client wrote either (the co-partitioning `infertap.stream.feedback` relies on).
PARTITIONER = "murmur2_random"

# what changes between two tries of the same failure: "(after 12ms in state CONNECT, 3 identical error(s) suppressed)"
_VOLATILE = re.compile(r"\d+(?=ms\b)|\d+(?= identical error)")


class RepeatFilter(logging.Filter):
    """Lets a message through once per `every` seconds; the next one says how many were held.

    Messages that differ only in a retry's timing ("after 3ms", "2 identical error(s)
    suppressed") count as the same message. The cause stays visible, the flood does not
    fill the log.
    """

    def __init__(self, every: float = 30.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every, self.clock = every, clock
        self._seen: dict[str, list] = {}  # message -> [when last let through, how many held since]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        text, now = record.getMessage(), self.clock()
        key = _VOLATILE.sub("N", text)
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
            record.msg, record.args = f"{text} ({held} more like this in the last {self.every:g} s)", None
        return True


_setup_lock = threading.Lock()


def librdkafka_logger(name: str, every: float = 30.0) -> logging.Logger:
    """The logger `name`, with a `RepeatFilter` (added once, whoever asks first)."""
    logger = logging.getLogger(name)
    with _setup_lock:
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter(every))
    return logger


def error_callback(logger: logging.Logger, on_error: Callable[[Any], None] | None = None) -> Callable[[Any], None]:
    """A librdkafka `error_cb`: `on_error(err)` when given, and a line on `logger` (held as repeats are)."""

    def report(err: Any) -> None:
        if on_error is not None:
            on_error(err)
        fatal = getattr(err, "fatal", None)
        level = logging.ERROR if callable(fatal) and fatal() else logging.WARNING
        logger.log(level, "kafka client error: %s", err.str() if hasattr(err, "str") else err)

    return report


def consumer_config(
    bootstrap: str,
    group: str,
    *,
    client_id: str,
    logger: logging.Logger,
    kafka_config: Mapping[str, str] | None = None,
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
    max_poll_interval_ms: int = 300_000,
    offset_reset: str = "earliest",
    store_offsets: bool = True,
    properties: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """librdkafka settings of a consumer-group member that commits only when told to."""
    conf: dict[str, object] = {
        "bootstrap.servers": KafkaURL.from_bootstrap(bootstrap).bootstrap,
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": offset_reset,
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(100, session_timeout_ms // 6),
        "max.poll.interval.ms": max_poll_interval_ms,
        "logger": logger,
    }
    if not store_offsets:
        conf["enable.auto.offset.store"] = False
    conf.update(properties or {})
    conf.update(kafka_config or {})  # TLS, SASL, the user's -X: last, so they win
    return conf


def producer_config(
    bootstrap: str,
    *,
    client_id: str,
    logger: logging.Logger,
    kafka_config: Mapping[str, str] | None = None,
    acks: str = "all",
    linger_ms: int = 5,
    message_timeout_ms: int = 30_000,
    properties: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """librdkafka settings of a producer."""
    conf: dict[str, object] = {
        "bootstrap.servers": KafkaURL.from_bootstrap(bootstrap).bootstrap,
        "client.id": client_id,
        "acks": acks,
        "linger.ms": linger_ms,
        "message.timeout.ms": message_timeout_ms,
        "partitioner": PARTITIONER,
        "logger": logger,
    }
    conf.update(properties or {})
    conf.update(kafka_config or {})
    return conf


def consumer(
    bootstrap: str,
    group: str,
    *,
    client_id: str,
    log_name: str,
    on_error: Callable[[Any], None] | None = None,
    **settings: Any,
):
    """A confluent_kafka.Consumer (see `consumer_config` for `settings`); it logs on `log_name`,
    repeats held, and so does its error callback."""
    from confluent_kafka import Consumer

    logger = librdkafka_logger(log_name)
    conf = consumer_config(bootstrap, group, client_id=client_id, logger=logger, **settings)
    conf.setdefault("error_cb", error_callback(logger, on_error))
    return Consumer(conf)


def producer(
    bootstrap: str,
    *,
    client_id: str,
    log_name: str,
    on_error: Callable[[Any], None] | None = None,
    **settings: Any,
):
    """A confluent_kafka.Producer (see `producer_config` for `settings`), logging as `consumer` does."""
    from confluent_kafka import Producer

    logger = librdkafka_logger(log_name)
    conf = producer_config(bootstrap, client_id=client_id, logger=logger, **settings)
    conf.setdefault("error_cb", error_callback(logger, on_error))
    return Producer(conf)


def admin(bootstrap: str, *, client_id: str, log_name: str, kafka_config: Mapping[str, str] | None = None):
    """A confluent_kafka.admin.AdminClient (topics: create, describe), logging as `consumer` does."""
    from confluent_kafka.admin import AdminClient

    logger = librdkafka_logger(log_name)
    conf: dict[str, Any] = {
        "bootstrap.servers": KafkaURL.from_bootstrap(bootstrap).bootstrap,
        "client.id": client_id,
        "logger": logger,
        "error_cb": error_callback(logger),
    }
    conf.update(kafka_config or {})
    return AdminClient(conf)


# kafka-python's loggers that repeat a line per reconnect while a broker is away
KAFKA_PYTHON_LOGGERS = (
    "kafka.net.connection",
    "kafka.net.manager",
    "kafka.cluster",
    "kafka.coordinator",
    "kafka.coordinator.consumer",
    "kafka.consumer.fetcher",
    "kafka.consumer.group",
)


def any_listening(hosts: Iterable[tuple[str, int]], timeout: float = 2.0) -> bool:
    """Whether a TCP connect to one of `hosts` succeeds."""
    for host, port in hosts:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            continue
    return False


def kafka_python_consumer(
    bootstrap: str,
    *topics: str,
    group: str | None = None,
    kafka_config: Mapping[str, str] | None = None,
    from_beginning: bool = True,
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
    max_poll_interval_ms: int = 30_000,
    **arguments: Any,
):
    """A kafka.KafkaConsumer on `topics` (none: assign partitions yourself). `kafka_config`:
    TLS/SASL as librdkafka properties (ValueError for ones kafka-python cannot take).
    ConnectionError at once when no broker listens (the client would wait 30 s)."""
    from kafka import KafkaConsumer

    options = kafka_python_options(kafka_config or {})
    url = KafkaURL.from_bootstrap(bootstrap)
    if not any_listening(url.hosts):
        raise ConnectionError(f"no broker listens at {bootstrap}")
    for name in KAFKA_PYTHON_LOGGERS:
        librdkafka_logger(name)
    return KafkaConsumer(
        *topics,
        bootstrap_servers=url.brokers,
        group_id=group,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group is not None,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(100, session_timeout_ms // 6),
        max_poll_interval_ms=max_poll_interval_ms,
        **{**options, **arguments},
    )
