"""Delivery lifecycle without Kafka: shutdown flush, replay after restart, thread-safe submit."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from cloudevents.core.formats.json import JSONFormat
from delivery_fixtures import HttpReceiver, delivery, make_event, outcome, wait_for

from infertap.logger import metrics
from infertap.logger.delivery import Delivery, build_delivery
from infertap.sidecar.settings import LoggerSettings


def test_stop_flushes_the_queue_to_the_sink(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    d, _ = delivery(tmp_path, [f"file://{out}"])

    async def run() -> None:
        await d.start()
        for i in range(500):
            d.submit(make_event(i))
        await d.stop(flush_timeout=30)  # right away: stop must send the queue, not lose it

    asyncio.run(run())
    lines = out.read_bytes().splitlines()
    assert [JSONFormat().read(None, line).get_id() for line in lines] == [f"ev-{i:06d}" for i in range(500)]


def test_stop_spools_for_a_dead_sink_and_the_next_run_replays(tmp_path: Path) -> None:
    rx = HttpReceiver()  # not started yet: its port refuses connections
    d1, _ = delivery(tmp_path, [rx.url], http_retries=0, http_timeout_s=0.5)

    async def first_run() -> None:
        await d1.start()
        for i in range(40):
            d1.submit(make_event(i))
        await d1.stop(flush_timeout=2.0)

    asyncio.run(first_run())
    assert d1.counts()[d1.workers[0].sink.name]["spooled"] == 40

    with rx:
        d2, registry = delivery(tmp_path, [rx.url])

        async def second_run() -> None:
            await d2.start()
            d2.submit(make_event(40))
            await wait_for(d2.idle, what="replay")
            await d2.stop()

        asyncio.run(second_run())
    ids = [h["ce-id"] for h, _ in rx.requests]
    # all of them, once (the HTTP sink posts a batch's events concurrently, so arrival order
    # within a batch is the receiver's; order is asserted per partition in the Kafka tests)
    assert sorted(ids) == [f"ev-{i:06d}" for i in range(41)]
    assert outcome(registry, d2.workers[0].sink.name, "sent") == 41


def test_submit_from_other_threads(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    d, _ = delivery(tmp_path, [f"file://{out}"])

    async def run() -> None:
        await d.start()

        def produce(base: int) -> None:
            for i in range(base, base + 200):
                d.submit(make_event(i))

        threads = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(3)]
        for t in threads:
            t.start()
        await asyncio.get_running_loop().run_in_executor(None, lambda: [t.join() for t in threads])
        await wait_for(lambda: d.counts()[f"file:{out.name}"]["sent"] == 600, what="all sent")
        await d.stop()

    asyncio.run(run())
    assert len(out.read_bytes().splitlines()) == 600


def test_submit_never_raises() -> None:
    d = Delivery([], Path("/nonexistent"))
    d.submit(None)  # type: ignore[arg-type]  # garbage in: logged, not raised
    d.submit(make_event(1))


def test_default_metrics_shared_between_deliveries(tmp_path: Path) -> None:
    """Several Delivery objects in one process use one registry without duplicate-registration errors."""
    settings = LoggerSettings(log_url=[f"file://{tmp_path}/a.jsonl"], spool_dir=tmp_path / "s", inference_service="x")
    build_delivery(settings)
    build_delivery(settings)
    text = metrics.render().decode()
    assert "infertap_logger_events_total" in text and 'outcome="spooled"' in text


class _BatchRecorder:
    """A sink that records the size of every batch it is given."""

    name = "recorder"

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def send_batch(self, events) -> None:
        self.batches.append(len(events))

    async def close(self) -> None:
        pass


def _trickle(tmp_path: Path, linger_s: float, batch_max_events: int = 1000, n: int = 60) -> list[int]:
    """`n` events submitted one per millisecond; the batch sizes the sink saw."""
    from infertap.logger.delivery.worker import Limits

    sink = _BatchRecorder()
    d = Delivery(
        [("recorder", sink)],
        tmp_path / f"spool-{linger_s}-{batch_max_events}",
        Limits(batch_linger_s=linger_s, batch_max_events=batch_max_events),
    )

    async def run() -> None:
        await d.start()
        for i in range(n):
            d.submit(make_event(i))
            await asyncio.sleep(0.001)
        await wait_for(d.idle, what="delivery of the trickle")
        await d.stop()

    asyncio.run(run())
    assert sum(sink.batches) == n
    return sink.batches


def test_linger_gathers_a_trickle_into_few_batches(tmp_path: Path) -> None:
    # without linger the sender takes what is there (one or two events) each time
    assert len(_trickle(tmp_path, linger_s=0.0)) > 20
    # with a 2 s linger (far past the trickle's ~60 ms), nothing goes before the batch is
    # full: 60 events in batches of 25 are 25 + 25 + 10, the last one after the linger
    assert _trickle(tmp_path, linger_s=2.0, batch_max_events=25) == [25, 25, 10]


def test_linger_is_cut_short_by_stop(tmp_path: Path) -> None:
    from infertap.logger.delivery.worker import Limits

    sink = _BatchRecorder()
    d = Delivery([("recorder", sink)], tmp_path / "spool", Limits(batch_linger_s=3600.0))

    async def run() -> None:
        await d.start()
        for i in range(5):
            d.submit(make_event(i))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(d.stop(flush_timeout=10.0), timeout=30)  # an hour's linger must not hold it

    asyncio.run(run())
    assert sink.batches == [5]  # sent by the flush, not spooled at the end of it
    assert d.counts()["recorder"]["spooled"] == 0


# --- spool folders -------------------------------------------------------------------------


def _folder(url: str) -> str:
    from infertap.logger.delivery import spool_folder_name
    from infertap.logger.sinks import build_sink

    return spool_folder_name(build_sink(url), url)


def test_the_spool_folder_is_named_by_destination_not_by_options_or_credentials() -> None:
    base = _folder("kafka://k1:9092,k2:9092/events")
    assert _folder("kafka://k1:9092,k2:9092/events?acks=1&client=kafka-python&delivery_timeout_ms=5000") == base
    assert (
        _folder(
            "kafka://k1:9092,k2:9092/events?security_protocol=SSL&ssl_cafile=/ca.pem"
            "&ssl_certfile=/c.pem&ssl_keyfile=/c.key"
        )
        == base
    )
    assert (
        _folder(
            "kafka://K1:9092,K2:9092/events?security_protocol=SASL_SSL&sasl_mechanism=PLAIN"
            "&sasl_username=u&sasl_password=p"
        )
        == base
    )
    assert base.startswith("kafka_events-")
    others = {
        _folder("kafka://k1:9092,k2:9092/other"),
        _folder("kafka://k3:9092/events"),
        _folder("http://collector:8080/events"),
        _folder("http://collector:8080/other"),
    }
    assert base not in others and len(others) == 4
    assert _folder("https://u:secret@collector/events") == _folder("https://collector/events")
    from infertap.logger.sinks import build_sink

    assert build_sink("https://u:secret@collector/events").name == "http:collector"  # metrics label, log lines


def test_a_spool_left_under_the_old_name_is_taken_over(tmp_path: Path) -> None:
    """Events spooled by the version that named folders after the whole URL are not orphaned."""
    from infertap.logger.delivery import _legacy_folder_name
    from infertap.logger.sinks import build_sink

    url = "http://127.0.0.1:9/events?timeout_s=1"
    sink = build_sink(url)
    legacy = tmp_path / _legacy_folder_name(sink, url)
    legacy.mkdir()
    (legacy / "marker").write_text("old spool")
    d = Delivery([(url, sink)], tmp_path)
    folder = d.workers[0].spool_dir
    assert folder.name == _folder(url) != legacy.name
    assert (folder / "marker").read_text() == "old spool" and not legacy.exists()


def test_two_sinks_for_the_same_destination_are_refused_with_a_sentence(tmp_path: Path) -> None:
    import pytest

    from infertap.logger.sinks import SinkConfigError, build_sink

    urls = [
        "kafka://127.0.0.1:9092/t",
        "kafka://127.0.0.1:9092/t?acks=1&sasl_password=pw&sasl_username=u"
        "&sasl_mechanism=PLAIN&security_protocol=SASL_PLAINTEXT",
    ]
    with pytest.raises(SinkConfigError, match="two sinks deliver to the same place") as exc:
        Delivery([(u, build_sink(u)) for u in urls], tmp_path)
    assert "pw" not in str(exc.value) and "sasl_password=***" in str(exc.value)


def test_the_sidecar_exits_2_with_a_sentence_on_a_bad_log_url(tmp_path: Path) -> None:
    import subprocess
    import sys

    for url, says in (
        ("kafka://127.0.0.1:9092/t?acks=5", "option 'acks'"),
        ("s3://bucket/events", "unknown scheme 's3'"),
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "infertap.sidecar",
                "--port",
                "0",
                "--component-port",
                "9",
                "--log-url",
                url,
                "--spool-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
