"""From Kafka records (CloudEvents, binary mode) to one numpy frame per window.

A window's events are decoded together: each body is parsed once (orjson; V2 through
`infertap.serving.codec`, JSON and binary tensors), V1 rows of every event go into one Python list
that numpy converts in one call, V2 tensors are concatenated once, and rows are put back
in event order with one stable argsort. Events that cannot be decoded come back as
`Reject`s with a reason code (for the dead-letter topic and its metric); the rest of the
window is unaffected.

Rows the model never judged, and rows with missing values, are left out of the frame and
counted (`DecodedWindow.excluded`), so one bad row cannot blind a window (issue 19): an
event whose response failed (status not 2xx: response and joined modes; request mode has
no response to tell) is `failed_response`; a row holding a null (JSON `null` becomes NaN),
NaN or infinity is dropped as `missing_value` (default), dead-lettered with that reason, or
passed through to a backend that takes missing values (`missing` of the Decoder).

Reason codes (a closed set, so metric labels stay bounded): `not_json`, `wrong_shape`,
`wrong_feature_count`, `unknown_type`, `missing_attributes`, `bad_value`,
`unknown_category`, `no_response`, `missing_value`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import orjson

from infertap.detectors.settings import EventMode, FeatureSettings, MissingValues
from infertap.serving.codec import CodecError, binary_header_length, decode_v2_request, decode_v2_response
from infertap.stream.events import REQUEST_TYPE, RESPONSE_TYPE

REASONS = (
    "not_json",
    "wrong_shape",
    "wrong_feature_count",
    "unknown_type",
    "missing_attributes",
    "bad_value",
    "unknown_category",
    "no_response",
    "missing_value",
)
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_type")
_REQUEST, _RESPONSE = REQUEST_TYPE.encode(), RESPONSE_TYPE.encode()


@dataclass(slots=True)
class Record:
    """One Kafka record, independent of the client library that fetched it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: dict[str, bytes]
    timestamp: float = 0.0  # seconds since the epoch (the record's timestamp)
    key: bytes | None = None

    def header(self, name: str) -> str | None:
        raw = self.headers.get(name)
        return None if raw is None else raw.decode("utf-8", "replace")


@dataclass(slots=True)
class Event:
    """What a window holds: one request or response record, or a request joined to its response."""

    id: str
    records: tuple[Record, ...]
    timestamp: float
    failed: bool = False  # its response failed (status not 2xx): in the window, left out of the frame

    @property
    def request(self) -> Record | None:
        return next((r for r in self.records if r.headers.get("ce_type") == REQUEST_TYPE.encode()), None)

    @property
    def response(self) -> Record | None:
        return next((r for r in self.records if r.headers.get("ce_type") == RESPONSE_TYPE.encode()), None)


@dataclass(slots=True)
class Reject:
    """A record the worker cannot use, with why; it goes to the dead-letter topic."""

    record: Record
    reason: str
    message: str


@dataclass
class DecodedWindow:
    """One window as a frame: `x[i]` came from `events[row_event[i]]`."""

    x: np.ndarray
    row_event: np.ndarray
    events: list[Event]
    feature_names: list[str]
    rejects: list[Reject] = field(default_factory=list)
    #: left out before judging: failed_response (events), missing_value (rows dropped)
    excluded: dict[str, int] = field(default_factory=lambda: {"failed_response": 0, "missing_value": 0})
    #: events of the window that gave no row to the frame without being rejected (failed, or all rows dropped)
    left_out: list[Event] = field(default_factory=list)
    #: a time window's span [start, end) in epoch seconds (`window.bounds`); None for count windows
    bounds: tuple[float, float] | None = None

    @property
    def event_ids(self) -> list[str]:
        return [e.id for e in self.events]

    def frame(self):
        """The rows as a pandas DataFrame with the feature names (pandas imported lazily)."""
        import pandas as pd

        return pd.DataFrame(self.x, columns=self.feature_names)


class DecodeError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def check_attributes(record: Record) -> Reject | None:
    """A Reject when the record is not a binary-mode CloudEvent of a known type."""
    headers = record.headers
    if not (headers.get("ce_specversion") and headers.get("ce_id") and headers.get("ce_type")):
        missing = [h for h in REQUIRED_HEADERS if not headers.get(h)]
        return Reject(record, "missing_attributes", f"not a binary-mode CloudEvent: missing {', '.join(missing)}")
    if headers["ce_type"] not in (_REQUEST, _RESPONSE):
        return Reject(record, "unknown_type", f"unknown event type {record.header('ce_type')!r}")
    if record.value is None:
        return Reject(record, "not_json", "empty body")
    return None


class Decoder:
    """Turns a window of events into a frame of the configured features."""

    def __init__(
        self,
        features: Sequence[FeatureSettings],
        events: EventMode = "request",
        input_name: str | None = None,
        output_name: str | None = None,
        missing: MissingValues = "drop",
    ):
        self.events_mode = events
        self.missing = missing
        self.input_name, self.output_name = input_name, output_name
        if events == "response":
            self.inputs = []
            self.outputs = list(features)
        else:
            self.inputs = [f for f in features if f.source == "input"]
            self.outputs = [f for f in features if f.source == "output"]
        self.features = self.inputs + self.outputs
        self._categories = {
            i: {v: code for code, v in enumerate(f.categories)}
            for i, f in enumerate(self.features)
            if f.categories is not None
        }
        # the row width the V1 quick path checks (request mode, declared input features only)
        self._quick_width = len(self.inputs) if events == "request" and self.inputs and not self.outputs else 0

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    # --- public -------------------------------------------------------------------------

    def decode(self, events: Sequence[Event]) -> DecodedWindow:
        """Decode every event of a window; undecodable ones become rejects, failed ones and rows
        with missing values are left out and counted."""
        failed = [e for e in events if e.failed]
        if failed:
            events = [e for e in events if not e.failed]
        window = self._decode(events)
        window.excluded["failed_response"] = len(failed)
        window.left_out += failed
        if self.missing != "pass" and window.x.size and not np.isfinite(window.x).all():
            self._missing(window)
        return window

    def _missing(self, window: DecodedWindow) -> None:
        """Rows holding NaN or infinity: dropped (counted), or their events dead-lettered."""
        ok = np.isfinite(window.x).all(axis=1)
        n = len(window.events)
        if self.missing == "deadletter":
            bad = np.unique(window.row_event[~ok])
            for i in bad.tolist():
                row = window.x[window.row_event == i]
                j = int(np.nonzero(~np.isfinite(row).all(axis=0))[0][0])
                name = window.feature_names[j] if j < len(window.feature_names) else f"column {j}"
                window.rejects.append(
                    Reject(window.events[i].records[0], "missing_value", f"feature {name!r} is null, NaN or infinite")
                )
            ok = ~np.isin(window.row_event, bad)
            gone = set(bad.tolist())
        else:
            window.excluded["missing_value"] = int((~ok).sum())
            gone = set(range(n)) - set(np.unique(window.row_event[ok]).tolist())
            window.left_out += [window.events[i] for i in sorted(gone)]
        kept = [i for i in range(n) if i not in gone]
        remap = np.full(n, -1, dtype=np.int64)
        remap[kept] = np.arange(len(kept))
        window.x, window.row_event = window.x[ok], remap[window.row_event[ok]]
        window.events = [window.events[i] for i in kept]

    def _decode(self, events: Sequence[Event]) -> DecodedWindow:
        quick = self._quick_rows(events) if self._quick_width else None
        if quick is not None and not self._categories:
            window = self._all_quick(events, quick)
            if window is not None:
                return window
        chunks: list[tuple[int, Any]] = []  # (event index, rows: list of lists or 2-D array)
        rejects: list[Reject] = []
        for i, event in enumerate(events):
            rows = quick[i] if quick is not None else None
            if rows is None:
                try:
                    rows = self._event_rows(event)
                except DecodeError as err:
                    rejects.append(Reject(event.records[0], err.reason, err.message))
                    continue
            chunks.append((i, rows))
        x, row_event, bad = self._stack(chunks)
        for i, (reason, message) in sorted(bad.items()):
            rejects.append(Reject(events[i].records[0], reason, message))
        kept = sorted({i for i, _ in chunks} - set(bad))
        # renumber rows to indices into the kept events
        remap = np.full(len(events) + 1, -1, dtype=np.int64)
        remap[kept] = np.arange(len(kept))
        return DecodedWindow(x, remap[row_event], [events[i] for i in kept], self._names(x), rejects)

    # --- one event ----------------------------------------------------------------------

    def _quick_rows(self, events: Sequence[Event]) -> list[list | None]:
        """Request mode: the rows of each event whose body is the common V1 shape
        (`{"instances": [[width values], ...]}`), else None (that event takes the full path).

        The same rows the full path returns, without its per-event calls: at 1,000-event
        windows those calls cost as much as a third of a TabularDrift predict.
        """
        loads, width = orjson.loads, self._quick_width
        out: list[list | None] = []
        append = out.append
        for event in events:
            value = event.records[0].value
            if value is None:
                append(None)
                continue
            try:
                obj = loads(value)
            except (orjson.JSONDecodeError, TypeError):
                append(None)
                continue
            rows = obj.get("instances") if type(obj) is dict and "inputs" not in obj else None
            if type(rows) is not list or not rows:
                append(None)
            elif len(rows) == 1:  # one row per request, the usual case: no generator
                append(rows if type(rows[0]) is list and len(rows[0]) == width else None)
            else:
                append(rows if all(type(row) is list and len(row) == width for row in rows) else None)
        return out

    def _all_quick(self, events: Sequence[Event], quick: list[list | None]) -> DecodedWindow | None:
        """When every event took the quick path and every value is a number: the frame in one
        conversion, nothing rejected. None otherwise (the full path then finds who is at fault)."""
        if None in quick:
            return None
        every = cast("list[list]", quick)  # no None in it (checked above; mypy cannot narrow `in`)
        flat = [row for rows in every for row in rows]
        try:
            x = np.array(flat, dtype=np.float64)
        except (ValueError, TypeError):
            return None
        if x.ndim != 2:
            return None
        n = len(events)
        owner = np.arange(n) if len(flat) == n else np.repeat(np.arange(n), [len(rows) for rows in every])
        return DecodedWindow(x, owner, list(events), self.feature_names, [])

    def _event_rows(self, event: Event) -> Any:
        if self.events_mode == "response":
            return self._response_rows(event.records[0], len(self.outputs) or None)
        if self.events_mode == "request":
            return self._request_rows(event.records[0])
        request, response = event.request, event.response
        if request is None or response is None:
            raise DecodeError("no_response", "request without its response")
        x_in = _as_array(self._request_rows(request))
        x_out = self._response_rows(response, len(self.outputs) or None)
        x_out = _as_array(x_out)
        if x_in.shape[0] != x_out.shape[0]:
            raise DecodeError("wrong_shape", f"request has {x_in.shape[0]} rows, its response {x_out.shape[0]}")
        if x_in.dtype == object or x_out.dtype == object:
            return np.concatenate([x_in.astype(object), x_out.astype(object)], axis=1)
        return np.concatenate([x_in, x_out], axis=1)

    def _request_rows(self, record: Record) -> Any:
        body = record.value or b""
        obj, header_length = _parse(body, record)
        if isinstance(obj, dict) and _is_v2(obj.get("inputs")):
            try:
                request = decode_v2_request(body, header_length)
            except CodecError as err:
                raise DecodeError(_codec_reason(err), str(err)) from None
            return self._pick_tensors({t.name: t.data for t in request.inputs}, self.input_name, self.inputs, "input")
        if header_length is not None:
            raise DecodeError("not_json", "binary body that is not a V2 request")
        return self._v1_rows(obj)

    def _response_rows(self, record: Record, width: int | None) -> Any:
        body = record.value or b""
        obj, header_length = _parse(body, record)
        if isinstance(obj, dict) and isinstance(obj.get("outputs"), list):
            try:
                response = decode_v2_response(body, header_length)
            except CodecError as err:
                raise DecodeError(_codec_reason(err), str(err)) from None
            return self._pick_tensors(
                {t.name: t.data for t in response.outputs}, self.output_name, self.outputs, "output"
            )
        if not isinstance(obj, dict) or "predictions" not in obj:
            raise DecodeError("wrong_shape", 'response has neither "predictions" (V1) nor "outputs" (V2)')
        predictions = obj["predictions"]
        if not isinstance(predictions, list) or not predictions:
            raise DecodeError("wrong_shape", '"predictions" must be a non-empty list')
        rows = predictions if isinstance(predictions[0], list) else [[p] for p in predictions]
        return self._check_width(rows, width, "output")

    def _v1_rows(self, obj: Any) -> list | np.ndarray:
        if not isinstance(obj, dict):
            raise DecodeError("wrong_shape", f"body must be a JSON object, got {type(obj).__name__}")
        has_instances, has_inputs = "instances" in obj, "inputs" in obj
        if has_instances == has_inputs:
            raise DecodeError("wrong_shape", 'V1 body needs exactly one of "instances" or "inputs"')
        value = obj["instances" if has_instances else "inputs"]
        if isinstance(value, dict):  # columnar V1 `inputs`: {name: [values]}
            return self._columns_to_rows(value)
        if not isinstance(value, list) or not value:
            raise DecodeError("wrong_shape", "instances must be a non-empty list")
        first = value[0]
        if isinstance(first, dict):  # rows as {feature: value}
            names = [f.name for f in self.inputs]
            try:
                value = [[row[n] for n in names] for row in value]
            except (KeyError, TypeError) as err:
                raise DecodeError("wrong_feature_count", f"row lacks feature {err}") from None
        elif not isinstance(first, list):
            if len(self.inputs) > 1:
                raise DecodeError("wrong_shape", f"instances must be rows of {len(self.inputs)} features, got scalars")
            value = [[v] for v in value]
        return self._check_width(value, len(self.inputs) or None, "input")

    def _columns_to_rows(self, columns: dict) -> np.ndarray:
        names = [f.name for f in self.inputs] or list(columns)
        missing = [n for n in names if n not in columns]
        if missing:
            raise DecodeError("wrong_feature_count", f"inputs lack feature(s) {missing}")
        try:
            cols = [np.asarray(columns[n]) for n in names]
        except (ValueError, TypeError) as err:
            raise DecodeError("wrong_shape", f"inputs columns are not arrays: {err}") from None
        if len({c.shape[0] if c.ndim else -1 for c in cols}) != 1 or any(c.ndim != 1 for c in cols):
            raise DecodeError("wrong_shape", "inputs columns must be 1-D lists of one length")
        return np.stack(cols, axis=1) if all(c.dtype != object for c in cols) else np.stack(cols, axis=1).astype(object)

    def _check_width(self, rows: list, width: int | None, what: str) -> list:
        for row in rows:
            if not isinstance(row, list):
                raise DecodeError("wrong_shape", f"{what} rows must be lists, got {type(row).__name__}")
            if width is not None and len(row) != width:
                raise DecodeError("wrong_feature_count", f"{what} row has {len(row)} values, expected {width}")
        return rows

    def _pick_tensors(
        self, tensors: dict[str, np.ndarray], name: str | None, features: list[FeatureSettings], what: str
    ) -> np.ndarray:
        width = len(features) or None
        if name is None and features and all(f.name in tensors for f in features) and len(features) > 1:
            cols = [tensors[f.name].reshape(tensors[f.name].shape[0], -1) for f in features]
            if any(c.shape[1] != 1 for c in cols) or len({c.shape[0] for c in cols}) != 1:
                raise DecodeError("wrong_shape", f"per-feature {what} tensors must be [n] or [n, 1] of one n")
            return np.concatenate(cols, axis=1)
        if name is not None and name not in tensors:
            raise DecodeError("wrong_shape", f"no {what} tensor named {name!r} (got {sorted(tensors)})")
        array = tensors[name] if name is not None else next(iter(tensors.values()), None)
        if array is None:
            raise DecodeError("wrong_shape", f"no {what} tensors")
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        elif array.ndim > 2:
            array = array.reshape(array.shape[0], -1)
        if width is not None and array.shape[1] != width:
            raise DecodeError("wrong_feature_count", f"{what} tensor has {array.shape[1]} features, expected {width}")
        return array

    # --- the whole window ---------------------------------------------------------------

    def _stack(self, chunks: list[tuple[int, Any]]) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[str, str]]]:
        """All rows as one float64 matrix in event order, and the events whose values are bad."""
        bad: dict[int, tuple[str, str]] = {}
        declared = len(self.features) if self.features and (self.events_mode != "joined" or self.outputs) else None
        width = declared
        for i, rows in chunks:  # every event was checked against declared widths; without them, the first event's wins
            got = len(rows[0]) if isinstance(rows, list) else rows.shape[1]
            if width is None:
                width = got
            elif got != width:
                bad[i] = ("wrong_feature_count", f"row has {got} values, expected {width}")
        chunks = [(i, r) for i, r in chunks if i not in bad]
        width = width or 0
        lists = [(i, rows) for i, rows in chunks if isinstance(rows, list)]
        arrays = [(i, rows) for i, rows in chunks if not isinstance(rows, list)]
        parts: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        if lists:
            flat = [row for _, rows in lists for row in rows]
            owner = np.repeat([i for i, _ in lists], [len(rows) for _, rows in lists])
            converted, converted_owner = self._convert(flat, owner, lists, bad)
            parts.append(converted)
            owners.append(converted_owner)
        if arrays:
            for i, rows in arrays:
                parts.append(self._convert_array(rows, i, bad))
                owners.append(np.full(parts[-1].shape[0], i, dtype=np.int64))
        if not parts:
            return np.empty((0, width)), np.empty(0, dtype=np.int64), bad
        x = np.concatenate(parts) if len(parts) > 1 else parts[0]
        owner = np.concatenate(owners) if len(owners) > 1 else owners[0]
        keep = ~np.isin(owner, list(bad)) if bad else slice(None)
        x, owner = x[keep], owner[keep]
        if len(parts) > 1:  # restore event order across payload kinds
            order = np.argsort(owner, kind="stable")
            x, owner = x[order], owner[order]
        return x, owner, bad

    def _convert(
        self, flat: list, owner: np.ndarray, lists: list[tuple[int, list]], bad: dict[int, tuple[str, str]]
    ) -> tuple[np.ndarray, np.ndarray]:
        if not self._categories:
            try:
                return np.array(flat, dtype=np.float64), owner
            except (ValueError, TypeError):
                pass  # someone sent a non-number: find whom, per event
        parts: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        for i, rows in lists:
            x = self._convert_array(np.array(rows, dtype=object), i, bad)
            if i not in bad:
                parts.append(x)
                owners.append(np.full(len(rows), i, dtype=np.int64))
        if not parts:
            return np.empty((0, len(self.features))), np.empty(0, dtype=np.int64)
        return np.concatenate(parts), np.concatenate(owners)

    def _convert_array(self, rows: np.ndarray, i: int, bad: dict[int, tuple[str, str]]) -> np.ndarray:
        """One event's rows to float64, categorical values to their codes."""
        if not self._categories and rows.dtype.kind in "biuf":
            return rows.astype(np.float64, copy=False)
        out = np.empty(rows.shape, dtype=np.float64)
        for j in range(rows.shape[1]):
            column = rows[:, j]
            mapping = self._categories.get(j)
            if mapping is not None:
                values = [_category_value(v) for v in column]
                codes = [mapping.get(v, -1) for v in values]
                if -1 in codes:
                    unknown = values[codes.index(-1)]
                    bad[i] = ("unknown_category", f"feature {self.features[j].name!r}: unknown category {unknown!r}")
                    return out
                out[:, j] = codes
                continue
            try:
                out[:, j] = np.asarray(column, dtype=np.float64)
            except (ValueError, TypeError):
                name = self.features[j].name if j < len(self.features) else f"column {j}"
                bad[i] = ("bad_value", f"feature {name!r} holds a value that is not a number")
                return out
        return out

    def _names(self, x: np.ndarray) -> list[str]:
        if self.features:
            return self.feature_names
        return [f"f{j}" for j in range(x.shape[1] if x.ndim == 2 else 0)]


def _as_array(rows: Any) -> np.ndarray:
    if isinstance(rows, np.ndarray):
        return rows
    try:
        return np.array(rows)
    except ValueError as err:
        raise DecodeError("wrong_shape", f"rows are not rectangular: {err}") from None


def _category_value(value: Any) -> Any:
    """BYTES tensors hold bytes; categories in YAML are strings or numbers."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _is_v2(inputs: Any) -> bool:
    return isinstance(inputs, list) and bool(inputs) and isinstance(inputs[0], dict) and "datatype" in inputs[0]


def _codec_reason(err: CodecError) -> str:
    text = str(err)
    if "datatype" in text and ("Input should be" in text or "unknown" in text.lower()):
        return "unknown_type"
    if "not valid JSON" in text:
        return "not_json"
    if "does not fit datatype" in text or "non-integer" in text or "outside the range" in text:
        return "bad_value"
    return "wrong_shape"


def _parse(body: bytes, record: Record) -> tuple[Any, int | None]:
    """The JSON object of a body and, for V2 binary bodies, the JSON header's length.

    The logger keeps bodies byte-exact but not the `Inference-Header-Content-Length`
    request header (unless allow-listed into `metadata`), so the header's end is found by
    parsing the leading JSON value.
    """
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError:
        pass
    length = _header_length(record)
    if length is None:
        try:
            length = binary_header_length(body)
        except CodecError:
            raise DecodeError("not_json", "body is not JSON (nor a V2 binary body with a JSON header)") from None
    try:
        return orjson.loads(body[:length]), length
    except (orjson.JSONDecodeError, ValueError):
        raise DecodeError("not_json", "V2 binary body whose JSON header does not parse") from None


def _header_length(record: Record) -> int | None:
    raw = record.header("ce_metadata")
    if not raw or "Inference-Header-Content-Length" not in raw:
        return None
    try:
        value = json.loads(raw).get("Inference-Header-Content-Length")
        return int(value[0] if isinstance(value, list) else value)
    except (ValueError, TypeError, AttributeError):
        return None


def records_to_events(records: Iterable[Record], mode: EventMode) -> tuple[list[Event], list[Reject], int]:
    """Request/response modes: keep the records of the chosen type as events.

    Returns (events, rejects, ignored): `ignored` counts well-formed events of the other type.
    Responses with a status other than 2xx (their requests were not predictions) are events
    marked `failed`: their window counts them and leaves them out of its frame.
    """
    want = _REQUEST if mode == "request" else _RESPONSE
    events, rejects, ignored = [], [], 0
    for record in records:
        headers = record.headers
        # the common case, checked inline (what check_attributes and _ok_status would say)
        if headers.get("ce_type") == want and record.value is not None and headers.get("ce_specversion"):
            eid = headers.get("ce_id")
            if eid:
                status = headers.get("ce_statuscode")
                failed = not (status is None or status.startswith(b"2"))
                events.append(Event(eid.decode("utf-8", "replace"), (record,), record.timestamp, failed))
                continue
        reject = check_attributes(record)
        if reject is not None:
            rejects.append(reject)
            continue
        if record.headers["ce_type"] != want:
            ignored += 1
            continue
        event_id = record.headers["ce_id"].decode("utf-8", "replace")
        events.append(Event(event_id, (record,), record.timestamp, not _ok_status(record)))
    return events, rejects, ignored


def _ok_status(record: Record) -> bool:
    status = record.headers.get("ce_statuscode")
    return status is None or status.startswith(b"2")


class Joiner:
    """Pairs each request with its response (same `id`; key = id puts them on one partition).

    Requests wait at most `timeout` seconds for their response; then they are rejected as
    `no_response`. `pending` is what the commit point must not pass.
    """

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self.requests: dict[str, Record] = {}
        self.responses: dict[str, Record] = {}

    def add(self, records: Iterable[Record]) -> tuple[list[Event], list[Reject], int]:
        events, rejects, ignored = [], [], 0
        for record in records:
            reject = check_attributes(record)
            if reject is not None:
                rejects.append(reject)
                continue
            eid = record.headers["ce_id"].decode("utf-8", "replace")
            is_request = record.headers["ce_type"] == REQUEST_TYPE.encode()
            mine, other = (self.requests, self.responses) if is_request else (self.responses, self.requests)
            match = other.pop(eid, None)
            if match is None:
                mine[eid] = record
                continue
            request, response = (record, match) if is_request else (match, record)
            stamp = max(request.timestamp, response.timestamp)
            events.append(Event(eid, (request, response), stamp, not _ok_status(response)))
        return events, rejects, ignored

    def expire(self, now: float) -> tuple[list[Reject], int]:
        """Requests older than the timeout become rejects; stray responses are dropped (counted)."""
        rejects, dropped = [], 0
        for eid, record in list(self.requests.items()):
            if now - record.timestamp > self.timeout:
                del self.requests[eid]
                rejects.append(Reject(record, "no_response", f"no response within {self.timeout:g}s"))
        for eid, record in list(self.responses.items()):
            if now - record.timestamp > self.timeout:
                del self.responses[eid]
                dropped += 1
        return rejects, dropped

    def drop_partitions(self, partitions: set[int]) -> None:
        """After a rebalance: the new owner re-reads these from the committed offsets."""
        for table in (self.requests, self.responses):
            for eid in [e for e, r in table.items() if r.partition in partitions]:
                del table[eid]

    def pending(self) -> Iterable[Record]:
        yield from self.requests.values()
        yield from self.responses.values()
