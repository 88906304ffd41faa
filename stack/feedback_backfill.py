"""`infertap feedback FILE --id-column C --target-column T`: ground truth from a file, onto `<isvc>-feedback`.

A csv or parquet file of labels, one row per logged prediction (the id column: the id the
events carry, as `infertap.stream.feedback` says; the target column: its ground truth; an
optional time column: when it became known). The whole file is checked first, so a file with
a bad row sends nothing (exit 2 naming the row); then each row goes to the topic as the
sidecar's feedback endpoint sends it: an `io.infertap.feedback` CloudEvent keyed by the id,
through the stream contract's producer factory (murmur2-partitioned like the events), with a
progress bar. Records the broker does not acknowledge are counted: exit 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infertap.stream.feedback import Feedback, FeedbackError, Targets, Task, parse_time

CHUNK_ROWS = 50_000
SUFFIXES = (".csv", ".parquet", ".pq")


class BackfillError(ValueError):
    """The file cannot be sent (one sentence: exit 2)."""


@dataclass
class Columns:
    id: str
    target: str
    time: str | None = None

    @property
    def names(self) -> list[str]:
        return [self.id, self.target] + ([self.time] if self.time else [])


@dataclass
class Sent:
    """What a backfill did."""

    rows: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def count_rows(path: Path) -> int:
    """Rows of data in the file (parquet: from its footer; csv: lines after the header)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    lines, last = 0, b"\n"
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(0, lines + (last != b"\n") - 1)


def chunks(path: Path, columns: Columns) -> Iterator[Any]:
    """The file's rows in pandas frames of `CHUNK_ROWS`, only the columns asked for (ids as text)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BackfillError(f"{path}: feedback files are .csv or .parquet (got {suffix or 'no suffix'!r})")
    if not path.is_file():
        raise BackfillError(f"{path} does not exist")
    if suffix == ".csv":
        import pandas as pd

        try:
            header = list(pd.read_csv(path, nrows=0).columns)
        except (ValueError, OSError) as exc:  # EmptyDataError, ParserError are ValueErrors
            raise BackfillError(f"{path}: not a readable csv file ({exc})") from None
        _check_columns(path, header, columns)
        yield from pd.read_csv(path, usecols=columns.names, dtype={columns.id: str}, chunksize=CHUNK_ROWS)
        return
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own ArrowInvalid for a file that is no parquet
        raise BackfillError(f"{path}: not a readable parquet file ({exc})") from None
    _check_columns(path, parquet.schema_arrow.names, columns)
    for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, columns=columns.names):
        yield batch.to_pandas()


def _check_columns(path: Path, header: list[str], columns: Columns) -> None:
    missing = [c for c in columns.names if c not in header]
    if missing:
        raise BackfillError(
            f"{path} has no column {', '.join(map(repr, missing))} (it has {', '.join(map(repr, header[:20]))})"
        )


def _plain(value: Any) -> Any:
    """numpy and pandas scalars as Python values; None for missing."""
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return None if value != value else value.to_pydatetime()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def items(frame: Any, columns: Columns, first_row: int, targets: Targets, path: Path) -> list[Feedback]:
    """A frame's rows as feedback items; BackfillError naming the first bad row (1-based, as a
    spreadsheet counts the rows below the header)."""
    ids = frame[columns.id].tolist()
    values = frame[columns.target].tolist()
    times = frame[columns.time].tolist() if columns.time else None
    out = []
    for i, (ident, value) in enumerate(zip(ids, values, strict=True)):
        row = first_row + i + 1
        ident, value = _plain(ident), _plain(value)
        if ident is None or (isinstance(ident, str) and not ident.strip()):
            raise BackfillError(f"{path}: row {row}: the id ({columns.id!r}) is empty")
        if value is None:
            raise BackfillError(f"{path}: row {row}: the target ({columns.target!r}) is empty")
        when = None
        if times is not None:
            raw = _plain(times[i])
            try:
                when = (
                    raw
                    if isinstance(raw, datetime)
                    else parse_time(raw, columns.time or "time")
                    if raw is not None
                    else None
                )
            except FeedbackError as exc:
                raise BackfillError(f"{path}: row {row}: {exc.message}") from None
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
        item = Feedback(str(ident), value, when)
        try:
            targets.check(item, f"row {row}")
        except FeedbackError as exc:
            raise BackfillError(f"{path}: {exc.message}") from None
        out.append(item)
    return out


def check(path: Path, columns: Columns, targets: Targets, progress: Callable[[int], None] = lambda n: None) -> int:
    """Check every row (nothing is sent); the number of rows."""
    rows = 0
    for frame in chunks(path, columns):
        items(frame, columns, rows, targets, path)
        rows += len(frame)
        progress(len(frame))
    if not rows:
        raise BackfillError(f"{path} holds no rows")
    return rows


def send(
    path: Path,
    columns: Columns,
    topic: str,
    bootstrap: str,
    *,
    inference_service: str = "",
    kafka_config: dict[str, str] | None = None,
    task: Task | None = None,
    classes: list[str] | None = None,
    progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
) -> Sent:
    """Check the file, then send every row to `topic`; `progress(stage, rows done, rows in all)`."""
    from infertap.logger.sinks.kafka_records import to_record
    from infertap.stream import clients
    from infertap.stream.feedback import feedback_event
    from infertap.stream.kafka_url import KafkaURL

    targets = Targets(task, classes)
    total = count_rows(path)
    checked = [0]

    def checking(n: int) -> None:
        checked[0] += n
        progress("checking", checked[0], total)

    total = check(path, columns, targets, checking)
    if not clients.any_listening(KafkaURL.from_bootstrap(bootstrap).hosts):
        raise ConnectionError(f"no broker listens at {bootstrap}")
    producer = clients.producer(
        bootstrap,
        client_id="infertap-feedback",
        log_name="infertap.stack.feedback.librdkafka",
        kafka_config=kafka_config,
        linger_ms=20,
        properties={"queue.buffering.max.messages": 200_000},
    )
    sent = Sent()

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            sent.failed += 1
            if len(sent.errors) < 3:
                sent.errors.append(str(err))

    source = f"infertap://feedback/{path.name}"
    for frame in chunks(path, columns):
        for item in items(frame, columns, sent.rows, targets, path):
            key, value, headers = to_record(feedback_event(item, source, inference_service))
            while True:
                try:
                    producer.produce(topic, key=key, value=value, headers=headers, on_delivery=report)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    producer.poll(0.1)
            sent.rows += 1
            if sent.rows % 1000 == 0:
                producer.poll(0)
                progress("sending", sent.rows, total)
    left = producer.flush(60)
    sent.failed += left
    progress("sending", sent.rows, total)
    return sent
