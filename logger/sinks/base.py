"""The one interface every sink implements, and its errors."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from urllib.parse import unquote_plus

from cloudevents.core.v1.event import CloudEvent


class SinkConfigError(ValueError):
    """A sink URL or option is wrong; the message names the bad part."""


# Query options whose value is a secret: any key naming a password, secret, token or key
# (sasl_password, api_key, access_token, ssl_keyfile...), however its name is percent-encoded.
_SECRET_KEY = re.compile(r"pass(?:word|wd)?|secret|token|key|credential", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_HIDDEN = "***"


def shown_url(url: str) -> str:
    """A URL fit for a message, a log line or a table: secrets starred out.

    The one redaction of URLs (issue 19): the userinfo (`user:pass@`) becomes `***@`, and the
    value of every query option whose name, once percent-decoded, mentions a password, secret,
    token or key becomes `***`. Everything else stays as written, so the URL is still
    recognisable.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _hide_query(url)
    # the userinfo ends at the last `@` before the query; a `/` in a password does not end it here
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i != -1), default=len(rest))
    at = rest.rfind("@", 0, cut)
    if at != -1:
        rest = _HIDDEN + rest[at:]
    return f"{scheme}://{_hide_query(rest)}"


def redact_text(text: str) -> str:
    """`text` with every URL in it passed through `shown_url` (for log lines and messages)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: shown_url(m.group(0)), text)


def _hide_query(part: str) -> str:
    """The `key=value` options after the first `?` with secret values starred out."""
    head, sep, query = part.partition("?")
    if not sep:
        return part
    query, hash_, fragment = query.partition("#")
    options = [_hide_option(o) for o in query.split("&")]
    return head + sep + "&".join(options) + hash_ + fragment


def _hide_option(option: str) -> str:
    key, eq, _value = option.partition("=")
    return key + eq + _HIDDEN if eq and _is_secret(key) else option


def _is_secret(key: str) -> bool:
    for _ in range(3):  # `sasl%255Fpassword` is `sasl%5Fpassword` once decoded: decode until stable
        decoded = unquote_plus(key)
        if decoded == key:
            break
        key = decoded
    return bool(_SECRET_KEY.search(key))


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

    async def close(self) -> None:  # noqa: B027 - a hook: sinks that hold nothing keep this no-op
        """Release connections and threads."""
