"""Inference CloudEvents, built exactly as KServe's agent builds them (`pkg/logger/worker.go`).

One request/response pair gives two CloudEvents 1.0 that share an `id` (the incoming
`ce-id` header, else a new UUID4):

- `type` `org.kubeflow.serving.inference.request` / `.response`
- `source` the sidecar's `--source-uri`; `time` when the request arrived / the response came
- `datacontenttype` the *request's* Content-Type, on both events (as KServe)
- extensions `inferenceservicename`, `namespace`, `component`, `endpoint`, `metadata` (JSON
  map of allow-listed request headers to their values, `map[string][]string`), `annotations`
  (JSON, only when non-empty), and on responses `statuscode` (KServe logs only 200s; we log
  every status and say which).

The body is the raw bytes, never parsed or re-encoded, so binary V2 payloads stay byte-exact.
The type names are the stream contract's (`infertap.stream.events`), re-exported here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from cloudevents.core.v1.event import CloudEvent

from infertap.stream.events import REQUEST_TYPE, RESPONSE_TYPE  # the stream contract's names

SPECVERSION = "1.0"

#: Extension set on response events when the body logged is a prefix of a longer stream.
TRUNCATED_EXT = "bodytruncated"

RawHeaders = Iterable[tuple[bytes, bytes]]


def canonical_header(name: str) -> str:
    """Go's `CanonicalMIMEHeaderKey`: `x-request-id` -> `X-Request-Id` (KServe's map keys)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


class EventBuilder:
    """Builds the request and response events of one sidecar's traffic.

    Everything that is the same for every event (source, service names, the allow-list and
    the annotations JSON) is computed once here, so the per-request work is a dict literal.
    """

    def __init__(
        self,
        source: str,
        inference_service: str = "",
        namespace: str = "",
        component: str = "",
        endpoint: str = "",
        metadata_headers: Iterable[str] = (),
        metadata_annotations: Mapping[str, str] | None = None,
    ) -> None:
        self.source = source
        self._static = {
            "source": source,
            "inferenceservicename": inference_service,
            "namespace": namespace,
            "component": component,
            "endpoint": endpoint,
        }
        if metadata_annotations:
            self._static["annotations"] = json.dumps(dict(metadata_annotations), separators=(",", ":"))
        # lower-case wire name -> canonical name used as the JSON key
        self._allow = {
            h.strip().lower().encode("latin-1"): canonical_header(h.strip()) for h in metadata_headers if h.strip()
        }
        self._check()

    @classmethod
    def from_settings(cls, settings) -> EventBuilder:
        """From a `LoggerSettings` (duck-typed so this module needs nothing else of ours)."""
        return cls(
            source=settings.source_uri,
            inference_service=settings.inference_service,
            namespace=settings.namespace,
            component=settings.component,
            endpoint=settings.endpoint,
            metadata_headers=settings.metadata_headers,
            metadata_annotations=settings.metadata_annotations,
        )

    def metadata(self, headers: RawHeaders) -> str:
        """JSON of the allow-listed request headers, `{"X-Request-Id": ["a"]}`; `{}` when none.

        Names match case-insensitively. Authorization and Cookie are logged only when the
        allow-list names them: nothing outside the list is ever copied.
        """
        if not self._allow:
            return "{}"
        found: dict[str, list[str]] = {}
        for name, value in headers:
            key = self._allow.get(name.lower())
            if key is not None:
                found.setdefault(key, []).append(value.decode("latin-1"))
        return json.dumps(found, separators=(",", ":")) if found else "{}"

    def _check(self) -> None:
        """Validate the attributes every event shares once, with the SDK's validating constructor:
        per event only id, time, datacontenttype, metadata and statuscode change, and the tap
        guarantees their types (non-empty str id, aware datetime, non-empty str content type)."""
        for event_type in (REQUEST_TYPE, RESPONSE_TYPE):
            attrs = self._attributes(event_type, "probe", "application/json", "{}", now())
            attrs["statuscode"] = 200
            attrs[TRUNCATED_EXT] = "true"
            CloudEvent(attrs, b"")  # raises CloudEventValidationError (e.g. an empty source)

    def _attributes(
        self, event_type: str, event_id: str, content_type: str | None, metadata: str, when: datetime
    ) -> dict:
        attrs = {
            "specversion": SPECVERSION,
            "id": event_id,
            "type": event_type,
            "time": when,
            **self._static,
            "metadata": metadata,
        }
        if content_type:  # the SDK rejects an empty datacontenttype; KServe omits it too
            attrs["datacontenttype"] = content_type
        return attrs

    def request(
        self,
        event_id: str,
        body: bytes,
        content_type: str | None,
        metadata: str,
        when: datetime | None = None,
        extensions: Mapping[str, object] | None = None,
    ) -> CloudEvent:
        """The `.request` event: the request body exactly as received. `extensions` (names
        already validated by the caller, e.g. the sidecar's GenAI ones) are added as they are."""
        attrs = self._attributes(REQUEST_TYPE, event_id, content_type, metadata, when or now())
        if extensions:
            attrs.update(extensions)
        return unchecked_event(attrs, body)

    def response(
        self,
        event_id: str,
        body: bytes,
        content_type: str | None,
        metadata: str,
        status: int,
        when: datetime | None = None,
        truncated: bool = False,
        extensions: Mapping[str, object] | None = None,
    ) -> CloudEvent:
        """The `.response` event, with `statuscode`; `content_type` is the request's (KServe)."""
        attrs = self._attributes(RESPONSE_TYPE, event_id, content_type, metadata, when or now())
        attrs["statuscode"] = status
        if truncated:
            attrs[TRUNCATED_EXT] = "true"
        if extensions:
            attrs.update(extensions)
        return unchecked_event(attrs, body)


def unchecked_event(attributes: dict, data) -> CloudEvent:
    """A CloudEvent from attributes already known to be valid, without the SDK's validation.

    The SDK's constructor validates every attribute (regexes per extension name) and costs
    more than everything else the tap does per event; the tap's events are validated once
    per `EventBuilder` instead (`_check`), and spooled events were validated when built.
    Falls back to the validating constructor when the SDK's CloudEvent is not laid out as
    this module knows (`_FAST` is probed at import)."""
    if _FAST:
        event = CloudEvent.__new__(CloudEvent)
        event._attributes, event._data = attributes, data
        return event
    return CloudEvent(attributes, data)


def _probe() -> bool:
    try:
        probe = CloudEvent({"type": "t", "source": "s", "id": "1"}, b"x")
        fast = CloudEvent.__new__(CloudEvent)
        fast._attributes, fast._data = dict(probe.get_attributes()), b"x"
        return (
            vars(probe).keys() == {"_attributes", "_data"}
            and fast.get_data() == b"x"
            and fast.get_attributes() == probe.get_attributes()
            and fast.get_id() == "1"
        )
    except Exception:  # noqa: BLE001 - any surprise: use the validating constructor
        return False


_FAST = _probe()


def now() -> datetime:
    """Timezone-aware UTC now, as the SDK requires for `time`."""
    return datetime.now(UTC)


def event_id(headers: RawHeaders) -> str:
    """The incoming `ce-id` header (KServe's correlation id) or a new UUID4."""
    for name, value in headers:
        if name.lower() == b"ce-id" and value:
            return value.decode("latin-1")
    return str(uuid.uuid4())


def decode_metadata(value: str | bytes | None) -> dict[str, list[str]]:
    """The `metadata` extension back into a dict (empty when absent or malformed)."""
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
