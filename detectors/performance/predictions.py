"""Predictions out of logged response events: what the model answered, per row, by the id a
label will name.

A response's body is V1 (`{"predictions": [...]}`: a class or a number per row, or a row of
class probabilities) or V2 (`{"outputs": [...]}`, JSON or binary: the prediction tensor,
`output_name` or the first, and optionally a separate probability tensor). For a classifier,
a row of numbers is the class probabilities (column j is the j-th of the spec's classes, or
class `j` when none are listed) and the predicted class is their argmax; a single value is
the class itself. Everything is compared as class names (`infertap.stream.feedback.Targets`).
Bodies that say nothing we can read become `DecodeError`s (dead letters with the reason).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from infertap.detectors.decode import DecodeError, Record
from infertap.serving.codec import CodecError, binary_header_length, decode_v2_response
from infertap.stream.feedback import Targets, label_text, number

_RESPONSE_OK = b"2"


@dataclass(slots=True)
class Prediction:
    """One logged response: its rows' predicted values (class names, or numbers) and the class
    probabilities when the response had them (None otherwise)."""

    id: str
    time: float  # event time, seconds since the epoch
    values: list[Any]
    proba: list[list[float]] | None = None


def event_time(record: Record) -> float:
    """The record's CloudEvent `time`, else its Kafka timestamp (seconds since the epoch)."""
    raw = record.headers.get("ce_time")
    if raw:
        try:
            return datetime.fromisoformat(raw.decode("ascii").replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return record.timestamp


class PredictionReader:
    """Turns response records into `Prediction`s for one task."""

    def __init__(
        self,
        targets: Targets,
        join_on: str = "event_id",
        id_header: str = "X-Request-Id",
        output_name: str | None = None,
        probability_output: str | None = None,
    ):
        self.targets = targets
        self.classification = targets.task != "regression"
        self.join_on = join_on
        self.id_header = "-".join(p[:1].upper() + p[1:].lower() for p in id_header.split("-"))  # as `metadata` keys it
        self.output_name, self.probability_output = output_name, probability_output
        self.columns = targets.classes  # probability column j -> class; None: class `j`

    def prediction_id(self, record: Record) -> str | None:
        """The id a label names: the event id, or the header's value in `metadata` (None when absent)."""
        if self.join_on == "event_id":
            raw = record.headers.get("ce_id")
            return raw.decode("utf-8", "replace") if raw else None
        raw = record.headers.get("ce_metadata")
        if not raw:
            return None
        try:
            values = json.loads(raw).get(self.id_header)
        except (ValueError, AttributeError):
            return None
        value = values[0] if isinstance(values, list) and values else values
        return value if isinstance(value, str) and value else None

    def read(self, record: Record, ident: str) -> Prediction:
        """The prediction in one response record; DecodeError when its body says none."""
        body = record.value or b""
        try:
            obj: Any = orjson.loads(body)
            header = None
        except orjson.JSONDecodeError:
            obj, header = self._binary_header(body)
        if type(obj) is dict and "predictions" in obj:
            values, proba = self._v1(obj["predictions"])
        elif type(obj) is dict and isinstance(obj.get("outputs"), list):
            values, proba = self._v2(body, header)
        else:
            raise DecodeError("wrong_shape", 'response has neither "predictions" (V1) nor "outputs" (V2)')
        return Prediction(ident, event_time(record), values, proba)

    # --- bodies -------------------------------------------------------------------------

    @staticmethod
    def _binary_header(body: bytes) -> tuple[Any, int]:
        try:
            length = binary_header_length(body)
            return orjson.loads(body[:length]), length
        except (CodecError, orjson.JSONDecodeError, ValueError):
            raise DecodeError("not_json", "body is not JSON (nor a V2 binary body with a JSON header)") from None

    def _v1(self, predictions: Any) -> tuple[list[Any], list[list[float]] | None]:
        if type(predictions) is not list or not predictions:
            raise DecodeError("wrong_shape", '"predictions" must be a non-empty list')
        if type(predictions[0]) is list:
            quick = self._proba_rows(predictions) if self.classification else None
            return quick if quick is not None else self._rows(np.asarray(predictions, dtype=object))
        return [self._value(v) for v in predictions], None

    def _proba_rows(self, rows: list) -> tuple[list[Any], list[list[float]]] | None:
        """Rows of class probabilities as JSON gave them, without numpy (a few µs a row less);
        None when any row is not plain numbers of the expected width (the full path says why)."""
        width = len(self.columns) if self.columns is not None else len(rows[0])
        values = []
        for row in rows:
            if type(row) is not list or len(row) != width or width < 2:
                return None
            try:
                sum(row)  # a TypeError for anything but numbers, in C
            except TypeError:
                return None
            best = row.index(max(row))
            values.append(self.columns[best] if self.columns is not None else str(best))
        return values, rows

    def _v2(self, body: bytes, header: int | None) -> tuple[list[Any], list[list[float]] | None]:
        try:
            response = decode_v2_response(body, header)
        except CodecError as err:
            raise DecodeError("wrong_shape", str(err)) from None
        tensors = {t.name: t.data for t in response.outputs}
        if not tensors:
            raise DecodeError("wrong_shape", "response has no output tensors")
        name = self.output_name or next(iter(tensors))
        if name not in tensors:
            raise DecodeError("wrong_shape", f"no output tensor named {name!r} (got {sorted(tensors)})")
        data = np.asarray(tensors[name])
        proba_name = self.probability_output
        if proba_name is not None and proba_name != name:
            if proba_name not in tensors:
                raise DecodeError("wrong_shape", f"no output tensor named {proba_name!r} (got {sorted(tensors)})")
            values = [self._value(_plain(v)) for v in data.reshape(data.shape[0], -1)[:, 0]]
            _, proba = self._rows(np.asarray(tensors[proba_name]))
            if proba is not None and len(proba) != len(values):
                raise DecodeError("wrong_shape", f"{len(values)} predictions and {len(proba)} rows of probabilities")
            return values, proba
        if data.ndim >= 2 and data.reshape(data.shape[0], -1).shape[1] > 1:
            return self._rows(data.reshape(data.shape[0], -1))
        return [self._value(_plain(v)) for v in data.reshape(-1)], None

    def _rows(self, rows: np.ndarray) -> tuple[list[Any], list[list[float]] | None]:
        """Rows of numbers: class probabilities (classification) or a one-value row (regression)."""
        if rows.ndim != 2:
            raise DecodeError("wrong_shape", "prediction rows must all have the same length")
        if not self.classification:
            if rows.shape[1] != 1:
                raise DecodeError("wrong_shape", f"a regression prediction is one number per row (got {rows.shape[1]})")
            return [self._value(_plain(v)) for v in rows[:, 0]], None
        try:
            proba = rows.astype(np.float64)
        except (ValueError, TypeError):
            raise DecodeError("bad_value", "prediction rows hold values that are not numbers") from None
        columns = self.columns
        if columns is not None and proba.shape[1] != len(columns):
            raise DecodeError(
                "wrong_shape", f"{proba.shape[1]} probabilities per row, and the spec lists {len(columns)} classes"
            )
        best = proba.argmax(axis=1)
        values = [columns[i] for i in best] if columns is not None else [str(i) for i in best]
        return values, proba.tolist()

    def _value(self, value: Any) -> Any:
        if self.classification:
            name = self.targets.class_name(value)
            if name is None:
                shown = label_text(value) if label_text(value) is not None else repr(value)[:40]
                raise DecodeError("unknown_category", f"predicted {shown} is not a class of the spec")
            return name
        out = number(value)
        if out is None:
            raise DecodeError("bad_value", f"prediction {repr(value)[:40]} is not a finite number")
        return out


def _plain(value: Any) -> Any:
    """numpy scalars and bytes as Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value.item() if hasattr(value, "item") else value


def is_ok_response(record: Record) -> bool:
    """A response whose status is 2xx (or unsaid): the model predicted."""
    status = record.headers.get("ce_statuscode")
    return status is None or status[:1] == _RESPONSE_OK
