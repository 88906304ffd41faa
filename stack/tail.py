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


# librdkafka property (what `-X` takes everywhere in infertap) -> kafka-python argument
KAFKA_PYTHON_NAMES = {
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
}


def kafka_python_options(kafka_config: dict[str, str]) -> dict[str, str]:
    """librdkafka TLS/SASL properties as kafka-python consumer arguments; ValueError names the
    ones tail cannot take."""
    unknown = sorted(set(kafka_config) - set(KAFKA_PYTHON_NAMES))
    if unknown:
        raise ValueError(f"tail takes the -X properties {', '.join(KAFKA_PYTHON_NAMES)}; not {', '.join(unknown)}")
    return {KAFKA_PYTHON_NAMES[k]: v for k, v in kafka_config.items()}


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
    from kafka import KafkaConsumer

    from infertap.stack.broker import is_listening
    from infertap.stack.specs.logger_url import KafkaURL

    options = kafka_python_options(kafka_config or {})
    hosts = KafkaURL.parse(f"kafka://{bootstrap}").hosts
    if not any(is_listening(host, port, timeout=2.0) for host, port in hosts):
        raise ConnectionError(f"no broker listens at {bootstrap}")  # fail fast: the client waits 30 s
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group is not None,
        # Short group timeouts: joins take about half the session timeout on the embedded broker.
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=30000,
        **options,
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
