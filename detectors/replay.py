"""Offline replay: a Detector document's backend over a csv or parquet file, in the spec's windows.

`infertap detect SPEC --replay FILE [--output OUT.jsonl]`, for backfills and model CI. Each
row of the file is one logged prediction, its columns those the events would give (the
spec's features by name; `id` and `timestamp` columns when the file has them). The rows go
the stream's own way, so a replay says what the worker would have published for the same
rows: each row becomes the Kafka record(s) the logger writes (a V1 request of the input
features, a V1 response of the output features, joined by id as the spec's `events` says),
the spec's window (`window.make_window`) closes windows of them, the worker's decoder
(`decode.Decoder`: categories, missing values, rejects) makes each window's frame, the
worker's evaluator judges it (`evaluator.build_backend`, online detectors fed row by row),
and the detection is the CloudEvent the worker publishes (`events.window_event`), written as
one JSON line (CloudEvents' JSON format, `data` the body). Every detector kind replays.

Differences from the stream, by necessity: offsets are row numbers (topic = the file's name,
partition 0, a row's request and response at its number); without an `id` column an event's id is `<file>:<row>`; without a `timestamp`
column the events' time is the row number in seconds (count windows only: time windows
need the column). The last count window, if short, is not judged (the worker would still be
waiting for it); the last time window is (the file is all there is).

A performance estimator's reference labels are its `target` column: when the replayed file
has that column too, each window's realised figures follow its estimate as a second line
(`performancekind: realised`, the same `window` and `event_ids`), the figure a dashboard
draws beside the estimate once labels arrive.

Bad input (no such file, not csv/parquet, a column the spec needs missing, time windows
without timestamps) raises `ReplayError`, one sentence; `infertap detect` exits 2 with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
from pydantic import BaseModel, Field

from infertap.detectors.decode import DecodedWindow, Decoder, Event, Record
from infertap.detectors.events import Origin, window_event
from infertap.detectors.framing import make_decoder
from infertap.detectors.result import DetectionResult
from infertap.detectors.settings import WorkerSettings
from infertap.detectors.window import bounds, make_window
from infertap.stream.events import REQUEST_TYPE, RESPONSE_TYPE

#: rows handed to the window at a time (progress is reported between batches)
BATCH = 2000


class ReplaySettings(BaseModel):
    """`infertap detect SPEC --replay FILE`: judge a file's rows instead of reading Kafka."""

    replay: Path | None = Field(
        default=None, description="Replay this csv or parquet file through the detector (no Kafka) and exit."
    )
    output: Path | None = Field(
        default=None, description="Replay: write the detections here (JSON lines; default stdout)."
    )
    id_column: str = Field(default="id", description="Replay: the column of event ids, when the file has it.")
    timestamp_column: str = Field(
        default="timestamp",
        description="Replay: the column of event times (ISO 8601 or epoch seconds), when the file has it.",
    )


class ReplayError(ValueError):
    """A replay that cannot run as asked; the message is one sentence for the user."""


@dataclass
class ReplayOutcome:
    rows: int
    windows: int = 0
    detections: int = 0
    rejected: int = 0
    unjudged: int = 0  # rows of a last count window that never filled
    reasons: dict[str, int] = field(default_factory=dict)


#: a progress callback: (rows done, rows in all, windows judged)
Progress = Callable[[int, int, int], None]


def read_frame(path: Path) -> Any:
    """The file as a pandas DataFrame; ReplayError when it is missing or not csv/parquet."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"replay file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ReplayError(f"replay file {path} must be .csv or .parquet")
    try:
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ReplayError(f"replay file {path} cannot be read as {suffix[1:]}: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise ReplayError(f"replay file {path} holds no rows")
    return frame


def replay(
    settings: WorkerSettings,
    path: Path,
    out: IO[bytes],
    options: ReplaySettings | None = None,
    progress: Progress | None = None,
) -> ReplayOutcome:
    """Judge the rows of `path` in `settings`' windows; write each detection to `out` as a JSON line."""
    from infertap.detectors.evaluator import Evaluator, build_backend

    options = options or ReplaySettings()
    frame = read_frame(path)
    decoder = make_decoder(settings)  # the worker's: numbers, or text for the text detectors
    events = RowEvents(frame, decoder, settings, options, Path(path).name)
    window = make_window(settings.window.size, settings.window.duration, settings.window.slide)
    # never the worker's saved online state (stateDir): a replay starts from the detector as fitted, saves nothing
    evaluator = Evaluator(build_backend(settings.model_copy(update={"state_dir": None})))
    labels = events.labels(getattr(evaluator.backend, "target", None)) if evaluator.backend.labelled else None
    origin = Origin(settings.source_uri, settings.inference_service, settings.name)
    outcome = ReplayOutcome(rows=len(frame))

    def judge(closed: list[list[Event]]) -> None:
        for items in closed:
            decoded = decoder.decode(items)
            decoded.bounds = bounds(items)  # as the worker's reader does
            outcome.windows += 1
            for reject in decoded.rejects:
                outcome.rejected += 1
                outcome.reasons[reject.reason] = outcome.reasons.get(reject.reason, 0) + 1
            if not decoded.x.shape[0]:
                continue
            result, _ = evaluator.evaluate(decoded.x)
            write(out, origin, decoded, result)
            outcome.detections += 1
            if labels is not None:
                realised = realised_result(evaluator.backend, decoded, labels)
                if realised is not None:
                    write(out, origin, decoded, realised)
                    outcome.detections += 1

    done = 0
    for batch in events.batches(BATCH):
        judge(window.add(batch))
        done += len(batch)
        if progress is not None:
            progress(done, len(frame), outcome.windows)
    if settings.window.duration is not None:  # past the end of every window holding a row: all close
        judge(window.tick(float(events.times.max()) + settings.window.duration))
    outcome.unjudged = len(window.retained())
    evaluator.close()
    return outcome


def write(out: IO[bytes], origin: Origin, decoded: DecodedWindow, result: DetectionResult) -> None:
    """One detection as the worker would publish it, in CloudEvents' JSON format (one line)."""
    event = window_event(origin, decoded, result)
    line = {k: _jsonable(v) for k, v in event.get_attributes().items()}
    data = event.get_data()
    line["data"] = orjson.loads(data) if isinstance(data, (bytes, str)) else data
    out.write(orjson.dumps(line) + b"\n")


def realised_result(backend: Any, decoded: DecodedWindow, labels: dict[str, Any]) -> DetectionResult | None:
    """A performance estimator's realised figures of the window's rows that have a label (None: no row has)."""
    rows = [i for i, e in enumerate(decoded.row_event.tolist()) if decoded.events[e].id in labels]
    if not rows:
        return None
    y = backend.target_codes(np.asarray([labels[decoded.events[decoded.row_event[i]].id] for i in rows]))
    return backend.realised_result(decoded.x[rows], y)


class RowEvents:
    """The file's rows as the events the logger would have put on Kafka (bodies and headers as it writes them).

    Numbers go as V1 rows of values (`{"instances": [[...]]}`), text columns (the text
    detectors) as V1 rows of objects keyed by the column (`{"instances": [{"prompt": "..."}]}`).
    """

    def __init__(self, frame: Any, decoder: Any, settings: WorkerSettings, options: ReplaySettings, name: str):
        self.frame, self.settings, self.name = frame, settings, name
        self.mode = settings.events
        if getattr(decoder, "llm", False):
            raise ReplayError(
                f"{settings.detector} reads logged OpenAI answers (finish reasons, refusals, tool calls), "
                "which a table's columns do not hold: it cannot be replayed from a file"
            )
        self.text = not isinstance(decoder, Decoder)
        if self.text:  # the text decoder's columns (defaults when the spec lists no text feature)
            self.inputs = [c.name for c in decoder.columns if c.source == "input"]
            self.outputs = [c.name for c in decoder.columns if c.source == "output"]
        else:
            if not decoder.features:
                raise ReplayError(
                    "the spec lists no features: a replay reads the columns its features name (list spec.features)"
                )
            self.inputs = [f.name for f in decoder.inputs] if self.mode != "response" else []
            self.outputs = [f.name for f in decoder.outputs]
        wanted = self.inputs + self.outputs
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise ReplayError(
                f"replay file {name} has no column {', '.join(map(repr, missing))} "
                f"(the spec's features; it has {', '.join(map(str, frame.columns))})"
            )
        self.ids = self._ids(options.id_column)
        self.times = self._times(options.timestamp_column)

    def _ids(self, column: str) -> list[str]:
        if column in self.frame.columns:
            ids = [str(v) for v in self.frame[column].tolist()]
            if any(not i or i == "nan" for i in ids):
                raise ReplayError(f"replay file {self.name}: column {column!r} has empty ids")
            return ids
        return [f"{self.name}:{i}" for i in range(len(self.frame))]

    def _times(self, column: str) -> np.ndarray:
        if column not in self.frame.columns:
            if self.settings.window.duration is not None:
                raise ReplayError(
                    f"replay file {self.name} has no {column!r} column: time windows (window.duration) need the "
                    "events' times (give --timestamp-column, or count windows)"
                )
            return np.arange(len(self.frame), dtype=np.float64)
        import pandas as pd

        values = self.frame[column]
        try:
            if pd.api.types.is_numeric_dtype(values):
                return values.to_numpy(dtype=np.float64)
            stamps = pd.to_datetime(values, utc=True, format="ISO8601")
            return stamps.astype("int64").to_numpy() / 1e9
        except (ValueError, TypeError):
            raise ReplayError(
                f"replay file {self.name}: column {column!r} holds a time that is neither ISO 8601 nor epoch seconds"
            ) from None

    def labels(self, target: str | None) -> dict[str, Any] | None:
        """Event id -> label from the `target` column, when the file has it (rows with an empty label left out)."""
        if not target or target not in self.frame.columns:
            return None
        values = self.frame[target].tolist()
        return {i: v for i, v in zip(self.ids, values, strict=True) if not _empty(v)}

    def batches(self, size: int) -> Iterator[list[Event]]:
        """The events in file order, `size` at a time."""
        inputs = _rows(self.frame, self.inputs, self.text)
        outputs = _rows(self.frame, self.outputs, self.text)
        for start in range(0, len(self.frame), size):
            yield [self._event(i, inputs, outputs) for i in range(start, min(start + size, len(self.frame)))]

    def _event(self, i: int, inputs: list | None, outputs: list | None) -> Event:
        eid, ts = self.ids[i], float(self.times[i])
        records: list[Record] = []
        if self.mode != "response":
            assert inputs is not None  # request and joined modes name input features
            records.append(self._record(i, eid, REQUEST_TYPE, {"instances": [inputs[i]]}, ts))
        if self.mode != "request":
            assert outputs is not None
            records.append(self._record(i, eid, RESPONSE_TYPE, {"predictions": [outputs[i]]}, ts))
        return Event(eid, tuple(records), ts)

    def _record(self, offset: int, eid: str, kind: str, body: dict, ts: float) -> Record:
        headers = {"ce_specversion": b"1.0", "ce_id": eid.encode(), "ce_type": kind.encode()}
        if kind == RESPONSE_TYPE:
            headers["ce_statuscode"] = b"200"
        value = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        return Record(self.name, 0, offset, value, headers, ts, eid.encode())


def _rows(frame: Any, columns: list[str], keyed: bool = False) -> list | None:
    """The columns' values row by row as JSON-able Python values (NaN and None become null);
    `keyed`: each row an object {column: value}."""
    if not columns:
        return None
    rows = frame[columns].astype(object).where(frame[columns].notna(), None).to_numpy().tolist()
    plain = [[v.item() if isinstance(v, np.generic) else v for v in row] for row in rows]
    return [dict(zip(columns, row, strict=True)) for row in plain] if keyed else plain


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value
