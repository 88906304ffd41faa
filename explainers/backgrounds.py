"""Explainer data stored as data: backgrounds and anchor discretisation in `.npz`, never pickles.

`infertap fit` writes one `.npz` per explainer with:

- `background` (rows x features, float32): SHAP background (k-means centres for KernelShap,
  a seeded sample otherwise) or captum baselines;
- `weights` (rows): weight of each background row (k-means cluster sizes; ones for a sample);
- `feature_names` (strings);
- `train` (rows x features) and `disc_perc` for AnchorTabular (its sampler draws from them);
- `meta`: a JSON string (explainer type, source file, rows, created).

`.npz` files are loaded with `allow_pickle=False`, so they can hold no code. Saved
explainers (dill or pickle, e.g. alibi's `save_explainer` folders) load only with the
explicit opt-in `allow_pickle`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from infertap.explainers.errors import ExplainerLoadError

SEED = 0
PICKLE_SUFFIXES = (".pkl", ".pickle", ".dill", ".joblib")


@dataclass
class Background:
    """Rows an explainer compares against, with weights and feature names."""

    data: np.ndarray
    weights: np.ndarray | None = None
    feature_names: list[str] | None = None
    train: np.ndarray | None = None
    disc_perc: tuple[float, ...] = (25.0, 50.0, 75.0)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])


def local_path(uri: str) -> Path:
    """`file://PATH` or PATH -> Path (remote schemes are not fetched locally)."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "file":
        return Path(uri[len("file://") :]).expanduser()
    if scheme and len(scheme) > 1:
        raise ExplainerLoadError(f"only local files are read here: use file://PATH or a path (got {uri!r})")
    return Path(uri).expanduser()


def load_background(uri: str, size: int = 100) -> Background:
    """A `.npz` from `infertap fit`, or raw rows in `.npy` / `.csv` (a seeded sample of `size` rows)."""
    path = local_path(uri)
    if path.is_dir():
        for name in ("background.npz", "reference.npy"):
            if (path / name).exists():
                path = path / name
                break
    if not path.exists():
        raise ExplainerLoadError(f"no background data at {path}")
    if path.suffix in PICKLE_SUFFIXES:
        raise ExplainerLoadError(f"{path}: backgrounds are read as data (.npz, .npy, .csv), never unpickled")
    try:
        if path.suffix == ".npz":
            return _from_npz(path)
        rows = (
            np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
            if path.suffix == ".csv"
            else np.load(path, allow_pickle=False)
        )
    except (ValueError, OSError) as err:
        raise ExplainerLoadError(f"cannot read background {path}: {err}") from None
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim < 2 or len(rows) == 0:
        raise ExplainerLoadError(f"{path}: background needs rows x features, got shape {list(rows.shape)}")
    return Background(data=sample_rows(rows, size), train=rows, meta={"source": str(path)})


def _from_npz(path: Path) -> Background:
    with np.load(path, allow_pickle=False) as npz:
        if "background" not in npz:
            raise ExplainerLoadError(
                f"{path}: no `background` array (written by `infertap fit`?); has {sorted(npz.files)}"
            )
        get = lambda key: npz[key] if key in npz else None  # noqa: E731
        names = get("feature_names")
        meta = json.loads(str(npz["meta"])) if "meta" in npz else {}
        perc = get("disc_perc")
        return Background(
            data=np.asarray(npz["background"], dtype=np.float32),
            weights=get("weights"),
            feature_names=[str(n) for n in names] if names is not None else None,
            train=get("train"),
            disc_perc=tuple(float(p) for p in perc) if perc is not None else (25.0, 50.0, 75.0),
            meta=meta,
        )


def save_background(path: Path, background: Background) -> Path:
    """Write `background` as `.npz` (data only)."""
    arrays: dict[str, np.ndarray] = {
        "background": background.data.astype(np.float32),
        "meta": np.array(json.dumps(background.meta)),
    }
    if background.weights is not None:
        arrays["weights"] = np.asarray(background.weights, dtype=np.float64)
    if background.feature_names:
        arrays["feature_names"] = np.array(background.feature_names, dtype=str)
    if background.train is not None:
        arrays["train"] = background.train.astype(np.float32)
        arrays["disc_perc"] = np.asarray(background.disc_perc, dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def sample_rows(rows: np.ndarray, size: int) -> np.ndarray:
    """At most `size` rows, a seeded sample so two runs pick the same ones."""
    if len(rows) <= size:
        return rows
    idx = np.random.default_rng(SEED).choice(len(rows), size, replace=False)
    return rows[np.sort(idx)]


def kmeans_background(
    rows: np.ndarray, k: int, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """k-means centres and cluster sizes (shap.kmeans without its pickled DenseData), as data."""
    from sklearn.cluster import KMeans

    flat = rows.reshape(len(rows), -1)
    k = min(k, len(flat))
    km = KMeans(n_clusters=k, random_state=SEED, n_init=4).fit(flat)
    if progress:
        progress(1)
    centres = km.cluster_centers_.astype(np.float32)
    # shap.kmeans snaps each centre to the nearest observed value per feature (keeps categoricals valid).
    for j in range(flat.shape[1]):
        values = np.unique(flat[:, j])
        if len(values) <= 32:
            centres[:, j] = values[np.abs(values[None, :] - centres[:, j : j + 1]).argmin(1)]
    weights = np.bincount(km.labels_, minlength=k).astype(np.float64)
    return centres.reshape((k, *rows.shape[1:])), weights


def require_pickle_opt_in(uri: str, allow: bool) -> Path:
    """The path of a pickled artefact, or ExplainerLoadError when the opt-in is missing."""
    path = local_path(uri)
    if not allow:
        raise ExplainerLoadError(
            f"refusing to load {path}: saved explainers are pickles (dill), which run code when loaded. "
            "Pass --allow-pickle (settings allow_pickle: true) if you trust the file, or refit with "
            "`infertap fit`, which stores the explainer's data as .npz."
        )
    return path


def load_pickled(uri: str, allow: bool) -> Any:
    """Unpickle a saved explainer only when `allow`; otherwise refuse with a sentence saying why and how."""
    path = require_pickle_opt_in(uri, allow)
    if not path.exists():
        raise ExplainerLoadError(f"no saved explainer at {path}")
    if path.is_dir():  # alibi's save_explainer folder: the caller needs alibi.saving.load_explainer
        return path
    import dill

    with open(path, "rb") as fh:
        try:
            return dill.load(fh)
        except Exception as err:  # noqa: BLE001 - version skew shows up as any error (kserve#1088)
            raise ExplainerLoadError(
                f"cannot unpickle {path}: {type(err).__name__}: {err} "
                "(pickles break across library versions; refit with `infertap fit`)"
            ) from None
