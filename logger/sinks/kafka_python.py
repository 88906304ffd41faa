"""kafka-python backend of the Kafka sink: its blocking producer runs in a thread of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from cloudevents.core.v1.event import CloudEvent

from .base import SinkError
from .kafka_config import KafkaSinkConfig
from .kafka_records import to_records

if TYPE_CHECKING:
    from kafka import KafkaProducer
    from kafka.producer.future import FutureRecordMetadata


def producer_config(config: KafkaSinkConfig) -> dict[str, object]:
    """kafka-python KafkaProducer arguments for a sink URL."""
    conf: dict[str, object] = {
        "bootstrap_servers": config.brokers,
        "client_id": "infertap-logger",
        "acks": "all" if config.acks in ("all", "-1") else int(config.acks),
        "linger_ms": config.linger_ms,
        "delivery_timeout_ms": config.delivery_timeout_ms,
        # kafka-python insists on delivery_timeout_ms > linger_ms + request_timeout_ms
        "request_timeout_ms": max(500, min(30_000, config.delivery_timeout_ms - config.linger_ms - 1)),
        "max_block_ms": config.delivery_timeout_ms,
        # the constructor's first connection (TLS, SASL, ApiVersions) waits 30 s otherwise:
        # a wrong CA or password would hold the batch that long before it spools
        "bootstrap_timeout_ms": config.delivery_timeout_ms,
        "security_protocol": config.security_protocol,
        "compression_type": None if config.compression == "none" else config.compression,
        "batch_size": 256 * 1024,
    }
    conf.update(config.security.kafka_python())  # TLS/SASL: the stream contract's translation
    return conf


class KafkaPythonBackend:
    """Produces with kafka.KafkaProducer; every call runs on one worker thread."""

    def __init__(self, config: KafkaSinkConfig):
        self.config = config
        self._producer: KafkaProducer | None = None
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-python-{config.topic}")

    async def send(self, events: Sequence[CloudEvent]) -> None:
        if events:
            await asyncio.get_running_loop().run_in_executor(self._io, self._send, events)

    def _send(self, events: Sequence[CloudEvent]) -> None:
        from kafka.errors import KafkaError, MessageSizeTooLargeError

        messages = to_records(events)
        try:
            if self._producer is None:
                from kafka import KafkaProducer

                self._producer = KafkaProducer(**producer_config(self.config))
        except KafkaError as exc:
            raise SinkError(f"kafka {self.config.topic}: cannot connect: {exc!r}") from exc
        futures: list[tuple[int, FutureRecordMetadata]] = []
        failed: list[int] = []
        rejected: list[int] = []
        error: BaseException | str | None = None
        for i, (key, value, headers) in enumerate(messages):
            try:
                futures.append(
                    (i, self._producer.send(self.config.topic, value=value, key=key.encode(), headers=headers))
                )
            except MessageSizeTooLargeError as exc:  # can never be sent: refused for good, the rest goes on
                rejected.append(i)
                error = exc
            except KafkaError as exc:
                failed.extend(range(i, len(messages)))
                error = exc
                break
        try:
            self._producer.flush(timeout=self.config.delivery_timeout_ms / 1000)
        except KafkaError as exc:  # timed out: the futures below tell which ones failed
            error = exc
        for i, fut in futures:
            if not fut.is_done or fut.failed():
                (rejected if isinstance(fut.exception, MessageSizeTooLargeError) else failed).append(i)
                error = error or fut.exception or "not acknowledged in time"
        if failed or rejected:
            raise SinkError(
                f"kafka {self.config.topic}: {len(failed) + len(rejected)} of {len(messages)} not delivered: {error!r}",
                failed=sorted(failed),
                rejected=sorted(rejected),
            )

    async def close(self) -> None:
        def _close() -> None:
            if self._producer is not None:
                self._producer.close(timeout=2)
                self._producer = None

        await asyncio.get_running_loop().run_in_executor(self._io, _close)
        self._io.shutdown(wait=False)
