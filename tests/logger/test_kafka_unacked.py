"""Issue 14: events handed to the Kafka client and not yet acknowledged are counted, and the age
of the oldest of them grows while the broker does not answer: an outage shows within seconds
(`infertap_logger_unacked_events`, `infertap_logger_oldest_unacked_age_seconds`)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from infertap.logger.events import EventBuilder
from infertap.logger.metrics import DeliveryMetrics
from infertap.logger.sinks import SinkError
from infertap.logger.sinks.kafka import KafkaSink, KafkaSinkConfig
from tests.conftest import free_port, unique

pytestmark = pytest.mark.timeout(120)


def _events(n: int, age_s: float = 0.0):
    builder = EventBuilder(source="http://t/", inference_service="iris")
    when = datetime.now(UTC) - timedelta(seconds=age_s)
    return [builder.request(f"id-{i}", b"{}", "application/json", "{}", when) for i in range(n)]


def _gauges(registry: CollectorRegistry, sink: str) -> tuple[float | None, float | None]:
    labels = {"inference_service": "iris", "component": "predictor", "sink": sink}
    return (
        registry.get_sample_value("infertap_logger_unacked_events", labels),
        registry.get_sample_value("infertap_logger_oldest_unacked_age_seconds", labels),
    )


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_a_dead_broker_shows_in_the_gauges_within_seconds(client):
    port = free_port()  # nothing listens: the client holds the batch until its delivery timeout
    sink = KafkaSink(KafkaSinkConfig.from_url(f"kafka://127.0.0.1:{port}/t?client={client}&delivery_timeout_ms=6000"))
    registry = CollectorRegistry()
    DeliveryMetrics(registry).for_sink("iris", "predictor", sink.name, sink)
    assert _gauges(registry, sink.name) == (0.0, 0.0)

    async def go():
        task = asyncio.create_task(sink.send_batch(_events(5, age_s=1.0)))
        await asyncio.sleep(1.5)
        first = _gauges(registry, sink.name)
        await asyncio.sleep(1.0)
        second = _gauges(registry, sink.name)
        with pytest.raises(SinkError):
            await task
        await sink.close()
        return first, second

    first, second = asyncio.run(go())
    assert first[0] == 5 and first[1] is not None and first[1] >= 2.0  # 1 s old when handed, 1.5 s since
    assert second[1] is not None and second[1] >= first[1] + 0.9  # a second per second
    assert _gauges(registry, sink.name) == (0.0, 0.0)  # failed: handed back to the delivery (spooled)


def test_acknowledged_batches_leave_nothing_unacknowledged(broker):
    sink = KafkaSink(KafkaSinkConfig.from_url(f"kafka://{broker.bootstrap}/{unique('unacked')}"))
    registry = CollectorRegistry()
    DeliveryMetrics(registry).for_sink("iris", "predictor", sink.name, sink)

    async def go():
        started = time.monotonic()
        await sink.send_batch(_events(20))
        await sink.close()
        return time.monotonic() - started

    asyncio.run(go())
    assert _gauges(registry, sink.name) == (0.0, 0.0)
