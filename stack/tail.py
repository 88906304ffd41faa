"""`infertap tail TOPIC`: print the CloudEvents on a Kafka topic, one line each.

Records are decoded with the cloudevents SDK's Kafka protocol binding (binary mode, as the
logger writes them; structured mode too). Records that are not CloudEvents are printed as
such, never dropped silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from cloudevents.core.bindings import kafka as ce_kafka

from infertap.stream.clients import kafka_python_consumer
from infertap.stream.security import KAFKA_PYTHON_NAMES, kafka_python_options

__all__ = ["KAFKA_PYTHON_NAMES", "decode", "format_record", "kafka_python_options", "preview", "tail"]

KEY_EXTENSIONS = ("inferenceservicename", "namespace", "component", "endpoint", "statuscode", "subject")
STRUCTURED = "application/cloudevents"


def decode(headers: Iterable[tuple[str, bytes]], key: bytes | None, value: bytes | None):
    """The CloudEvent in a Kafka record, or None when the record is not one."""
    header_map = {name: (raw or b"") for name, raw in (headers or [])}
    message = ce_kafka.KafkaMessage(headers=header_map, key=key, value=value or b"")
    content_type = header_map.get("content-type", b"").decode("latin-1")
    if "ce_specversion" in header_map:
        return ce_kafka.from_binary_event(message)
    if content_type.startswith(STRUCTURED):
        return ce_kafka.from_structured_event(message)
    return None


def preview(body: bytes | None, width: int = 120) -> str:
    """The body as one printable line, cut to `width` characters."""
    if not body:
        return "(empty body)"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"({len(body)} bytes of binary data)"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_record(record: Any, width: int = 120) -> str:
    """One line for a kafka-python ConsumerRecord: time, type, id, key attributes, body."""
    try:
        event = decode(record.headers, record.key, record.value)
    except Exception as exc:  # noqa: BLE001 - a malformed event is shown, not fatal
        return f"p{record.partition}@{record.offset} undecodable CloudEvent ({exc}): {preview(record.value, width)}"
    if event is None:
        key = record.key.decode("utf-8", "replace") if record.key else "-"
        return f"p{record.partition}@{record.offset} not a CloudEvent key={key}: {preview(record.value, width)}"
    attrs = event.get_attributes()
    stamp = attrs.get("time")
    when = stamp.isoformat().replace("+00:00", "Z") if hasattr(stamp, "isoformat") else str(stamp or "-")
    extras = " ".join(f"{k}={attrs[k]}" for k in KEY_EXTENSIONS if attrs.get(k) not in (None, ""))
    # The raw record value, not the decoded data: bodies are shown byte-exact as logged.
    body = record.value if "ce_specversion" in {h for h, _ in (record.headers or [])} else _data_bytes(event.get_data())
    return f"{when} {attrs.get('type')} {attrs.get('id')} {extras} {preview(body, width)}".replace("  ", " ")


def _data_bytes(data: Any) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    import json

    return json.dumps(data, separators=(",", ":")).encode()


def tail(
    topic: str,
    bootstrap: str,
    *,
    from_beginning: bool = False,
    max_events: int | None = None,
    group: str | None = None,
    idle_timeout: float | None = None,
    emit: Callable[[str], None] = print,
    width: int = 120,
    kafka_config: dict[str, str] | None = None,
) -> int:
    """Print records of `topic` until `max_events` were printed or nothing came for
    `idle_timeout` seconds (None: forever). Returns how many records were printed.
    `kafka_config`: TLS/SASL as librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`)."""
    # ValueError for -X properties kafka-python cannot take; ConnectionError at once when no
    # broker listens (the client would wait 30 s); short group timeouts (the embedded broker)
    consumer = kafka_python_consumer(
        bootstrap, topic, group=group, kafka_config=kafka_config, from_beginning=from_beginning
    )
    printed, last = 0, time.monotonic()
    try:
        while max_events is None or printed < max_events:
            batches = consumer.poll(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    emit(format_record(record, width))
                    printed += 1
                    last = time.monotonic()
                    if max_events is not None and printed >= max_events:
                        return printed
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                return printed
        return printed
    finally:
        consumer.close()
