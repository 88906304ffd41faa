"""A compact, lossless record of one CloudEvent for the disk spool.

Layout: u32 length of the attributes JSON | attributes JSON (UTF-8; `time` as ISO 8601) |
u8 data kind | data bytes. Bodies are kept as the exact bytes the tap captured, so binary
V2 payloads come back byte for byte; the kind restores str/dict data when a caller built
the event from those.
"""

from __future__ import annotations

import json
import struct
from datetime import datetime
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from ..events import unchecked_event

_U32 = struct.Struct("<I")
_NONE, _BYTES, _STR, _JSON = 0, 1, 2, 3


def event_size(event: CloudEvent) -> int:
    """Approximate memory/wire size used for the queue's byte limit (data + attributes)."""
    data = event.get_data()
    n = len(data) if isinstance(data, (bytes, bytearray, str)) else 256
    return n + 64 * len(event.get_attributes())


def encode(event: CloudEvent) -> bytes:
    """One event as record bytes."""
    attrs: dict[str, Any] = {}
    for key, value in event.get_attributes().items():
        attrs[key] = value.isoformat() if isinstance(value, datetime) else value
    head = json.dumps(attrs, separators=(",", ":"), ensure_ascii=False).encode()
    data = event.get_data()
    if data is None:
        kind, body = _NONE, b""
    elif isinstance(data, (bytes, bytearray, memoryview)):
        kind, body = _BYTES, bytes(data)
    elif isinstance(data, str):
        kind, body = _STR, data.encode()
    else:
        kind, body = _JSON, json.dumps(data, separators=(",", ":")).encode()
    return b"".join((_U32.pack(len(head)), head, bytes((kind,)), body))


def decode(record: bytes | memoryview) -> CloudEvent:
    """Record bytes back into the event they came from."""
    record = memoryview(record)
    (n,) = _U32.unpack_from(record, 0)
    attrs = json.loads(bytes(record[4 : 4 + n]))
    if isinstance(attrs.get("time"), str):
        attrs["time"] = datetime.fromisoformat(attrs["time"])
    kind = record[4 + n]
    body = bytes(record[5 + n :])
    data: Any
    if kind == _NONE:
        data = None
    elif kind == _BYTES:
        data = body
    elif kind == _STR:
        data = body.decode()
    else:
        data = json.loads(body)
    return _restore(attrs, data)


def _restore(attrs: dict[str, Any], data: Any) -> CloudEvent:
    """Rebuild a spooled event. It was validated when first built; the SDK's validation
    (regexes per extension) costs ~3x the rest of decoding, so replay skips it."""
    return unchecked_event(attrs, data)
