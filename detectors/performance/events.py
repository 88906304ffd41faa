"""`io.infertap.performance` CloudEvents: one per published window of labelled predictions.

`subject` the InferenceService, extensions `detector` and `performancekind` (`realised`; the
estimators publish `estimated`), body the window's figures (`join.Join.body`). The id is
derived from the window's pairs, so a window published again after a restart (its pairs were
joined, not yet marked published) carries the same id: consumers can drop the repeat.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from cloudevents.core.v1.event import CloudEvent

from infertap.detectors.events import Origin
from infertap.stream.events import PERFORMANCE_TYPE


def window_id(detector: str, ids: list[str]) -> str:
    """A UUID made from the detector and the ids of a window's pairs, in order."""
    digest = hashlib.sha1("\x1f".join([detector, *ids]).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def performance_event(origin: Origin, body: dict[str, Any], kind: str = "realised") -> CloudEvent:
    """The CloudEvent of one window's figures."""
    attrs = {
        "specversion": "1.0",
        "id": window_id(origin.detector, body.get("event_ids") or []),
        "type": PERFORMANCE_TYPE,
        "source": origin.source,
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
        "subject": origin.inference_service or origin.detector,
        "detector": origin.detector,
        "inferenceservicename": origin.inference_service,
        "performancekind": kind,
    }
    return CloudEvent(attrs, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))
