"""Delivery to Kafka through outages: spool, replay in order, crash recovery, full spool."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

from delivery_fixtures import (
    BINARY_BODY,
    assert_same_event,
    decode,
    delivery,
    free_port,
    make_event,
    outcome,
    read_topic,
    wait_for,
)
from prometheus_client import generate_latest

from infertap.stack.broker import EmbeddedBroker
from tests.conftest import unique

HERE = Path(__file__).resolve().parent


def ids_in_partition_order(records) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.partition].append(r.key.decode())
    return out


async def deliver_all(d, events: list) -> None:
    """Start the delivery, submit `events`, wait until all are through, stop."""
    await d.start()
    for e in events:
        d.submit(e)
    await wait_for(d.idle, what="delivery idle")
    await d.stop()


def test_delivers_to_kafka_with_metrics(broker, tmp_path: Path) -> None:
    topic = unique("deliver")
    d, registry = delivery(tmp_path, [f"kafka://{broker.bootstrap}/{topic}"])
    events = [make_event(i) for i in range(200)]
    asyncio.run(deliver_all(d, events))
    records = read_topic(broker.bootstrap, topic, len(events))
    assert sorted(r.key.decode() for r in records) == [e.get_id() for e in events]  # all, once
    for r in records[:20]:
        assert_same_event(r, events[int(r.key.decode()[3:])])
    sink = f"kafka:{topic}"
    assert outcome(registry, sink, "sent") == 200 and outcome(registry, sink, "dropped") == 0
    text = generate_latest(registry).decode()
    for name in ("infertap_logger_queue_depth", "infertap_logger_spool_bytes", "infertap_logger_sink_latency_seconds"):
        assert name in text


def test_an_event_too_large_for_kafka_is_dropped_and_does_not_hold_up_the_rest(broker, tmp_path: Path) -> None:
    """A 2 MB body is over the producer's 1 MB message limit: it can never be delivered, so it
    is dropped with the metric and a log line instead of blocking everything behind it."""
    topic = unique("too-large")
    d, registry = delivery(tmp_path, [f"kafka://{broker.bootstrap}/{topic}"])
    events = [make_event(i, body=b"x" * 2_000_000 if i == 5 else BINARY_BODY) for i in range(20)]
    asyncio.run(deliver_all(d, events))
    records = read_topic(broker.bootstrap, topic, 19)
    assert sorted(r.key.decode() for r in records) == [e.get_id() for e in events if e.get_id() != "ev-000005"]
    sink = f"kafka:{topic}"
    assert outcome(registry, sink, "sent") == 19 and outcome(registry, sink, "dropped") == 1
    assert outcome(registry, sink, "retried") == 0


def test_broker_down_then_back_delivers_everything_in_order(tmp_path: Path) -> None:
    """Broker stopped: events spool. Restarted on the same port (memory storage: only what
    is delivered after the restart is there): every event spooled or sent after arrives, in order."""
    port = free_port()
    own = EmbeddedBroker(port=port, log_path=tmp_path / "broker.log")
    topic = unique("outage")
    url = f"kafka://{own.bootstrap}/{topic}?delivery_timeout_ms=2000"
    d, registry = delivery(tmp_path, [url])
    during, after = [make_event(i) for i in range(0, 300)], [make_event(i) for i in range(300, 400)]

    async def run() -> None:
        await d.start()
        for e in during:  # broker not running: all of these must spool
            d.submit(e)
        await wait_for(lambda: d.counts()[f"kafka:{topic}"]["spooled"] == len(during), what="spooled")
        assert d.counts()[f"kafka:{topic}"]["sent"] == 0
        assert outcome(registry, f"kafka:{topic}", "retried") > 0
        own.start()
        for e in after:
            d.submit(e)
        await wait_for(d.idle, timeout=120, what="spool drained")
        await d.stop()

    try:
        asyncio.run(run())
        records = read_topic(own.bootstrap, topic, len(during) + len(after))
    finally:
        own.stop()
    ids = [r.key.decode() for r in records]
    assert sorted(ids) == [e.get_id() for e in during + after]  # none lost, none twice
    for part, in_order in ids_in_partition_order(records).items():
        assert in_order == sorted(in_order), f"partition {part} out of order"
    assert outcome(registry, f"kafka:{topic}", "sent") == 400


def test_broker_restart_mid_stream_loses_nothing_after_restart(tmp_path: Path) -> None:
    port = free_port()
    own = EmbeddedBroker(port=port, log_path=tmp_path / "broker.log").start()
    topic = unique("restart")
    d, _ = delivery(tmp_path, [f"kafka://{own.bootstrap}/{topic}?delivery_timeout_ms=2000"])
    before, down, back = ([make_event(i) for i in range(a, b)] for a, b in ((0, 100), (100, 250), (250, 350)))

    async def run() -> None:
        await d.start()
        for e in before:
            d.submit(e)
        await wait_for(d.idle, what="first events sent")
        own.stop()
        for e in down:
            d.submit(e)
            await asyncio.sleep(0.002)
        await wait_for(lambda: d.counts()[f"kafka:{topic}"]["spooled"] > 0, what="spooling")
        own.start()  # same port, empty memory storage
        for e in back:
            d.submit(e)
        await wait_for(d.idle, timeout=120, what="drained after restart")
        await d.stop()

    try:
        asyncio.run(run())
        records = read_topic(own.bootstrap, topic, len(down) + len(back))
    finally:
        own.stop()
    got = {r.key.decode() for r in records}
    assert {e.get_id() for e in down + back} <= got  # what the restarted broker saw: all of it
    counts = d.counts()[f"kafka:{topic}"]
    assert counts["dropped"] == 0 and counts["sent"] >= 350


def test_spool_survives_sigkill_and_is_replayed(tmp_path: Path, spawn) -> None:
    """A child spools events for a stopped broker and is SIGKILLed; a new Delivery on the
    same spool folder delivers every one once the broker is back."""
    own = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log")
    topic = unique("crash")
    url = f"kafka://{own.bootstrap}/{topic}?delivery_timeout_ms=2000"
    n = 250
    child = spawn(
        [sys.executable, str(HERE / "delivery_spool_child.py"), url, str(tmp_path / "spool"), str(n)],
        name="spool-child",
    )
    deadline = time.monotonic() + 120
    while f"SPOOLED {n}" not in child.log.read_text():
        assert child.proc.poll() is None, child.tail()
        assert time.monotonic() < deadline, child.tail()
        time.sleep(0.1)
    child.kill(signal.SIGKILL)
    assert child.proc.returncode == -signal.SIGKILL
    assert any((tmp_path / "spool").rglob("*.seg"))

    d, registry = delivery(tmp_path, [url])
    try:
        own.start()

        async def run() -> None:
            await d.start()
            await wait_for(d.idle, timeout=120, what="replay of the spool")
            await d.stop()

        asyncio.run(run())
        records = read_topic(own.bootstrap, topic, n)
    finally:
        own.stop()
    assert sorted(r.key.decode() for r in records) == [make_event(i).get_id() for i in range(n)]
    for r in records[:10]:
        # bodies byte-exact after the disk; `time` is the child's (a rebuilt event has a new one)
        assert_same_event(r, make_event(int(r.key.decode()[3:])), ignore=("time",))
        assert decode(r).get_time() is not None
    assert not any((tmp_path / "spool").rglob("*.seg"))  # spool emptied after delivery


def test_full_spool_drops_newest_with_metric(tmp_path: Path) -> None:
    dead = f"kafka://127.0.0.1:{free_port()}/{unique('dead')}?delivery_timeout_ms=1000"
    d, registry = delivery(tmp_path, [dead], spool_max_bytes=64 * 1024, spool_segment_bytes=16 * 1024)
    sink = d.workers[0].sink.name

    async def run() -> None:
        await d.start()
        for i in range(200):  # ~1.4 KB records: ~45 fit
            d.submit(make_event(i))
        await wait_for(lambda: d.counts()[sink]["spooled"] + d.counts()[sink]["dropped"] >= 200, what="spooled/dropped")
        await d.stop(flush_timeout=0.5)

    asyncio.run(run())
    counts = d.counts()[sink]
    assert counts["dropped"] > 0 and counts["spooled"] > 0
    assert outcome(registry, sink, "dropped") == counts["dropped"]
    assert (
        registry.get_sample_value(
            "infertap_logger_spool_bytes", {"inference_service": "iris", "component": "predictor", "sink": sink}
        )
        <= 64 * 1024
    )
    spooled_bytes = sum(p.stat().st_size for p in (tmp_path / "spool").rglob("*.seg"))
    assert 0 < spooled_bytes <= 64 * 1024
