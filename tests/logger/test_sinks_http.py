"""HTTP sink against a real HTTP receiver: binary-mode CloudEvents, retries, refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cloudevents.core.bindings import http as ce_http
from delivery_fixtures import BINARY_BODY, HttpReceiver, delivery, free_port, make_event, outcome, wait_for

from infertap.logger.sinks import SinkError, build_sink

pytestmark = pytest.mark.fast  # starts no process (make test-fast)


def test_http_sink_posts_binary_mode_events() -> None:
    events = [make_event(i, response=True) for i in range(20)]
    with HttpReceiver() as rx:
        sink = build_sink(rx.url)

        async def send() -> None:
            try:
                await sink.send_batch(events)
            finally:
                await sink.close()

        asyncio.run(send())
    assert len(rx.requests) == 20
    headers, body = next(r for r in rx.requests if r[0]["ce-id"] == "ev-000003")
    assert body == BINARY_BODY  # byte-exact, not base64, not JSON-wrapped
    assert headers["content-type"] == "application/octet-stream"
    assert headers["ce-type"] == "org.kubeflow.serving.inference.response"
    assert headers["ce-inferenceservicename"] == "iris" and headers["ce-statuscode"] == "200"
    got = ce_http.from_binary_event(ce_http.HTTPMessage(headers=headers, body=body))
    assert got.get_id() == "ev-000003" and got.get_source() == "http://localhost:9081/"
    assert got.get_extension("metadata") == '{"x-user":["a"]}'


def test_http_sink_retries_500_then_succeeds() -> None:
    with HttpReceiver() as rx:
        rx.fail_first["ev-000001"] = 2
        sink = build_sink(rx.url, http_options={"retries": 3, "backoff_s": 0.05})

        async def send() -> None:
            try:
                await sink.send_batch([make_event(0), make_event(1)])
            finally:
                await sink.close()

        asyncio.run(send())
    assert rx.attempts["ev-000001"] == 3 and rx.attempts["ev-000000"] == 1
    assert sorted(h["ce-id"] for h, _ in rx.requests) == ["ev-000000", "ev-000001"]


def test_http_sink_reports_failed_and_rejected_events() -> None:
    with HttpReceiver() as rx:
        rx.fail_first["ev-000001"] = 99
        rx.status_for["ev-000002"] = 400
        sink = build_sink(rx.url, http_options={"retries": 1, "backoff_s": 0.01})

        async def send() -> SinkError:
            try:
                await sink.send_batch([make_event(0), make_event(1), make_event(2)])
            except SinkError as exc:
                return exc
            finally:
                await sink.close()
            raise AssertionError("no SinkError")

        err = asyncio.run(send())
    assert err.failed == [1] and err.rejected == [2]
    assert rx.attempts["ev-000002"] == 1  # a 400 is final: not retried


def test_delivery_through_http_outage_and_refusals(tmp_path: Path) -> None:
    """Receiver 500s for a while: events spool, then all arrive; a 400 is dropped with a metric."""
    with HttpReceiver() as rx:
        for i in range(30):
            rx.fail_first[f"ev-{i:06d}"] = 4  # more than the sink's own retries: the delivery spools
        rx.status_for["ev-000040"] = 400
        d, registry = delivery(tmp_path, [rx.url], http_retries=1)
        sink = d.workers[0].sink.name

        async def run() -> None:
            await d.start()
            for i in range(50):
                d.submit(make_event(i))
            await wait_for(d.idle, timeout=120, what="delivered")
            await d.stop()

        asyncio.run(run())
    got = [h["ce-id"] for h, _ in rx.requests]
    assert sorted(set(got)) == [f"ev-{i:06d}" for i in range(50) if i != 40]
    assert outcome(registry, sink, "spooled") > 0 and outcome(registry, sink, "retried") > 0
    assert outcome(registry, sink, "dropped") == 1


def test_dead_http_sink_does_not_hold_back_another_sink(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    dead = f"http://127.0.0.1:{free_port()}/"
    d, registry = delivery(tmp_path, [dead, f"file://{out}"], http_retries=0, http_timeout_s=0.5)

    async def run() -> None:
        await d.start()
        for i in range(100):
            d.submit(make_event(i))
        await wait_for(lambda: d.counts()[f"file:{out.name}"]["sent"] == 100, what="file sink got all")
        assert d.counts()[d.workers[0].sink.name]["sent"] == 0
        await d.stop(flush_timeout=1.0)

    asyncio.run(run())
    assert len(out.read_bytes().splitlines()) == 100
    dead_counts = d.counts()[d.workers[0].sink.name]
    assert dead_counts["spooled"] == 100 and dead_counts["dropped"] == 0
    folders = sorted(p.name for p in (tmp_path / "spool").iterdir())
    assert len(folders) == 2  # a spool folder per sink
