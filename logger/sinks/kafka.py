"""Kafka sink: CloudEvents Kafka protocol binding, binary mode, key = event id.

URL: `kafka://host:port[,host:port]/topic?acks=all&client=confluent|kafka-python&...`
(every option: `kafka_config.py`; parsed by the stream contract's one `kafka://` parser).
Records are built in `kafka_records.py` (the cloudevents SDK's binding, and a cheaper path
to the same bytes). Two producer backends sit behind the sink: confluent-kafka (librdkafka;
the default, by far the fastest here) and kafka-python. This module imports them; they
import the config and the records, never this module (no import cycle).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from cloudevents.core.v1.event import CloudEvent

from .base import Sink
from .kafka_config import KafkaClient, KafkaSinkConfig
from .kafka_records import _FAST_LAYOUT as _FAST_LAYOUT  # tests check the fast path is taken
from .kafka_records import Record, binary_record, sdk_record, to_messages, to_record, to_records

__all__ = [
    "KafkaClient",
    "KafkaSink",
    "KafkaSinkConfig",
    "Record",
    "binary_record",
    "sdk_record",
    "to_messages",
    "to_record",
    "to_records",
]


class _Backend(Protocol):
    """What the sink needs of a producer backend (`ConfluentBackend`, `KafkaPythonBackend`)."""

    async def send(self, events: Sequence[CloudEvent]) -> None: ...

    async def close(self) -> None: ...


class KafkaSink(Sink):
    """Sends batches to one topic through the configured client backend."""

    def __init__(self, config: KafkaSinkConfig):
        self.config = config
        self.name = f"kafka:{config.topic}"
        self._backend: _Backend
        if config.client == "confluent":
            from .kafka_confluent import ConfluentBackend

            self._backend = ConfluentBackend(config)
        else:
            from .kafka_python import KafkaPythonBackend

            self._backend = KafkaPythonBackend(config)
        # what the client holds unacknowledged (one batch in flight per sink: stop-and-wait)
        self._unacked = 0
        self._oldest: float | None = None  # epoch seconds of the oldest event handed over

    def unacked(self) -> tuple[int, float]:
        """(events handed to the client and not yet acknowledged, age in seconds of the
        oldest of them: since its request or response happened, 0 when none). Read by the
        metrics at scrape time (`infertap_logger_unacked_events`,
        `infertap_logger_oldest_unacked_age_seconds`), so a broker that stops answering
        shows within a scrape: the age grows by a second per second."""
        oldest = self._oldest
        return self._unacked, (max(0.0, time.time() - oldest) if oldest is not None else 0.0)

    async def send_batch(self, events: Sequence[CloudEvent]) -> None:
        # the backend builds messages on its own thread: ~10-50 us per event of SDK work
        # that would otherwise sit on the event loop the inference path runs on
        if not events:
            return
        handed = time.time()
        when = events[0].get_attributes().get("time")  # batches keep order: the first is the oldest
        self._oldest = min(handed, when.timestamp()) if isinstance(when, datetime) else handed
        self._unacked = len(events)
        try:
            await self._backend.send(events)
        finally:  # acknowledged, or failed and handed back to the delivery (spooled): no longer the client's
            self._unacked, self._oldest = 0, None

    async def close(self) -> None:
        await self._backend.close()
