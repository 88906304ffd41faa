"""Sinks: where the logger delivers events. One interface (`Sink`), one module per kind.

`build_sink(url)` picks the sink by URL scheme: `kafka://`, `http://`/`https://`, `file://`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .base import Sink, SinkConfigError, SinkError, shown_url

if TYPE_CHECKING:
    from .kafka_config import KafkaClient

__all__ = ["Sink", "SinkError", "SinkConfigError", "build_sink", "shown_url", "SCHEMES"]

SCHEMES = ("kafka", "http", "https", "file")


def build_sink(
    url: str, kafka_client: KafkaClient = "confluent", http_options: Mapping[str, object] | None = None
) -> Sink:
    """A sink for `url`; SinkConfigError for an unknown scheme or a bad option."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "kafka":
        from .kafka import KafkaSink, KafkaSinkConfig

        return KafkaSink(KafkaSinkConfig.from_url(url, default_client=kafka_client))
    if scheme in ("http", "https"):
        from .http import HttpSink, HttpSinkConfig

        return HttpSink(HttpSinkConfig.from_url(url, **(http_options or {})))
    if scheme == "file":
        from .file import FileSink, FileSinkConfig

        return FileSink(FileSinkConfig.from_url(url))
    raise SinkConfigError(
        f"sink URL {url!r}: unknown scheme {scheme or '(none)'!r}; expected one of "
        + ", ".join(f"{s}://" for s in SCHEMES)
    )
