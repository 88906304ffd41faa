"""One window's data-quality checks against a schema (pure: numpy and the schema).

A window is an object array (rows x features) of the values as sent: JSON's null, numbers,
strings, booleans (V2 tensors' elements as Python values, BYTES as bytes). Per feature:

- missing: null or NaN; a violation when the window's share exceeds the reference's plus
  `missing_margin` (any at all for a feature declared `nullable: false`);
- type: a value the feature's type does not take (numeric: a number, not a boolean; integer: a
  whole number; boolean: true or false; categorical: a scalar; string: text);
- range: a number outside the reference's [min, max] widened by the tolerance, or infinite;
- unseen: a categorical value outside the categories;
- constant: the window holds one value only where the reference makes that unlikely (its most
  common value's share to the power rows - 1 below `constant_alpha`);
- empty: every value missing (a feature the reference has values for);

and for the window, duplicate: rows equal to an earlier row of the window, above the
reference's share plus `duplicate_margin`.

`type`, `range` and `unseen` violate when their share exceeds `type_share`, `range_share`,
`unseen_share` (default 0: any). Each violation carries its count, share, threshold and the
first `examples` offending rows and values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infertap.detectors.quality.schema import (
    NUMERIC_TYPES,
    Check,
    DataQualityParams,
    FeatureSchema,
    Schema,
    category_key,
)
from infertap.detectors.result import FeatureQuality, QualityExample, QualityViolation

#: characters of a text value an example keeps
EXAMPLE_CHARS = 100
_NONE = type(None)
_FAST_NUMBERS = frozenset({float, int, _NONE})
_FAST_TEXT = frozenset({str, _NONE})


@dataclass
class ColumnCheck:
    """What one feature's column holds: row indices failing each check, and its distinct values."""

    missing: np.ndarray
    type: np.ndarray
    range: np.ndarray
    unseen: np.ndarray
    distinct: int
    low: float | None = None
    high: float | None = None


@dataclass
class WindowQuality:
    """The checks of one window: per-feature figures, violations, duplicate rows."""

    features: list[FeatureQuality] = field(default_factory=list)
    violations: list[QualityViolation] = field(default_factory=list)
    duplicates: int = 0
    duplicate_share: float = 0.0
    duplicate_threshold: float = 0.0


def check_window(x: np.ndarray, schema: Schema, params: DataQualityParams) -> WindowQuality:
    """Every check of `params.checks` on the window `x` (rows x the schema's features, in order)."""
    n = int(x.shape[0])
    out = WindowQuality()
    wanted = set(params.checks)
    for j, feature in enumerate(schema.features):
        column = x[:, j] if x.ndim == 2 and j < x.shape[1] else np.full(n, None, dtype=object)
        checked = check_column(column, feature, params.range_tolerance)
        out.features.append(_figures(feature, checked, n, params))
        out.violations += [v for v in _violations(feature, column, checked, n, params) if v.check in wanted]
    if n:
        out.duplicate_threshold = min(1.0, schema.duplicate_share + params.duplicate_margin)
        repeats = duplicate_rows(x)
        out.duplicates = int(repeats.size)
        out.duplicate_share = repeats.size / n
        # a schema declared without reference data does not know how often rows repeat: no verdict
        if "duplicate" in wanted and schema.rows and n >= 2 and out.duplicate_share > out.duplicate_threshold:
            out.violations.append(
                _violation(
                    "_all",
                    "duplicate",
                    repeats,
                    n,
                    out.duplicate_threshold,
                    schema.duplicate_share,
                    [_example(i, list(x[i])) for i in repeats[: params.examples].tolist()],
                    f"{repeats.size} of {n} rows repeat an earlier row of the window ({_pct(out.duplicate_share)}), "
                    f"above the reference's {_pct(schema.duplicate_share)} + {_points(params.duplicate_margin)}",
                )
            )
    return out


# --- one column -----------------------------------------------------------------------------


def check_column(values: np.ndarray, feature: FeatureSchema, tolerance: float) -> ColumnCheck:
    """Which rows of one feature's column are missing, of the wrong type, out of range, unseen."""
    kinds = {type(v) for v in values.tolist()} if values.size else set()
    if feature.type in NUMERIC_TYPES and kinds <= _FAST_NUMBERS:
        return _numbers(values, feature, tolerance)
    if feature.type in ("categorical", "string") and kinds <= _FAST_TEXT:
        return _texts(values, feature)
    return _cells(values, feature, tolerance)


def _numbers(values: np.ndarray, feature: FeatureSchema, tolerance: float) -> ColumnCheck:
    """Plain numbers and nulls (the usual column): vectorised."""
    numbers = np.array(values.tolist(), dtype=np.float64)  # null -> NaN
    missing = np.isnan(numbers)
    present = ~missing
    finite = np.isfinite(numbers)
    wrong = present & finite & (numbers != np.floor(numbers)) if feature.type == "integer" else np.zeros_like(present)
    outside = present & ~finite
    allowed = feature.allowed_range(tolerance)
    if allowed is not None:
        with np.errstate(invalid="ignore"):
            outside |= finite & ((numbers < allowed[0]) | (numbers > allowed[1]))
    outside &= ~wrong
    seen = numbers[present & finite]
    return ColumnCheck(
        missing=np.flatnonzero(missing),
        type=np.flatnonzero(wrong),
        range=np.flatnonzero(outside),
        unseen=np.empty(0, dtype=np.int64),
        distinct=int(np.unique(numbers[present]).size),
        low=float(seen.min()) if seen.size else None,
        high=float(seen.max()) if seen.size else None,
    )


def _texts(values: np.ndarray, feature: FeatureSchema) -> ColumnCheck:
    """Text and nulls in a categorical or string feature (the usual column): set lookups, no per-value calls."""
    cells = values.tolist()
    missing = [i for i, v in enumerate(cells) if v is None]
    unseen: list[int] = []
    if feature.type == "categorical":
        allowed = {c for c in feature.categories or () if isinstance(c, str)}
        unseen = [i for i, v in enumerate(cells) if v is not None and v not in allowed]
    none = np.empty(0, dtype=np.int64)
    return ColumnCheck(
        missing=np.asarray(missing, dtype=np.int64),
        type=none,
        range=none,
        unseen=np.asarray(unseen, dtype=np.int64),
        distinct=len(set(cells) - {None}),
    )


def _cells(values: np.ndarray, feature: FeatureSchema, tolerance: float) -> ColumnCheck:
    """Mixed values: one look at each."""
    missing, wrong, outside, unseen = [], [], [], []
    keys: set[Any] = set()
    allowed = feature.allowed_range(tolerance) if feature.type in NUMERIC_TYPES else None
    categories = {category_key(c) for c in feature.categories or ()} if feature.type == "categorical" else None
    low, high = math.inf, -math.inf
    for i, value in enumerate(values.tolist()):
        if is_missing(value):
            missing.append(i)
            continue
        keys.add(_hashable(value))
        if not type_ok(value, feature.type):
            wrong.append(i)
            continue
        if feature.type in NUMERIC_TYPES:
            number = float(value)
            if math.isfinite(number):
                low, high = min(low, number), max(high, number)
            if not math.isfinite(number) or (allowed is not None and not allowed[0] <= number <= allowed[1]):
                outside.append(i)
        elif categories is not None and category_key(value) not in categories:
            unseen.append(i)
    return ColumnCheck(
        missing=np.asarray(missing, dtype=np.int64),
        type=np.asarray(wrong, dtype=np.int64),
        range=np.asarray(outside, dtype=np.int64),
        unseen=np.asarray(unseen, dtype=np.int64),
        distinct=len(keys),
        low=low if math.isfinite(low) else None,
        high=high if math.isfinite(high) else None,
    )


def is_missing(value: Any) -> bool:
    """null, or a NaN."""
    if value is None:
        return True
    return isinstance(value, (float, np.floating)) and value != value


def type_ok(value: Any, kind: str) -> bool:
    """Whether a present value is one the type takes (infinite numbers are the range check's)."""
    boolean = isinstance(value, (bool, np.bool_))
    if kind == "boolean":
        return boolean
    if kind == "string":
        return isinstance(value, (str, bytes))
    if kind == "categorical":
        return isinstance(value, (str, bytes, int, float, bool, np.generic))
    if boolean or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    if kind == "integer" and isinstance(value, (float, np.floating)):
        return not math.isfinite(value) or float(value).is_integer()
    return True


def duplicate_rows(x: np.ndarray) -> np.ndarray:
    """Indices of rows equal to an earlier row of `x` (nulls and NaN equal to each other)."""
    n = int(x.shape[0])
    if n < 2:
        return np.empty(0, dtype=np.int64)
    rows = x.tolist()
    kinds = {type(v) for row in rows for v in row}
    if kinds <= _FAST_NUMBERS:  # plain numbers: compare rows as bytes
        numbers = np.array(rows, dtype=np.float64) + 0.0  # -0.0 as 0.0
        numbers[np.isnan(numbers)] = np.nan  # one NaN bit pattern
        view = np.ascontiguousarray(numbers).view(np.dtype((np.void, numbers.dtype.itemsize * numbers.shape[1])))
        _, first = np.unique(view.ravel(), return_index=True)
        repeated = np.ones(n, dtype=bool)
        repeated[first] = False
        return np.flatnonzero(repeated)
    keys = zip(*(_column_keys(x[:, j].tolist()) for j in range(x.shape[1])), strict=True)
    seen: set[tuple] = set()
    out = []
    for i, key in enumerate(keys):
        if key in seen:
            out.append(i)
        else:
            seen.add(key)
    return np.asarray(out, dtype=np.int64)


def _column_keys(cells: list[Any]) -> list[Any]:
    """A column's values as keys rows are compared by (missing values as None), cheaply for plain columns."""
    kinds = {type(v) for v in cells}
    if kinds <= _FAST_NUMBERS:
        return [None if v is None or v != v else v for v in cells]
    if kinds <= _FAST_TEXT:
        return cells
    return [None if is_missing(v) else _hashable(v) for v in cells]


# --- verdicts -------------------------------------------------------------------------------


def _figures(feature: FeatureSchema, checked: ColumnCheck, n: int, params: DataQualityParams) -> FeatureQuality:
    return FeatureQuality(
        name=feature.name,
        type=feature.type,
        rows=n,
        missing=int(checked.missing.size),
        missing_share=checked.missing.size / n if n else 0.0,
        type_violations=int(checked.type.size),
        out_of_range=int(checked.range.size),
        unseen=int(checked.unseen.size),
        distinct=checked.distinct,
        min=checked.low,
        max=checked.high,
        constant=_constant(feature, checked, n, params),
        empty=_empty(feature, checked, n),
    )


def _violations(
    feature: FeatureSchema, column: np.ndarray, checked: ColumnCheck, n: int, params: DataQualityParams
) -> list[QualityViolation]:
    if not n:
        return []
    name, k = feature.name, params.examples
    out = []
    missing_threshold = 0.0 if not feature.nullable else min(1.0, feature.missing_share + params.missing_margin)
    share = checked.missing.size / n
    if checked.missing.size and share > missing_threshold:
        why = (
            "the feature is declared nullable: false"
            if not feature.nullable
            else f"above the reference's {_pct(feature.missing_share)} + {_points(params.missing_margin)}"
        )
        out.append(
            _violation(
                name,
                "missing",
                checked.missing,
                n,
                missing_threshold,
                feature.missing_share,
                _examples(column, checked.missing, k),
                f"{checked.missing.size} of {n} rows miss {name} ({_pct(share)}), {why}",
            )
        )
    for check, rows, threshold, what in (
        ("type", checked.type, params.type_share, f"not of type {feature.type}"),
        ("range", checked.range, params.range_share, _range_words(feature, params.range_tolerance)),
        ("unseen", checked.unseen, params.unseen_share, "categories the reference does not have"),
    ):
        if rows.size and rows.size / n > threshold:
            out.append(
                _violation(
                    name,
                    check,  # type: ignore[arg-type]  # one of the three literal checks above
                    rows,
                    n,
                    threshold,
                    None,
                    _examples(column, rows, k),
                    f"{rows.size} of {n} values of {name} are {what} ({_pct(rows.size / n)})",
                )
            )
    if _constant(feature, checked, n, params):
        present = np.setdiff1d(np.arange(n), checked.missing)
        out.append(
            _violation(
                name,
                "constant",
                present,
                n,
                params.constant_alpha,
                feature.top_share,
                _examples(column, present, min(k, 1)),
                f"every present value of {name} in the window is the same ({present.size} rows), unlikely by "
                f"chance: the reference's most common value has a share of {_pct(feature.top_share or 0.0)}",
            )
        )
    if _empty(feature, checked, n):
        out.append(
            _violation(
                name,
                "empty",
                checked.missing,
                n,
                1.0,
                feature.missing_share,
                [],
                f"every value of {name} in the window is missing ({n} rows)",
            )
        )
    return out


def _constant(feature: FeatureSchema, checked: ColumnCheck, n: int, params: DataQualityParams) -> bool:
    present = n - checked.missing.size
    if checked.distinct != 1 or present < 2 or feature.top_share is None or (feature.distinct or 0) < 2:
        return False
    return feature.top_share ** (present - 1) < params.constant_alpha


def _empty(feature: FeatureSchema, checked: ColumnCheck, n: int) -> bool:
    return n > 0 and checked.missing.size == n and feature.missing_share < 1.0


def _violation(
    feature: str,
    check: Check,
    rows: np.ndarray,
    n: int,
    threshold: float,
    reference: float | None,
    examples: list[QualityExample],
    message: str,
) -> QualityViolation:
    return QualityViolation(
        feature=feature,
        check=check,
        count=int(rows.size),
        share=rows.size / n,
        threshold=threshold,
        reference=reference,
        examples=examples,
        message=message,
    )


def _examples(column: np.ndarray, rows: np.ndarray, k: int) -> list[QualityExample]:
    return [_example(i, column[i]) for i in rows[:k].tolist()]


def _example(row: int, value: Any) -> QualityExample:
    return QualityExample(row=row, value=example_value(value))


def example_value(value: Any) -> Any:
    """A value as JSON can carry it: numpy scalars as Python, bytes as text, NaN and infinities as
    text (JSON has none), long text cut, rows item by item."""
    if isinstance(value, (list, tuple)):
        return [example_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value if len(value) <= EXAMPLE_CHARS else value[:EXAMPLE_CHARS] + "…"
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = repr(value)
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "…"


def _hashable(value: Any) -> Any:
    """A key for counting distinct values and comparing rows."""
    if isinstance(value, (list, dict)):
        return ("o", repr(value))
    return category_key(value)


def _range_words(feature: FeatureSchema, tolerance: float) -> str:
    allowed = feature.allowed_range(tolerance)
    if allowed is None:
        return "infinite"
    return f"outside [{allowed[0]:.6g}, {allowed[1]:.6g}] or infinite"


def _pct(share: float) -> str:
    return f"{100 * share:.3g}%"


def _points(margin: float) -> str:
    return f"{100 * margin:.3g} points"
