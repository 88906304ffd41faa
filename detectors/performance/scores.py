"""Realised performance of one window of labelled predictions: pure numpy, no I/O.

Classification: accuracy; precision, recall, F1 and support per class and their macro
averages over the classes present in the window (labels or predictions, as scikit-learn's
defaults); ROC AUC per class (one against the rest) and its macro average, from the logged
probabilities of the rows that have them; the confusion matrix (rows: label, columns:
prediction) over the known classes, or those seen. Regression: MAE, RMSE, MAPE (rows whose
label is 0 left out, counted), R². `tests/detectors/test_performance_scores.py` checks every
figure against scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DELAY_QUANTILES = (0.5, 0.9, 0.99)


def _order(names: set[str]) -> list[str]:
    """Classes in a stable order: numbers numerically, then text."""

    def key(name: str) -> tuple[int, float, str]:
        try:
            return (0, float(name), name)
        except ValueError:
            return (1, 0.0, name)

    return sorted(names, key=key)


def classification(
    predicted: Sequence[str],
    target: Sequence[str],
    classes: Sequence[str] | None = None,
    proba: np.ndarray | None = None,
    proba_classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The classification figures of one window; `proba[i]` the class probabilities of row i
    (NaN rows: none logged), column j of class `proba_classes[j]`."""
    y, p = np.asarray(target, dtype=object), np.asarray(predicted, dtype=object)
    present = _order(set(target) | set(predicted))
    listed = list(classes) if classes else []
    shown = listed + [c for c in present if c not in listed]  # the known classes first, in their order
    index = {c: i for i, c in enumerate(shown)}
    yi = np.fromiter((index[v] for v in target), dtype=np.int64, count=len(target))
    pi = np.fromiter((index[v] for v in predicted), dtype=np.int64, count=len(predicted))
    k = len(shown)
    matrix = np.bincount(yi * k + pi, minlength=k * k).reshape(k, k)
    tp = np.diag(matrix).astype(np.float64)
    predicted_n, support = matrix.sum(axis=0).astype(np.float64), matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted_n, out=np.zeros(k), where=predicted_n > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(k), where=both > 0)
    used = [index[c] for c in present]
    per_class: dict[str, dict[str, float | int | None]] = {
        c: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for c, i in ((c, index[c]) for c in present)
    }
    out: dict[str, Any] = {
        "n": int(len(y)),
        "accuracy": float((y == p).mean()) if len(y) else None,
        "precision_macro": float(precision[used].mean()) if used else None,
        "recall_macro": float(recall[used].mean()) if used else None,
        "f1_macro": float(f1[used].mean()) if used else None,
        "classes": shown,
        "confusion_matrix": matrix.tolist(),
        "per_class": per_class,
        "roc_auc": None,
        "roc_auc_rows": 0,
    }
    if proba is not None and proba_classes:
        auc, rows = _roc_auc(np.asarray(target, dtype=object), proba, list(proba_classes))
        out["roc_auc"], out["roc_auc_rows"] = auc.pop("_macro", None), rows
        for name, value in auc.items():
            per_class.setdefault(name, {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0})["roc_auc"] = value
    return out


def _roc_auc(target: np.ndarray, proba: np.ndarray, columns: list[str]) -> tuple[dict[str, float], int]:
    """ROC AUC per class, one against the rest (Mann-Whitney U on average ranks, ties halved),
    over the rows with probabilities; `_macro` their mean. Classes with no positive or no
    negative row have none."""
    proba = np.asarray(proba, dtype=np.float64)
    keep = np.isfinite(proba).all(axis=1)
    if not keep.any():
        return {}, 0
    scores, y = proba[keep], target[keep]
    out: dict[str, float] = {}
    for j, name in enumerate(columns[: scores.shape[1]]):
        positive = y == name
        n_pos = int(positive.sum())
        n_neg = len(y) - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        u = average_ranks(scores[:, j])[positive].sum() - n_pos * (n_pos + 1) / 2
        out[name] = float(u / (n_pos * n_neg))
    if out:
        out["_macro"] = float(np.mean(list(out.values())))
    return out, int(keep.sum())


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of `x`, ties given the mean of their ranks (scipy's `rankdata`, without
    importing scipy: half a second at a worker's first window)."""
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, len(x)])
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(starts + (counts + 1) / 2, counts)
    return ranks


def regression(predicted: Sequence[float], target: Sequence[float]) -> dict[str, Any]:
    """MAE, RMSE, MAPE (over the rows whose label is not 0; `mape_excluded` counts the others), R²
    (None with fewer than two rows or labels that do not vary)."""
    p, y = np.asarray(predicted, dtype=np.float64), np.asarray(target, dtype=np.float64)
    n = len(y)
    if not n:
        return {"n": 0, "mae": None, "rmse": None, "mape": None, "mape_excluded": 0, "r2": None}
    err = p - y
    nonzero = y != 0
    total = float(((y - y.mean()) ** 2).sum())
    return {
        "n": n,
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "mape": float(np.abs(err[nonzero] / y[nonzero]).mean()) if nonzero.any() else None,
        "mape_excluded": int((~nonzero).sum()),
        "r2": float(1 - (err**2).sum() / total) if n >= 2 and total > 0 else None,
    }


def delays(seconds: Sequence[float]) -> dict[str, float | None]:
    """The label-delay distribution of a window: quantiles (p50, p90, p99), mean, min, max, seconds."""
    d = np.asarray(seconds, dtype=np.float64)
    if not len(d):
        return {"p50": None, "p90": None, "p99": None, "mean": None, "min": None, "max": None}
    q = np.quantile(d, DELAY_QUANTILES)
    out: dict[str, float | None] = {
        f"p{round(level * 100)}": float(v) for level, v in zip(DELAY_QUANTILES, q, strict=True)
    }
    out.update(mean=float(d.mean()), min=float(d.min()), max=float(d.max()))
    return out
