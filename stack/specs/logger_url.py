"""`logger.url` values: KServe's `http(s)://` sinks and infertap's `kafka://` sinks."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

#: Schemes a `logger.url` may carry. s3/gs/abfs are KServe's blob-storage sinks: they load
#: (so KServe YAML stays valid) but the local planner refuses them.
LOGGER_URL_SCHEMES = ("http", "https", "kafka", "file", "s3", "gs", "abfs")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_KAFKA_PORT = 9092


@dataclass(frozen=True)
class KafkaURL:
    """`kafka://host:port[,host:port]/topic[?options]`, split into its parts."""

    hosts: tuple[tuple[str, int], ...]
    topic: str | None
    query: str = ""

    @classmethod
    def parse(cls, url: str) -> KafkaURL:
        """Parse a kafka:// URL; ValueError with a sentence when it is malformed."""
        if not url.startswith("kafka://"):
            raise ValueError(f"not a kafka:// URL: {url!r}")
        rest = url[len("kafka://") :]
        rest, _, query = rest.partition("?")
        netloc, _, topic = rest.partition("/")
        hosts = tuple(_host_port(item, url) for item in netloc.split(",") if item.strip())
        if not hosts:
            raise ValueError(f"kafka URL names no broker: {url!r} (expected kafka://host:port/topic)")
        return cls(hosts=hosts, topic=topic.strip("/") or None, query=query)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.hosts)

    @property
    def is_local(self) -> bool:
        """Every broker named is this machine."""
        return all(host in LOCAL_HOSTS for host, _ in self.hosts)

    def with_topic(self, topic: str) -> KafkaURL:
        return KafkaURL(self.hosts, topic, self.query)

    def with_port(self, port: int) -> KafkaURL:
        """The same URL pointing at 127.0.0.1:port (used for the embedded broker)."""
        return KafkaURL((("127.0.0.1", port),), self.topic, self.query)

    def __str__(self) -> str:
        url = f"kafka://{self.bootstrap}/{self.topic or ''}"
        return f"{url}?{self.query}" if self.query else url


def _host_port(item: str, url: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [::1]:9092
        host, _, port = item[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError(f"kafka URL has an empty host in {url!r}")
    if not port:
        return host, DEFAULT_KAFKA_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"kafka URL has a bad port {port!r} in {url!r}")
    return host, int(port)


def check_logger_url(url: str) -> str:
    """Validate a `logger.url` value at load time; return it unchanged."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in LOGGER_URL_SCHEMES:
        raise ValueError(f"must be an http(s)://, kafka://host:port/topic or file:// URL (got {url!r})")
    if scheme == "kafka":
        KafkaURL.parse(url)
    elif scheme in ("http", "https") and not urlsplit(url).netloc:
        raise ValueError(f"http URL names no host: {url!r}")
    return url
