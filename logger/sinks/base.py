"""The one interface every sink implements, and its errors."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence

from cloudevents.core.v1.event import CloudEvent


class SinkConfigError(ValueError):
    """A sink URL or option is wrong; the message names the bad part."""


def shown_url(url: str) -> str:
    """A sink URL fit for a message or a table: the SASL password starred out."""
    return re.sub(r"(sasl_password=)[^&]*", r"\1***", url)


class SinkError(Exception):
    """A batch (or part of it) did not reach the sink.

    `failed`: indices into the batch worth trying again (None: all of them).
    `rejected`: indices the sink refused for good (e.g. HTTP 400): retrying cannot help,
    so the delivery drops them with a metric and a log line instead of blocking the spool.
    """

    def __init__(self, message: str, failed: list[int] | None = None, rejected: list[int] | None = None):
        super().__init__(message)
        self.failed = failed
        self.rejected = rejected or []


class Sink(ABC):
    """Where events go: Kafka, an HTTP endpoint, a file.

    A sink sends one batch at a time (the delivery never overlaps calls to one sink) and
    either returns (every event acknowledged) or raises `SinkError`. Sinks connect lazily
    on the first batch, so a sink that is down at start-up is a failing sink, not a crash.
    """

    name: str
    """Short label for metrics, logs and the spool folder, e.g. `kafka:my-isvc-events`."""

    @abstractmethod
    async def send_batch(self, events: Sequence[CloudEvent]) -> None:
        """Deliver `events` in order; raise `SinkError` if any did not arrive."""

    async def close(self) -> None:
        """Release connections and threads."""
