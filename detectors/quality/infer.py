"""A data-quality schema inferred from reference data (`infertap fit` of a DataQuality document).

Per feature: its type (declared, else from the column: booleans; integers, also a float column
that holds whole numbers and gaps, as pandas reads an integer column with empty cells; other
numbers; text with at most `max_categories` distinct values, at most half the rows, is
categorical, other text a string), its share of missing values, its range (numbers), its
categories (categorical), its distinct values and the share of its most common one (the
constant check). For the whole frame: the share of duplicate rows in chunks of the window's
size (at most `MAX_CHUNKS` chunks, spread over the reference). Declared fields
(`params.schema`) win over inferred ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from infertap.detectors.quality.schema import (
    NUMERIC_TYPES,
    Category,
    DataQualityParams,
    DeclaredFeature,
    FeatureSchema,
    FeatureType,
    Schema,
)
from infertap.detectors.reference import ReferenceError

#: most reference chunks the duplicate share is measured on
MAX_CHUNKS = 200
#: most categories a categorical feature may have (declared categorical, categories inferred)
MAX_INFERRED_CATEGORIES = 10_000
DEFAULT_CHUNK = 1000


def read_frame(path: Path, names: Sequence[str]) -> Any:
    """The reference as a pandas DataFrame of the named columns: csv, parquet (by name; every column in
    order when the file lacks some names but has as many columns) or npy (columns in feature order)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise ReferenceError(f"reference data {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            x = np.load(path, allow_pickle=False)
            x = x.reshape(-1, 1) if x.ndim == 1 else x
            if x.ndim != 2 or (names and x.shape[1] != len(names)):
                raise ReferenceError(f"{path}: shape {x.shape}, but the spec names {len(names)} features")
            return pd.DataFrame(x, columns=list(names) or [f"f{j}" for j in range(x.shape[1])])
        if suffix not in (".csv", ".parquet", ".pq"):
            raise ReferenceError(f"{path}: reference data must be .csv, .parquet or .npy")
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        if isinstance(exc, ReferenceError):
            raise
        raise ReferenceError(f"{path}: cannot be read as {suffix[1:]}: {str(exc).splitlines()[0]}") from None
    if not names or all(n in frame.columns for n in names):
        return frame[list(names)] if names else frame
    if len(frame.columns) == len(names):
        return frame.set_axis(list(names), axis=1)
    missing = [n for n in names if n not in frame.columns]
    raise ReferenceError(f"{path}: no column {', '.join(map(repr, missing))} (the spec's features)")


def infer_schema(
    frame: Any,
    names: Sequence[str],
    declared: dict[str, DeclaredFeature],
    params: DataQualityParams,
    progress: Callable[[str], None] | None = None,
) -> Schema:
    """The schema of `frame`'s columns `names`, declared fields taking precedence."""
    say = progress or (lambda _text: None)
    if len(frame) == 0:
        raise ReferenceError("the reference data has no rows")
    features = []
    for j, name in enumerate(names):
        features.append(infer_feature(name, frame[name], declared.get(name), params))
        say(f"schema of {j + 1}/{len(names)} features")
    share, chunk = duplicate_share(frame[list(names)], params.chunk_size or DEFAULT_CHUNK, say)
    return Schema(features=features, rows=len(frame), duplicate_share=share, chunk_size=chunk)


def declared_only(names: Sequence[str], declared: dict[str, DeclaredFeature]) -> Schema:
    """A schema from declarations alone (every feature has a type; categorical ones their categories)."""
    features = []
    for name in names:
        own = declared[name]
        kind = own.implied_type
        assert kind is not None  # missing_declarations said every feature has one
        features.append(_apply(FeatureSchema(name=name, type=kind), own))
    return Schema(features=features)


def infer_feature(name: str, column: Any, own: DeclaredFeature | None, params: DataQualityParams) -> FeatureSchema:
    """One feature's schema from its reference column (a pandas Series)."""
    missing = column.isna()
    present = column[~missing]
    kind = own.implied_type if own is not None else None
    kind = kind or infer_type(present, bool(missing.any()), params.max_categories)
    feature = FeatureSchema(
        name=name,
        type=kind,
        missing_share=float(missing.mean()),
        distinct=int(present.nunique()),
        top_share=float(present.value_counts(normalize=True).max()) if len(present) else None,
    )
    if kind in NUMERIC_TYPES:
        numbers = _numbers(name, present)
        finite = numbers[np.isfinite(numbers)]
        if finite.size:
            feature.min, feature.max = float(finite.min()), float(finite.max())
    elif kind == "categorical" and (own is None or own.categories is None):
        feature.categories = _categories(name, present)
    return _apply(feature, own) if own is not None else feature


def infer_type(present: Any, has_missing: bool, max_categories: int) -> FeatureType:
    """The type of a column's present values (see the module docstring)."""
    import pandas as pd

    dtype = present.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        values = present.to_numpy(dtype=np.float64)
        whole = values.size > 0 and bool(np.all(np.isfinite(values) & (values == np.floor(values))))
        return "integer" if has_missing and whole else "numeric"
    values = present.tolist()
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        return "boolean"
    if values and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        return "integer" if all(float(v).is_integer() for v in values) else "numeric"
    distinct = present.nunique()
    return "categorical" if distinct <= max_categories and distinct <= max(1, len(values) // 2) else "string"


def duplicate_share(frame: Any, chunk: int, say: Callable[[str], None]) -> tuple[float, int]:
    """(mean share of rows repeating an earlier row of their chunk, chunk size) over the reference."""
    n = len(frame)
    size = min(chunk, n)
    if size < 2:
        return 0.0, size
    full = n // size
    picks = np.unique(np.linspace(0, full - 1, min(full, MAX_CHUNKS)).astype(int))
    shares = []
    for k, start in enumerate(picks * size):
        shares.append(float(frame.iloc[start : start + size].duplicated().mean()))
        if (k + 1) % 20 == 0 or k + 1 == len(picks):
            say(f"duplicate rows in {k + 1}/{len(picks)} chunks of {size}")
    return float(np.mean(shares)), size


def _apply(feature: FeatureSchema, own: DeclaredFeature) -> FeatureSchema:
    """Declared fields over inferred ones."""
    fields = own.model_dump(exclude_unset=True, exclude_none=True)
    if "categories" in fields:
        fields["type"] = fields.get("type", "categorical")
    merged = feature.model_copy(update={**fields, "declared": sorted(fields)})
    if merged.type not in NUMERIC_TYPES:
        merged.min = merged.max = None
    if merged.type != "categorical":
        merged.categories = None
    return merged


def _numbers(name: str, present: Any) -> np.ndarray:
    """A numeric feature's reference values as floats; ReferenceError naming a value that is no number."""
    values = present.tolist()
    bad = next((v for v in values if isinstance(v, (str, bytes)) or not _is_number(v)), None)
    if bad is not None:
        raise ReferenceError(
            f"reference column {name!r} holds {bad!r}, which is not a number: declare its type "
            "(params.schema) categorical or string"
        )
    return np.asarray(values, dtype=np.float64)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def _categories(name: str, present: Any) -> list[Category]:
    values = [v.item() if isinstance(v, np.generic) else v for v in present.unique().tolist()]
    if len(values) > MAX_INFERRED_CATEGORIES:
        raise ReferenceError(
            f"reference column {name!r} has {len(values)} distinct values, too many categories to infer: "
            "declare them (params.schema) or its type string"
        )
    values = [v if isinstance(v, (str, int, float, bool)) else str(v) for v in values]
    try:
        return sorted(values)
    except TypeError:  # mixed numbers and text
        return sorted(values, key=str)
