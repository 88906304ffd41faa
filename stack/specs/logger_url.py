"""`logger.url` values: KServe's `http(s)://` sinks and infertap's `kafka://` sinks.

`kafka://` URLs are parsed by the stream contract's one parser (`infertap.stream.kafka_url`);
`KafkaURL` is re-exported here for the specs' callers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from infertap.stream.kafka_url import DEFAULT_KAFKA_PORT, LOCAL_HOSTS, KafkaURL

__all__ = ["DEFAULT_KAFKA_PORT", "LOCAL_HOSTS", "LOGGER_URL_SCHEMES", "KafkaURL", "check_logger_url"]

#: Schemes a `logger.url` may carry. s3/gs/abfs are KServe's blob-storage sinks: they load
#: (so KServe YAML stays valid) but the local planner refuses them.
LOGGER_URL_SCHEMES = ("http", "https", "kafka", "file", "s3", "gs", "abfs")


def check_logger_url(url: str) -> str:
    """Validate a `logger.url` value at load time; return it unchanged."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in LOGGER_URL_SCHEMES:
        raise ValueError(f"must be an http(s)://, kafka://host:port/topic or file:// URL (got {url!r})")
    if scheme == "kafka":
        KafkaURL.parse(url).security  # noqa: B018 - the TLS/SASL options checked at load time too
    elif scheme in ("http", "https") and not urlsplit(url).netloc:
        raise ValueError(f"http URL names no host: {url!r}")
    return url
