"""TLS and SASL for Kafka clients: the `kafka://` URL's options, as librdkafka properties.

A logger URL says `?security_protocol=SASL_SSL&sasl_mechanism=PLAIN&sasl_username=...`;
every reader of the same topic (detector workers, the explainer stream, `infertap tail`)
takes librdkafka properties (`-X security.protocol=SASL_SSL ...`). `KafkaSecurity` is the
one translation between the two, and to kafka-python's arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
_NEEDS_PASSWORD = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

#: URL option -> librdkafka property
LIBRDKAFKA_NAMES = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_username": "sasl.username",
    "sasl_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
}
#: librdkafka property -> kafka-python client argument
KAFKA_PYTHON_NAMES = {
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
}


@dataclass(frozen=True)
class KafkaSecurity:
    """The TLS/SASL options of a `kafka://` URL, checked (ValueError names the option, never a secret)."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.sasl_mechanism is not None and self.sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(f"sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}")
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError(f"security_protocol={self.security_protocol} needs sasl_mechanism")
            if self.sasl_mechanism in _NEEDS_PASSWORD and not (self.sasl_username and self.sasl_password):
                raise ValueError(f"sasl_mechanism={self.sasl_mechanism} needs sasl_username and sasl_password")
        elif self.sasl_mechanism or self.sasl_username:
            raise ValueError("sasl_* options need security_protocol=SASL_SSL or SASL_PLAINTEXT")

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> KafkaSecurity:
        """From a URL's options (other options, `acks`, `client`..., are not this class's business)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names and v not in (None, "")})

    def librdkafka(self) -> dict[str, str]:
        """librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`); PLAINTEXT, the default, is left out."""
        values = {name: getattr(self, name) for name in LIBRDKAFKA_NAMES}
        if values["security_protocol"] == "PLAINTEXT":
            values["security_protocol"] = None
        return {LIBRDKAFKA_NAMES[k]: str(v) for k, v in values.items() if v is not None}

    def kafka_python(self) -> dict[str, str]:
        """kafka-python client arguments (`security_protocol`, `sasl_plain_username`, `ssl_cafile`...)."""
        return kafka_python_options(self.librdkafka())


def kafka_python_options(properties: Mapping[str, str]) -> dict[str, str]:
    """librdkafka TLS/SASL properties as kafka-python arguments; ValueError names the ones
    kafka-python cannot take."""
    unknown = sorted(set(properties) - set(KAFKA_PYTHON_NAMES))
    if unknown:
        raise ValueError(
            f"a kafka-python client takes the properties {', '.join(KAFKA_PYTHON_NAMES)}; not {', '.join(unknown)}"
        )
    return {KAFKA_PYTHON_NAMES[k]: v for k, v in properties.items()}
