"""Reference corpora of the text detectors: what "no drift" reads like.

- `.txt`: one text a line (empty lines skipped);
- `.jsonl`: one JSON value a line: a string, an object holding the field (a string, or an
  OpenAI body), or an OpenAI request / answer body itself (the messages the field selects are
  taken, as from the stream);
- `.csv`, `.parquet`: the field's column (or the only column).

The LLM response signals read answers the same way (`read_answers`): a `.jsonl` of answer
bodies gives the finish reasons and token counts too; a `.csv` / `.parquet` may carry the
columns `finish_reason`, `refusal`, `tool_calls`, `output_tokens` and `status` beside the text.
Errors are `ReferenceError`s naming the file and the line or column.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from infertap.detectors.decode import DecodeError
from infertap.detectors.reference import ReferenceError
from infertap.detectors.text import extract
from infertap.detectors.text.frame import LLM_COLUMNS, TextColumn

SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet", ".pq")


def read_texts(path: Path, column: TextColumn) -> list[str]:
    """The texts of the corpus at `path` for `column` (its name is the field or column to read)."""
    rows = _read(Path(path), column, answers=False)
    return [r[0] for r in rows]


def read_answers(path: Path, field: str = "response") -> list[list[Any]]:
    """Rows of the LLM response layout (`LLM_COLUMNS`) from a corpus of answers."""
    return _read(Path(path), TextColumn(field, "output"), answers=True)


def _read(path: Path, column: TextColumn, answers: bool) -> list[list[Any]]:
    if not path.is_file():
        raise ReferenceError(f"reference corpus {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ReferenceError(f"{path}: a text corpus must be .txt, .jsonl, .csv or .parquet")
    if suffix == ".txt":
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        rows = [_plain(line) if answers else [line] for line in lines if line.strip()]
    elif suffix == ".jsonl":
        rows = _jsonl(path, column, answers)
    else:
        rows = _table(path, column, answers)
    if not rows:
        raise ReferenceError(f"{path}: no texts")
    return rows


def _plain(text: str) -> list[Any]:
    """An answer known only by its text."""
    return [text, None, None, 0, math.nan, 200]


def _jsonl(path: Path, column: TextColumn, answers: bool) -> list[list[Any]]:
    rows: list[list[Any]] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                raise ReferenceError(f"{path}:{number}: not JSON") from None
            try:
                rows += _value_rows(value, column, answers)
            except DecodeError as err:
                raise ReferenceError(f"{path}:{number}: {err.message}") from None
    return rows


def _value_rows(value: Any, column: TextColumn, answers: bool) -> list[list[Any]]:
    if isinstance(value, dict) and column.name in value:
        value = value[column.name]
    if isinstance(value, str):
        return [_plain(value) if answers else [value]]
    if answers:
        found = extract.answers(value)
        usage = value.get("usage") if isinstance(value.get("usage"), dict) else {}
        tokens = usage.get("completion_tokens", usage.get("output_tokens"))
        share = tokens / len(found) if isinstance(tokens, int) else math.nan
        return [[a.text, a.finish_reason, a.refusal, a.tool_calls, share, 200] for a in found]
    if column.source == "output" and extract.is_openai_answer(value):
        return [[a.text] for a in extract.answers(value)]
    if extract.is_openai_request(value):
        return [[t] for t in extract.request_texts(value, column.messages, column.name)]
    raise DecodeError("wrong_shape", f"neither a string, an object with {column.name!r}, nor an OpenAI body")


def _table(path: Path, column: TextColumn, answers: bool) -> list[list[Any]]:
    import pandas as pd

    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except (ValueError, OSError, ImportError) as exc:
        raise ReferenceError(f"{path}: cannot read it: {exc}") from None
    if column.name in frame.columns:
        name = column.name
    elif len(frame.columns) == 1:
        name = frame.columns[0]
    else:
        raise ReferenceError(f"{path}: no column {column.name!r} (columns: {', '.join(map(str, frame.columns))})")
    texts = frame[name].fillna("").astype(str).tolist()
    if not answers:
        return [[t] for t in texts]
    rows = [_plain(t) for t in texts]
    for j, key in enumerate(LLM_COLUMNS[1:], 1):
        if key in frame.columns:
            for row, value in zip(rows, frame[key].tolist(), strict=True):
                row[j] = None if (isinstance(value, float) and math.isnan(value) and key != "output_tokens") else value
    return rows
