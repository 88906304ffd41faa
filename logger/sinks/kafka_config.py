"""The Kafka sink's settings: a `kafka://` URL, parsed by the stream contract's one parser.

URL: `kafka://host:port[,host:port]/topic?acks=all&client=confluent|kafka-python
&security_protocol=PLAINTEXT|SSL|SASL_SSL|SASL_PLAINTEXT&sasl_mechanism=PLAIN|SCRAM-SHA-256|SCRAM-SHA-512
&sasl_username=...&sasl_password=...&ssl_cafile=...&ssl_certfile=...&ssl_keyfile=...
&linger_ms=5&delivery_timeout_ms=30000&compression=none|gzip|snappy|lz4|zstd`

The sink is stricter than the parser: every broker names its port, and the path names the
topic (a sink writes somewhere).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infertap.stream.kafka_url import KafkaURL, KafkaURLError
from infertap.stream.security import KafkaSecurity
from infertap.stream.topics import check_topic

from .base import SinkConfigError, shown_url

KafkaClient = Literal["confluent", "kafka-python"]


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
    delivery_timeout_ms: int = Field(
        default=30_000, ge=1000, description="Give up on a message after this; it is spooled."
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"

    @field_validator("brokers")
    @classmethod
    def _brokers(cls, value: list[str]) -> list[str]:
        for broker in value:
            try:
                KafkaURL.parse(f"kafka://{broker}", default_port=None)
            except KafkaURLError as exc:
                raise ValueError(exc.reason) from None
        return value

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        return check_topic(value)

    @model_validator(mode="after")
    def _sasl(self) -> KafkaSinkConfig:
        self.security  # noqa: B018 - ValueError when the TLS/SASL options do not fit together
        return self

    @property
    def security(self) -> KafkaSecurity:
        """The TLS/SASL options (the stream contract's; librdkafka properties: `.librdkafka()`)."""
        return KafkaSecurity(
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username,
            sasl_password=self.sasl_password,
            ssl_cafile=self.ssl_cafile,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
        )

    @property
    def bootstrap(self) -> str:
        return ",".join(self.brokers)

    @classmethod
    def from_url(cls, url: str, default_client: KafkaClient = "confluent") -> KafkaSinkConfig:
        """Parse `kafka://...`; SinkConfigError names the part that is wrong."""
        shown = shown_url(url)
        try:
            parsed = KafkaURL.parse(url, default_port=None)
            topic = parsed.require_topic()
        except KafkaURLError as exc:
            raise SinkConfigError(f"kafka sink URL {shown!r}: {exc.reason}") from None
        options: dict[str, Any] = {"client": default_client, **parsed.options}  # pydantic checks the values
        try:
            return cls(brokers=parsed.brokers, topic=topic, **options)
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
