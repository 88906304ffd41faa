"""Ingest: CloudEvents POSTed to the logger by a real KServe agent, forwarded to the sinks.

A KServe cluster whose `logger.url` points at this sidecar feeds the platform without
Knative. `POST /` is an ingest only when it *is* a CloudEvent: a `ce-specversion` header
(binary mode, what KServe's agent sends) or Content-Type `application/cloudevents+json`
(structured mode). Any other `POST /` is proxied to the model server like every other path,
so a model server that serves `/` keeps working behind the sidecar.

An `io.infertap.feedback` event is ground truth, not traffic: it goes to the feedback topic
through `infertap.logger.feedback` (checked there, answered 202 `{"accepted": n}` or 400).
Other events pass through unchanged: attributes as received (extensions included), the body as
the raw bytes of a binary-mode event. A structured event's `data_base64` becomes those bytes;
a JSON `data` value is re-serialised compactly (its original spacing is not recoverable).
Answers: 202 `{"id": ...}`; 400 `{"error": reason}` for a malformed event (a document
nested too deeply for the JSON parser included); 503 when the
sidecar has no sink; 401 `{"error": ...}` when an ingest token is set (`--auth-token`,
`$INFERTAP_AUTH_TOKEN`) and the request lacks `Authorization: Bearer <token>`. Only the
ingest is guarded: proxied inference traffic is the model server's business.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from cloudevents.core.bindings import http as ce_http
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from infertap.stream.events import FEEDBACK_TYPE

STRUCTURED_TYPE = b"application/cloudevents+json"
REQUIRED = ("id", "source", "type", "specversion")
TOKEN_ENV = "INFERTAP_AUTH_TOKEN"
UNAUTHORIZED = "missing or wrong bearer token (Authorization: Bearer <token>)"


class IngestError(ValueError):
    """The request is not a valid CloudEvent; the message says why."""


class _RawDataFormat(JSONFormat):
    """JSON format whose binary-mode data is the body bytes, untouched (no JSON parse)."""

    def read_data(self, body: bytes, datacontenttype: str | None) -> bytes | None:
        return bytes(body) if body else None


_RAW = _RawDataFormat()
_JSON = JSONFormat()


def is_cloudevent(headers: list[tuple[bytes, bytes]]) -> bool:
    """True for a binary-mode (ce-specversion) or structured-mode CloudEvent request."""
    for name, value in headers:
        if name == b"ce-specversion":
            return True
        if name == b"content-type" and value.split(b";")[0].strip().lower() == STRUCTURED_TYPE:
            return True
    return False


def expected_authorization(token: str | None) -> bytes | None:
    """The Authorization header value the ingest wants: `token`, else $INFERTAP_AUTH_TOKEN; None: no auth."""
    token = token or os.environ.get(TOKEN_ENV) or None
    return f"Bearer {token}".encode() if token else None


def authorized(headers: list[tuple[bytes, bytes]], expected: bytes | None) -> bool:
    """True when no token is set or the request carries it (constant-time comparison)."""
    if expected is None:
        return True
    given = next((value for name, value in headers if name == b"authorization"), b"")
    return hmac.compare_digest(given, expected)


def parse(headers: list[tuple[bytes, bytes]], body: bytes) -> CloudEvent:
    """The CloudEvent a request carries, or IngestError with the reason."""
    hdrs = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
    binary = "ce-specversion" in hdrs
    try:
        if binary:
            missing = [a for a in REQUIRED if not hdrs.get(f"ce-{a}")]
            if missing:
                raise IngestError(f"binary CloudEvent lacks ce-{', ce-'.join(missing)}")
            return ce_http.from_binary(ce_http.HTTPMessage(hdrs, body), _RAW, CloudEvent)  # type: ignore[return-value]
        return _structured(body)
    except IngestError:
        raise
    except BaseCloudEventException as exc:
        raise IngestError(f"invalid CloudEvent: {exc}") from exc
    except (ValueError, TypeError, OverflowError) as exc:  # bad JSON, bad time, bad encoding
        raise IngestError(f"invalid CloudEvent: {exc}") from exc
    except RecursionError:  # json's C scanner stops a deeply nested document with this, not a ValueError
        raise IngestError("structured CloudEvent nests too deeply for the JSON parser") from None


def _structured(body: bytes) -> CloudEvent:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise IngestError(f"structured CloudEvent is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise IngestError("structured CloudEvent must be a JSON object")
    missing = [a for a in REQUIRED if not doc.get(a)]
    if missing:
        raise IngestError(f"structured CloudEvent lacks {', '.join(missing)}")
    event = _JSON.read(CloudEvent, body)
    data: Any = event.get_data()
    if isinstance(data, (dict, list, int, float, bool)):
        # forward bytes, as binary-mode events carry; JSON spacing is not preserved
        raw = json.dumps(data, separators=(",", ":")).encode()
        return CloudEvent(dict(event.get_attributes()), raw)
    if isinstance(data, str):
        return CloudEvent(dict(event.get_attributes()), data.encode("utf-8"))
    return event  # type: ignore[return-value]


def accept(headers: list[tuple[bytes, bytes]], body: bytes, delivery: Any, feedback: Any = None) -> tuple[int, dict]:
    """Parse and submit; returns (status, JSON body) for the HTTP answer. `feedback`: where
    `io.infertap.feedback` events go (`infertap.logger.feedback.FeedbackIngest`: checked, on to
    the feedback topic) rather than to the events' sinks."""
    if feedback is not None and _header(headers, b"ce-type") == FEEDBACK_TYPE.encode():
        try:
            return feedback.accept_event(parse(headers, body))
        except IngestError as exc:
            return 400, {"error": str(exc)}
    if delivery is None:
        return 503, {"error": "this logger has no sink configured (--log-url)"}
    try:
        event = parse(headers, body)
    except IngestError as exc:
        return 400, {"error": str(exc)}
    if feedback is not None and event.get_type() == FEEDBACK_TYPE:  # structured mode: the type is in the body
        return feedback.accept_event(event)
    delivery.submit(event)
    return 202, {"id": event.get_id()}


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((value for key, value in headers if key == name), None)
