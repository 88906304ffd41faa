"""Kafka sink: CloudEvents Kafka protocol binding, binary mode, key = event id.

URL: `kafka://host:port[,host:port]/topic?acks=all&client=confluent|kafka-python
&security_protocol=PLAINTEXT|SSL|SASL_SSL|SASL_PLAINTEXT&sasl_mechanism=PLAIN|SCRAM-SHA-256|SCRAM-SHA-512
&sasl_username=...&sasl_password=...&ssl_cafile=...&ssl_certfile=...&ssl_keyfile=...
&linger_ms=5&delivery_timeout_ms=30000&compression=none|gzip|snappy|lz4|zstd`

Messages are built by the cloudevents SDK (`cloudevents.core.bindings.kafka.to_binary_event`):
`ce_*` headers, `content-type` header, the raw body as value. The key is the event id, so a
request and its response land on the same partition. Two producer backends sit behind the
sink: confluent-kafka (librdkafka; the default, by far the fastest here) and kafka-python.
"""
from __future__ import annotations

import re
from typing import Literal, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, to_binary_event
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .base import Sink, SinkConfigError

KafkaClient = Literal["confluent", "kafka-python"]
_BROKER = re.compile(r"^[A-Za-z0-9._\-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")


class KafkaSinkConfig(BaseModel):
    """A parsed `kafka://` URL."""

    model_config = ConfigDict(extra="forbid")
    brokers: list[str] = Field(min_length=1)
    topic: str
    client: KafkaClient = "confluent"
    acks: Literal["0", "1", "all", "-1"] = "all"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = Field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    linger_ms: int = Field(default=5, ge=0, le=10_000)
    delivery_timeout_ms: int = Field(default=30_000, ge=1000, description="Give up on a message after this; it is spooled.")
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"

    @field_validator("brokers")
    @classmethod
    def _brokers(cls, value: list[str]) -> list[str]:
        bad = [b for b in value if not _BROKER.match(b)]
        if bad:
            raise ValueError(f"broker address {bad[0]!r} is not host:port")
        return value

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not _TOPIC.match(value):
            raise ValueError(f"topic {value!r} must be 1-249 characters of letters, digits, '.', '_', '-'")
        return value

    @model_validator(mode="after")
    def _sasl(self) -> "KafkaSinkConfig":
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError(f"security_protocol={self.security_protocol} needs sasl_mechanism")
            if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not (
                    self.sasl_username and self.sasl_password):
                raise ValueError(f"sasl_mechanism={self.sasl_mechanism} needs sasl_username and sasl_password")
        elif self.sasl_mechanism or self.sasl_username:
            raise ValueError("sasl_* options need security_protocol=SASL_SSL or SASL_PLAINTEXT")
        return self

    @property
    def bootstrap(self) -> str:
        return ",".join(self.brokers)

    @classmethod
    def from_url(cls, url: str, default_client: KafkaClient = "confluent") -> "KafkaSinkConfig":
        """Parse `kafka://...`; SinkConfigError names the part that is wrong."""
        shown = re.sub(r"(sasl_password=)[^&]*", r"\1***", url)
        parts = urlsplit(url)
        if parts.scheme != "kafka":
            raise SinkConfigError(f"kafka sink URL {shown!r}: scheme must be kafka://")
        if not parts.netloc:
            raise SinkConfigError(f"kafka sink URL {shown!r}: no brokers (kafka://host:port/topic)")
        topic = unquote(parts.path.lstrip("/"))
        if not topic:
            raise SinkConfigError(f"kafka sink URL {shown!r}: no topic in the path (kafka://host:port/topic)")
        query = parse_qsl(parts.query, keep_blank_values=True)
        dupes = {k for k in (k for k, _ in query) if sum(1 for q, _ in query if q == k) > 1}
        if dupes:
            raise SinkConfigError(f"kafka sink URL {shown!r}: option {sorted(dupes)[0]!r} given twice")
        options = {"client": default_client, **dict(query)}
        try:
            return cls(brokers=[b.strip() for b in parts.netloc.split(",")], topic=topic, **options)
        except ValidationError as exc:
            raise SinkConfigError(f"kafka sink URL {shown!r}: {_explain(exc)}") from None


def _explain(exc: ValidationError) -> str:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "URL"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown option"
        out.append(f"option {where!r}: {msg}" if err["loc"] else msg)
    return "; ".join(out)


def _key_by_id(event: BaseCloudEvent) -> str:
    return event.get_id()


def to_messages(events: Sequence[CloudEvent]) -> list[KafkaMessage]:
    """Binary-mode Kafka messages, key = event id, built by the cloudevents SDK."""
    return [to_binary_event(e, key_mapper=_key_by_id) for e in events]


class KafkaSink(Sink):
    """Sends batches to one topic through the configured client backend."""

    def __init__(self, config: KafkaSinkConfig):
        self.config = config
        self.name = f"kafka:{config.topic}"
        if config.client == "confluent":
            from .kafka_confluent import ConfluentBackend as Backend
        else:
            from .kafka_python import KafkaPythonBackend as Backend
        self._backend = Backend(config)

    async def send_batch(self, events: Sequence[CloudEvent]) -> None:
        # the backend builds messages on its own thread: ~10-50 us per event of SDK work
        # that would otherwise sit on the event loop the inference path runs on
        await self._backend.send(events)

    async def close(self) -> None:
        await self._backend.close()
