"""Reference data (what 'no drift' looks like) from csv, parquet or npy, as a float matrix.

csv and parquet: the feature columns by name when the file has them all, else every column
in order; categorical string values become their codes (the spec's `categories`). npy: a
2-D array (or 1-D, for one feature), columns in feature order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from infertap.detectors.settings import FeatureSettings


class ReferenceError(ValueError):
    """Reference data that cannot be used; the message names the file."""


def load_reference(path: Path, features: Sequence[FeatureSettings] = ()) -> np.ndarray:
    """Load `path` and return a 2-D float64 array with one column per feature."""
    path = Path(path)
    if not path.exists():
        raise ReferenceError(f"reference data {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        x = np.load(path, allow_pickle=False)
        x = x.reshape(-1, 1) if x.ndim == 1 else x
        if x.ndim != 2:
            raise ReferenceError(f"{path}: expected a 2-D array, got shape {x.shape}")
        return _check(np.asarray(x, dtype=np.float64), features, path)
    if suffix in (".csv", ".parquet", ".pq"):
        import pandas as pd

        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        names = [f.name for f in features]
        if names and all(n in frame.columns for n in names):
            frame = frame[names]
        return _check(_matrix(frame, features, path), features, path)
    raise ReferenceError(f"{path}: reference data must be .csv, .parquet or .npy")


def load_labelled(path: Path, features: Sequence[FeatureSettings], target: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, targets) of a labelled csv or parquet file: the feature columns by name and the `target` column.

    For the estimators fitted on labelled reference data (`labelled` backends: CBPE, DLE).
    """
    path = Path(path)
    if not path.exists():
        raise ReferenceError(f"reference data {path} does not exist")
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise ReferenceError(f"{path}: labelled reference data must be .csv or .parquet (with a {target!r} column)")
    import pandas as pd

    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ReferenceError(f"{path}: cannot be read as {path.suffix.lower()[1:]}: {exc}") from None
    names = [f.name for f in features]
    missing = [n for n in [*names, target] if n not in frame.columns]
    if missing:
        raise ReferenceError(f"{path}: no column {', '.join(map(repr, missing))} (features and params.target)")
    if frame[target].isna().any():
        raise ReferenceError(f"{path}: column {target!r} has empty values: every reference row needs its label")
    return _check(_matrix(frame[names], features, path), features, path), frame[target].to_numpy()


def _matrix(frame, features: Sequence[FeatureSettings], path: Path) -> np.ndarray:
    """A frame's columns as one float64 matrix; categorical values to their codes (the spec's categories)."""
    columns = []
    for j, column in enumerate(frame.columns):
        values = frame[column].to_numpy()
        feature = features[j] if j < len(features) else None
        if feature is not None and feature.categories is not None:
            codes = {v: i for i, v in enumerate(feature.categories)}
            mapped = [codes.get(v, codes.get(str(v), -1)) for v in values]
            if -1 in mapped:
                raise ReferenceError(
                    f"{path}: column {column!r} has a value outside the categories of {feature.name!r}"
                )
            values = np.asarray(mapped)
        try:
            columns.append(np.asarray(values, dtype=np.float64))
        except (ValueError, TypeError):
            raise ReferenceError(
                f"{path}: column {column!r} is not numeric (give its categories in the spec)"
            ) from None
    return np.stack(columns, axis=1)


def _check(x: np.ndarray, features: Sequence[FeatureSettings], path: Path) -> np.ndarray:
    if features and x.shape[1] != len(features):
        raise ReferenceError(f"{path}: {x.shape[1]} columns, but the spec names {len(features)} features")
    if x.shape[0] == 0:
        raise ReferenceError(f"{path}: no rows")
    return x
