"""The client factories: group settings, the user's properties last, and librdkafka's retry storm held.

Against a closed port librdkafka logs a failed connect about 20 times a second (a detector
logged 2,258 ERROR lines while a broker was down, issue 19); every client the factories
build, and the detectors' consumer and producer, let one line per message through per 30 s.
"""

from __future__ import annotations

import logging
import time

import pytest

from infertap.stream import clients
from infertap.stream.clients import RepeatFilter
from tests.conftest import free_port, unique

pytestmark = pytest.mark.fast  # no broker, no server child


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _capture(name: str) -> Lines:
    lines = Lines()
    logger = logging.getLogger(name)
    logger.addHandler(lines)
    logger.setLevel(logging.DEBUG)
    return lines


def test_repeats_differing_only_in_retry_timing_are_one_message() -> None:
    now = [0.0]
    f = RepeatFilter(every=30.0, clock=lambda: now[0])

    def record(ms: int, n: int) -> logging.LogRecord:
        text = "%s [%s] %s"
        args = (
            "FAIL",
            "rdkafka#consumer-1",
            f"Connect to ipv4#127.0.0.1:1 failed (after {ms}ms in state CONNECT, {n} identical error(s) suppressed)",
        )
        return logging.LogRecord("x", logging.ERROR, __file__, 1, text, args, None)

    passed = [f.filter(record(i % 7, i)) for i in range(50)]
    assert passed == [True] + [False] * 49
    assert f.filter(logging.LogRecord("x", logging.ERROR, __file__, 1, "another message", None, None))
    now[0] = 30.5
    last = record(3, 9)
    assert f.filter(last) and last.getMessage().endswith("(49 more like this in the last 30 s)")


def test_consumer_config_group_settings_and_the_users_properties_win() -> None:
    logger = clients.librdkafka_logger(unique("cfg"))
    conf = clients.consumer_config(
        "[::1]:1,b",
        "g",
        client_id="c",
        logger=logger,
        session_timeout_ms=6000,
        store_offsets=False,
        kafka_config={"security.protocol": "SSL", "auto.offset.reset": "latest"},
    )
    assert conf["bootstrap.servers"] == "[::1]:1,b:9092" and conf["group.id"] == "g"
    assert conf["enable.auto.commit"] is False and conf["enable.auto.offset.store"] is False
    assert conf["heartbeat.interval.ms"] == 1000 and conf["auto.offset.reset"] == "latest"
    assert conf["security.protocol"] == "SSL" and conf["logger"] is logger
    assert sum(isinstance(f, RepeatFilter) for f in clients.librdkafka_logger(logger.name).filters) == 1
    prod = clients.producer_config("h:1", client_id="p", logger=logger, kafka_config={"acks": "1"})
    assert prod["acks"] == "1" and prod["linger.ms"] == 5


def test_a_consumer_and_a_producer_against_a_closed_port_log_a_few_lines_not_a_flood() -> None:
    name = unique("infertap.test.librdkafka")
    lines = _capture(name)
    errors: list = []
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens
    consumer = clients.consumer(bootstrap, unique("g"), client_id="t", log_name=name, on_error=errors.append)
    producer = clients.producer(bootstrap, client_id="t", log_name=name)
    consumer.subscribe(["t"])
    producer.produce("t", b"x")
    started = time.monotonic()
    try:
        while time.monotonic() - started < 4.0:
            consumer.consume(10, 0.2)
            producer.poll(0.05)
    finally:
        consumer.close()
        producer.flush(0)
    assert len(errors) >= 20, errors  # librdkafka kept failing, ~20 tries a second
    shown = [r.getMessage() for r in lines.records if r.levelno >= logging.WARNING]
    assert shown, "the cause must stay visible"
    assert any("Connection refused" in m or "brokers are down" in m for m in shown), shown
    assert len(shown) <= 8, shown  # unfiltered: ~80 ERROR lines in these 4 s


def test_the_detectors_consumer_is_held_too() -> None:
    from infertap.detectors.kafka import LIBRDKAFKA_LOG, Sink, Source

    lines = _capture(LIBRDKAFKA_LOG)
    bootstrap = f"127.0.0.1:{free_port()}"
    source = Source(bootstrap, "t", unique("g"))
    sink = Sink(bootstrap)
    started = time.monotonic()
    try:
        while time.monotonic() - started < 3.0:
            source.poll(10, 0.2)
    finally:
        source.close()
    shown = [r for r in lines.records if r.levelno >= logging.WARNING]
    assert 1 <= len(shown) <= 8, [r.getMessage() for r in shown]
    del sink
