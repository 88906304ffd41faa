"""The one `kafka://` URL parser: `kafka://host:port[,host:port]/[topic][?options]`.

- brokers: comma-separated `host:port`; IPv6 in brackets (`[::1]:9092`); a missing port
  is 9092, unless the caller asks for explicit ports (`default_port=None`, the sink);
- topic: optional here (`infertap up` fills in `<isvc>-events`); `require_topic()` is
  what a writer calls; percent-decoded and checked against Kafka's rules when present;
- options: the query (`acks=all&client=...&security_protocol=...`), each at most once;
  what they mean is the reader's business, except TLS/SASL: `security` (`KafkaSecurity`).

Errors are `KafkaURLError` (a ValueError) with a sentence; they show the URL without its
query, so a `sasl_password` never lands in a message or a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from .security import KafkaSecurity
from .topics import check_topic

DEFAULT_KAFKA_PORT = 9092
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_HOSTNAME = re.compile(r"^[A-Za-z0-9._\-]+$")
_IPV6 = re.compile(r"^[0-9a-fA-F:.]+$")


class KafkaURLError(ValueError):
    """A malformed kafka:// URL; `reason` says what is wrong without naming the URL."""

    def __init__(self, reason: str, url: str):
        self.reason, self.url = reason, shown(url)
        super().__init__(f"kafka URL {reason} in {self.url!r}")


def shown(url: str) -> str:
    """The URL as it may be printed: no query (options may carry secrets), no user info."""
    base, query = url.partition("?")[::2]
    scheme, sep, rest = base.partition("://")
    if sep and "@" in rest.partition("/")[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}" + ("?..." if query else "")


@dataclass(frozen=True)
class KafkaURL:
    """`kafka://host:port[,host:port]/topic[?options]`, split into its parts."""

    hosts: tuple[tuple[str, int], ...]
    topic: str | None
    query: str = ""

    @classmethod
    def parse(cls, url: str, default_port: int | None = DEFAULT_KAFKA_PORT) -> KafkaURL:
        """Parse a kafka:// URL; KafkaURLError with a sentence when it is malformed.

        `default_port`: the port of a broker named without one; None: every broker must name its port.
        """
        if url[:8].lower() != "kafka://":
            raise KafkaURLError("must start with kafka://", url)
        rest, _, query = url[8:].partition("?")
        netloc, _, path = rest.partition("/")
        items = [item.strip() for item in netloc.split(",") if item.strip()]
        if not items:
            raise KafkaURLError("names no broker (expected kafka://host:port/topic)", url)
        hosts = tuple(_host_port(item, url, default_port) for item in items)
        topic = unquote(path.strip("/")) or None
        if topic is not None:
            try:
                check_topic(topic)
            except ValueError as exc:
                raise KafkaURLError(str(exc), url) from None
        pairs = parse_qsl(query, keep_blank_values=True)
        names = [k for k, _ in pairs]
        twice = sorted({k for k in names if names.count(k) > 1})
        if twice:
            raise KafkaURLError(f"gives option {twice[0]!r} twice", url)
        return cls(hosts=hosts, topic=topic, query=query)

    @classmethod
    def from_bootstrap(cls, bootstrap: str) -> KafkaURL:
        """A bare bootstrap list (`host:port,host:port`, or a whole kafka:// URL), no topic."""
        return cls.parse(bootstrap if bootstrap[:8].lower() == "kafka://" else f"kafka://{bootstrap}")

    @property
    def brokers(self) -> list[str]:
        """`host:port` per broker (IPv6 in brackets), what librdkafka and kafka-python take."""
        return [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts]

    @property
    def bootstrap(self) -> str:
        """librdkafka's `bootstrap.servers`."""
        return ",".join(self.brokers)

    @property
    def options(self) -> dict[str, str]:
        """The query's options, decoded (each one appears once: `parse` checks)."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    @property
    def security(self) -> KafkaSecurity:
        """The TLS/SASL options; ValueError when they do not fit together."""
        return KafkaSecurity.from_options(self.options)

    @property
    def is_local(self) -> bool:
        """Every broker named is this machine."""
        return all(host in LOCAL_HOSTS for host, _ in self.hosts)

    def require_topic(self) -> str:
        """The topic, for a writer that needs one; KafkaURLError when the path names none."""
        if not self.topic:
            raise KafkaURLError("names no topic in the path (kafka://host:port/topic)", str(self))
        return self.topic

    def with_topic(self, topic: str) -> KafkaURL:
        return KafkaURL(self.hosts, check_topic(topic), self.query)

    def with_port(self, port: int) -> KafkaURL:
        """The same URL pointing at 127.0.0.1:port (used for the embedded broker)."""
        return KafkaURL((("127.0.0.1", port),), self.topic, self.query)

    def __str__(self) -> str:
        url = f"kafka://{self.bootstrap}/{self.topic or ''}"
        return f"{url}?{self.query}" if self.query else url


def _host_port(item: str, url: str, default_port: int | None) -> tuple[str, int]:
    if item.startswith("["):  # [::1]:9092
        host, close, port = item[1:].partition("]")
        if not close or (port and not port.startswith(":")) or not _IPV6.match(host):
            raise KafkaURLError(f"has a bad IPv6 broker {item!r} (write [::1]:9092)", url)
        port = port[1:]
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        if ":" in host:
            raise KafkaURLError(f"has an IPv6 broker without brackets {item!r} (write [::1]:9092)", url)
        if not host:
            raise KafkaURLError("has an empty host", url)
        if not _HOSTNAME.match(host):
            raise KafkaURLError(f"has a bad host {host!r}", url)
    if not port:
        if default_port is None:
            raise KafkaURLError(f"broker {item!r} is not host:port", url)
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise KafkaURLError(f"has a bad port {port!r}", url)
    return host, int(port)
