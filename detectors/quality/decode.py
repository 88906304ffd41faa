"""The data-quality frame of a window: every row, the values as sent.

The numeric decoder (`infertap.detectors.decode.Decoder`) turns a window into numbers: a null
becomes NaN and its row is dropped, a string in a numeric feature or an unknown category
dead-letters its event. Those are what a data-quality check counts, so this decoder reads the
same bodies (V1 rows, rows of objects, columnar inputs, V2 tensors, joined responses) the same
way but keeps every value as it came: `x` is an object array (rows x features) of JSON values
(V2 tensors' elements as Python numbers, BYTES as bytes). A row of objects that lacks a
feature gives it null (a missing value, not a dead letter). Events it cannot read at all (not
JSON, no rows, rows of the wrong width) are dead-lettered with the decoder's reasons; events
whose response failed (joined and response modes) are left out and counted, as everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from infertap.detectors.decode import DecodedWindow, DecodeError, Decoder, Event, Reject


class QualityDecoder(Decoder):
    """A window as an object frame of the spec's features (see the module docstring)."""

    def decode(self, events: Sequence[Event]) -> DecodedWindow:
        """Every readable row of the window, values untouched; unreadable events become rejects."""
        start, end = getattr(events, "start", None), getattr(events, "end", None)  # a time window's span
        failed = [e for e in events if e.failed]
        kept = [e for e in events if not e.failed]
        width = len(self.features)
        quick = self._quick_rows(kept) if self._quick_width else None  # V1 rows of lists, parsed once
        flat: list[list] = []
        owners: list[int] = []
        used: list[Event] = []
        rejects: list[Reject] = []
        for i, event in enumerate(kept):
            rows = quick[i] if quick is not None else None
            if rows is None:
                try:
                    rows = as_lists(self._event_rows(event), width)
                except DecodeError as err:
                    rejects.append(Reject(event.records[0], err.reason, err.message))
                    continue
            flat += rows
            owners += [len(used)] * len(rows)
            used.append(event)
        x = objects(flat, width)
        window = DecodedWindow(x, np.asarray(owners, dtype=np.int64), used, self.feature_names, rejects)
        if start is not None and end is not None:
            window.bounds = (start, end)
        window.excluded["failed_response"] = len(failed)
        window.left_out += failed
        return window

    def _event_rows(self, event: Event) -> Any:
        if self.events_mode != "joined":
            return super()._event_rows(event)
        request, response = event.request, event.response
        if request is None or response is None:
            raise DecodeError("no_response", "request without its response")
        x_in = objects(self._request_rows(request), len(self.inputs)) if self.inputs else None
        x_out = objects(self._response_rows(response, len(self.outputs)), len(self.outputs)) if self.outputs else None
        if x_in is None or x_out is None:  # the spec checks one side only
            side = x_in if x_in is not None else x_out
            if side is None:
                raise DecodeError("wrong_feature_count", "no features to check (list spec.features)")
            return side
        if x_in.shape[0] != x_out.shape[0]:
            raise DecodeError("wrong_shape", f"request has {x_in.shape[0]} rows, its response {x_out.shape[0]}")
        return np.concatenate([x_in, x_out], axis=1)

    def _v1_rows(self, obj: Any) -> list | np.ndarray:
        """Rows of objects take null for a feature they lack; everything else as the numeric decoder reads it."""
        if isinstance(obj, dict) and ("instances" in obj) != ("inputs" in obj):
            value = obj.get("instances", obj.get("inputs"))
            if isinstance(value, list) and value and isinstance(value[0], dict):
                if not all(isinstance(row, dict) for row in value):
                    raise DecodeError("wrong_shape", "instances mix objects and other rows")
                names = [f.name for f in self.inputs]
                return [[row.get(name) for name in names] for row in value]
        return super()._v1_rows(obj)

    def _columns_to_rows(self, columns: dict) -> np.ndarray:
        """Columnar V1 `inputs`, each column kept as it came (stacked as numbers, text would turn them to text)."""
        names = [f.name for f in self.inputs] or list(columns)
        missing = [n for n in names if n not in columns]
        if missing:
            raise DecodeError("wrong_feature_count", f"inputs lack feature(s) {missing}")
        cols = [columns[n] for n in names]
        if not all(isinstance(c, list) for c in cols) or len({len(c) for c in cols}) != 1 or not cols[0]:
            raise DecodeError("wrong_shape", "inputs columns must be non-empty lists of one length")
        out = np.empty((len(cols[0]), len(cols)), dtype=object)
        for j, column in enumerate(cols):
            for i, value in enumerate(column):
                out[i, j] = value
        return out

    def _pick_tensors(self, tensors: dict[str, np.ndarray], name: str | None, features: list, what: str) -> np.ndarray:
        """Per-feature V2 tensors side by side as objects (a BOOL or BYTES tensor beside FP32 ones keeps its
        values); one tensor as the numeric decoder picks it."""
        if name is None and len(features) > 1 and all(f.name in tensors for f in features):
            cols = [tensors[f.name].reshape(tensors[f.name].shape[0], -1) for f in features]
            if any(c.shape[1] != 1 for c in cols) or len({c.shape[0] for c in cols}) != 1:
                raise DecodeError("wrong_shape", f"per-feature {what} tensors must be [n] or [n, 1] of one n")
            return np.concatenate([c.astype(object) for c in cols], axis=1)
        return super()._pick_tensors(tensors, name, features, what)


def as_lists(rows: Any, width: int) -> list[list]:
    """One event's rows (lists of values, or an array) as lists of `width` Python values; DecodeError
    when they are not `width` values each."""
    if isinstance(rows, np.ndarray):
        array = rows.reshape(rows.shape[0], -1) if rows.ndim != 2 else rows
        if array.shape[1] != width:
            raise DecodeError("wrong_feature_count", f"rows have {array.shape[1]} values, expected {width}")
        return array.astype(object).tolist()  # numbers become Python numbers, BYTES stay bytes
    for row in rows:
        if not isinstance(row, list) or len(row) != width:
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise DecodeError("wrong_feature_count", f"row has {got} values, expected {width}")
    return rows


def objects(rows: Any, width: int) -> np.ndarray:
    """Rows of `width` values (lists, or an array) as one object array (rows x width)."""
    rows = as_lists(rows, width)
    try:
        out = np.array(rows, dtype=object)
    except ValueError:  # cells that are lists of their own
        out = np.empty(0)
    if out.shape == (len(rows), width):
        return out
    out = np.empty((len(rows), width), dtype=object)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):  # cell by cell: a cell may itself be a list (a type violation)
            out[i, j] = value
    return out
