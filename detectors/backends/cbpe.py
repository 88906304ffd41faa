"""CBPE: confidence-based performance estimation of a classifier (binary or multiclass), without labels.

The method is NannyML's (Apache-2.0; this is our own code): once the predicted probabilities
are calibrated, the probability of each row's class *is* the chance the row is labelled so,
so the expected confusion matrix of a window is a sum of probabilities. With `P` the
calibrated probabilities (rows × classes), `ŷ` the model's predicted class and `n` rows:

- expected true positives of class c: the sum of `P[i, c]` over rows predicted c; predicted
  c: the count of those rows; actual c: the sum of `P[:, c]` over all rows;
- accuracy = Σ_c TP_c / n; precision_c = TP_c / predicted_c; recall_c = TP_c / actual_c;
  F1_c = 2 TP_c / (predicted_c + actual_c): the positive class's for binary models
  (`average: binary`, the default for two classes), the mean over classes for `macro`;
- ROC AUC: the ROC curve of the model's own scores with each row counting `P[i, c]` as a
  positive and `1 - P[i, c]` as a negative (mean over classes, one-vs-rest, for multiclass).

Realised figures are the same formulas with the labels' one-hot matrix in place of `P`, so
estimate and realised line up by construction.

**Calibration**: one isotonic regression per class (one-vs-rest) of the reference scores on
the reference labels, then rows renormalised to sum to 1. Isotonic, because it is monotone
(the model's ranking, hence its ROC curve, is kept), assumes no shape for the miscalibration
(Platt scaling assumes a sigmoid, wrong for trees and boosted models), and thousands of
reference rows are plenty for it. `calibration: auto` (the default, as NannyML) calibrates a
class only when that lowers the expected calibration error on held-out tenths of the
reference (10 stratified splits, 10 equal-count bins), so well-calibrated models are left
alone; `isotonic` always, `none` never. The calibrators are saved as their breakpoints
(`calibration.npz`) and applied with `np.interp`: no pickles, no scikit-learn to judge.

Inputs: the spec's features include the probability columns (`probabilities`, default
every feature), from the response (V1 `predictions` of probabilities, as KServe's
PREDICT_PROBA answers, or the V2 output the spec's `output:` names). One column is the
positive class's probability of a binary model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from infertap.detectors.backends.performance_estimation import ALL, MACRO, Key, PerformanceEstimator

CALIBRATION = "calibration.npz"
CALIBRATIONS = ("auto", "isotonic", "none")
AVERAGES = ("binary", "macro")


class CBPE(PerformanceEstimator):
    """Params: `probabilities`, `classes`, `decision_threshold` (0.5), `average`, `calibration` (auto),
    and the family's `target`, `metrics`, `chunk_size`, `threshold_std`, `band_std`."""

    METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
    BOUNDS = dict.fromkeys(METRICS, (0.0, 1.0))
    PARAMS = ("probabilities", "classes", "decision_threshold", "average", "calibration")

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(feature_names, params)
        p = self.params
        names = p.get("probabilities", list(self.feature_names))
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names:
            raise ValueError(f"CBPE: parameter 'probabilities' must name the probability features (got {names!r})")
        self.probability_columns = [self.column(str(n), "probability column") for n in names] if feature_names else []
        width = len(names)
        self.k = 2 if width == 1 else width
        classes = p.get("classes", list(range(self.k)))
        if not isinstance(classes, list) or len(classes) != self.k or len({str(c) for c in classes}) != self.k:
            raise ValueError(
                f"CBPE: parameter 'classes' must list {self.k} distinct labels, one per probability column (got {classes!r})"
            )
        self.classes: list[Any] = classes
        self.labels = [_label(c) for c in classes]  # the gauge's `class` label of each
        threshold = p.get("decision_threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
            raise ValueError(f"CBPE: parameter 'decision_threshold' must lie between 0 and 1 (got {threshold!r})")
        self.decision_threshold = float(threshold)
        self.average = p.get("average", "binary" if self.k == 2 else "macro")
        if self.average not in AVERAGES or (self.average == "binary" and self.k != 2):
            raise ValueError(
                f"CBPE: parameter 'average' must be macro, or binary for two classes (got {self.average!r})"
            )
        self.calibration = p.get("calibration", "auto")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"CBPE: parameter 'calibration' must be one of {', '.join(CALIBRATIONS)}")
        self.problem = "binary" if self.k == 2 else "multiclass"
        #: per class, the isotonic breakpoints (x, y); None: the class's scores are used as they are
        self.calibrators: list[tuple[np.ndarray, np.ndarray] | None] = [None] * self.k
        self.components: dict[str, dict[str, list[float | None]]] = {}
        # binary: the positive class's figures are those a window is judged on; else their macro means
        judged = self.labels[1] if self.average == "binary" else MACRO
        self.headline = [(m, ALL if m == "accuracy" else judged) for m in self.metrics]

    # --- scores, predictions, calibration ----------------------------------------------

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The model's probabilities, rows × classes (a single column is the positive class's), clipped to [0, 1]."""
        s = np.clip(x[:, self.probability_columns], 0.0, 1.0)
        return np.column_stack([1.0 - s[:, 0], s[:, 0]]) if s.shape[1] == 1 else s

    def predicted(self, s: np.ndarray) -> np.ndarray:
        """The model's predicted class per row: the positive class above the decision threshold, else the argmax."""
        if self.k == 2:
            return (s[:, 1] >= self.decision_threshold).astype(np.int64)
        return np.argmax(s, axis=1)

    def calibrated(self, s: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (rows sum to 1)."""
        if self.k == 2:
            p = _apply(self.calibrators[1], s[:, 1])
            return np.column_stack([1.0 - p, p])
        out = np.column_stack([_apply(self.calibrators[c], s[:, c]) for c in range(self.k)])
        total = out.sum(axis=1, keepdims=True)
        return np.divide(out, total, out=np.full_like(out, 1.0 / self.k), where=total > 0)

    def target_codes(self, y: np.ndarray) -> np.ndarray:
        """Reference labels as class indices (labels match `classes` as given or as text)."""
        codes = {label: i for i, label in enumerate(self.labels)}
        out = np.empty(len(y), dtype=np.int64)
        for i, value in enumerate(np.asarray(y).tolist()):
            key = _label(value)
            if key not in codes:
                raise ValueError(f"target value {value!r} is none of the classes {self.classes} (params.classes)")
            out[i] = codes[key]
        return out

    # --- the family's hooks -------------------------------------------------------------

    def _fit_model(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if not self.probability_columns:
            raise ValueError("CBPE: the spec names no features (the probability columns)")
        raw = x[:, self.probability_columns]
        if not np.isfinite(raw).all() or raw.min() < 0 or raw.max() > 1:
            raise ValueError(
                "the probability columns hold values outside [0, 1]: CBPE needs the predicted probabilities"
            )
        codes = self.target_codes(y)
        s = self.scores(x)
        for c in range(1, 2) if self.k == 2 else range(self.k):
            truth = (codes == c).astype(np.float64)
            wanted = self.calibration == "isotonic" or (
                self.calibration == "auto" and needs_calibration(s[:, c], truth)
            )
            self.calibrators[c] = isotonic(s[:, c], truth) if wanted else None
        return codes

    def estimate(self, x: np.ndarray) -> dict[Key, float]:
        s = self.scores(x)
        return self._figures(self.calibrated(s), s, self.predicted(s))

    def realised(self, x: np.ndarray, y: np.ndarray) -> dict[Key, float]:
        s = self.scores(x)
        onehot = np.zeros((len(y), self.k))
        onehot[np.arange(len(y)), y] = 1.0
        return self._figures(onehot, s, self.predicted(s))

    def _figures(self, w: np.ndarray, s: np.ndarray, yp: np.ndarray) -> dict[Key, float]:
        """Every figure from `w`, the chance of each row being each class (probabilities, or labels one-hot)."""
        n, k = w.shape
        if n == 0:
            return {}
        tp = np.bincount(yp, weights=w[np.arange(n), yp], minlength=k)
        predicted = np.bincount(yp, minlength=k).astype(np.float64)
        actual = w.sum(axis=0)
        per_class = {
            "precision": _ratio(tp, predicted),
            "recall": _ratio(tp, actual),
            "f1": _ratio(2 * tp, predicted + actual),
        }
        out: dict[Key, float] = {}
        for metric in self.metrics:
            if metric == "accuracy":
                out[(metric, ALL)] = float(tp.sum() / n)
                continue
            if metric == "roc_auc":
                values = [expected_auc(s[:, c], w[:, c]) for c in range(k)]
            else:
                values = [float(v) for v in per_class[metric]]
            for label, value in zip(self.labels, values, strict=True):
                out[(metric, label)] = value
            out[(metric, MACRO)] = _mean(values)
        return out

    def _components(self, x: np.ndarray, y: np.ndarray) -> None:
        """Per-observation spreads on the reference (the model's predictions against the labels), per class."""
        s = self.scores(x)
        yp = self.predicted(s)
        n = len(y)
        correct = (yp == y).astype(np.float64)
        parts: dict[str, dict[str, list[float | None]]] = {"accuracy": {ALL: [float(correct.std()), 1.0]}}
        for name in ("precision", "recall", "f1", "roc_auc"):
            parts[name] = {}
        for c, label in enumerate(self.labels):
            pred_c, true_c = yp == c, y == c
            parts["precision"][label] = _spread(true_c[pred_c].astype(np.float64), n)
            parts["recall"][label] = _spread(pred_c[true_c].astype(np.float64), n)
            relevant = pred_c | true_c
            hits = (pred_c & true_c)[relevant].astype(np.float64)
            tp = hits.sum()
            misses = len(hits) - tp
            correction = len(hits) / (tp + 0.5 * misses) if len(hits) and (tp + 0.5 * misses) else 0.0
            parts["f1"][label] = _spread(hits * correction, n)
            parts["roc_auc"][label] = delong_components(s[:, c], true_c)
        self.components = parts

    def _sampling_error(self, n: int) -> dict[Key, float]:
        out: dict[Key, float] = {}
        for metric in self.metrics:
            per_class = self.components.get(metric) or {}
            variances = {
                label: _auc_variance(part, n) if metric == "roc_auc" else _variance(part, n)
                for label, part in per_class.items()
            }
            for label, variance in variances.items():
                out[(metric, label)] = math.sqrt(variance)
            if metric == "roc_auc" and self.k == 2:  # one curve seen from both sides: the two AUCs are one
                out[(metric, MACRO)] = out[(metric, self.labels[1])]
            elif metric != "accuracy" and variances:
                # the mean of K per-class figures: its variance is the sum of theirs over K²
                out[(metric, MACRO)] = math.sqrt(sum(variances.values())) / len(variances)
        return out

    # --- folders ------------------------------------------------------------------------

    def _save_model(self, path: Path) -> None:
        arrays = {}
        for c, calibrator in enumerate(self.calibrators):
            if calibrator is not None:
                arrays[f"x{c}"], arrays[f"y{c}"] = calibrator
        np.savez(path / CALIBRATION, **arrays)

    def _state(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "calibrated": [c is not None for c in self.calibrators],
            "components": self.components,
        }

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        with np.load(path / CALIBRATION, allow_pickle=False) as arrays:
            self.calibrators = [
                (arrays[f"x{c}"], arrays[f"y{c}"]) if calibrated else None
                for c, calibrated in enumerate(state["calibrated"])
            ]
        self.components = state["components"]


# --- the method's pieces (also used by the benchmark) ---------------------------------------


def expected_auc(score: np.ndarray, weight: np.ndarray) -> float:
    """ROC AUC of `score` where row i counts `weight[i]` as a positive and `1 - weight[i]` as a negative.

    With 0/1 weights (the labels) this is the ordinary ROC AUC (ties count half, as the
    trapezoid between tied scores does); with calibrated probabilities, its expectation.
    """
    order = np.argsort(-score, kind="stable")
    s, w = score[order], weight[order]
    tps, fps = np.cumsum(w), np.cumsum(1.0 - w)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the end of each run of tied scores
    tps, fps = np.r_[0.0, tps[last]], np.r_[0.0, fps[last]]
    if tps[-1] <= 0 or fps[-1] <= 0:
        return math.nan
    tpr, fpr = tps / tps[-1], fps / fps[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)  # the trapezoid rule


def delong_components(score: np.ndarray, positive: np.ndarray) -> list[float | None]:
    """[variance of the positives' placements, of the negatives', share of positives] (DeLong et al. 1988).

    A positive's placement is the share of negatives scored below it, a negative's the share
    of positives scored above it (ties count half); the AUC's variance over a window of n rows
    is var_pos / (n × share) + var_neg / (n × (1 - share)).
    """
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return [math.nan, math.nan, 0.0]
    ranks = rankdata(score)
    pos_ranks, neg_ranks = ranks[positive], ranks[~positive]
    below = (pos_ranks - rankdata(pos_ranks)) / n_neg
    above = 1.0 - (neg_ranks - rankdata(neg_ranks)) / n_pos
    return [float(below.var()), float(above.var()), n_pos / len(positive)]


def needs_calibration(score: np.ndarray, truth: np.ndarray, splits: int = 10, bins: int = 10) -> bool:
    """Whether isotonic calibration lowers the expected calibration error on held-out tenths of the reference."""
    from sklearn.model_selection import StratifiedShuffleSplit

    if truth.min() == truth.max() or len(truth) < 2 * bins * 2:
        return False
    if expected_auc(score, truth) > 0.999:  # separable: nothing to calibrate that matters
        return False
    held, before, after = [], [], []
    split = StratifiedShuffleSplit(n_splits=splits, test_size=0.1, random_state=0)
    for train, test in split.split(score.reshape(-1, 1), truth):
        held.append(truth[test])
        before.append(score[test])
        after.append(_apply(isotonic(score[train], truth[train]), score[test]))
    truth_all = np.concatenate(held)
    return expected_calibration_error(np.concatenate(after), truth_all, bins) < expected_calibration_error(
        np.concatenate(before), truth_all, bins
    )


def expected_calibration_error(p: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| over `bins` equal-count bins of the sorted predictions, weighted by size."""
    order = np.argsort(p, kind="stable")
    p, truth = p[order], truth[order]
    edges = np.linspace(0, len(p), bins + 1).astype(int)
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b > a:
            total += (b - a) * abs(p[a:b].mean() - truth[a:b].mean())
    return total / len(p)


def isotonic(score: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The breakpoints (x, y) of the increasing isotonic regression of `truth` on `score`, clipped to [0, 1]."""
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True).fit(score, truth)
    return np.asarray(model.X_thresholds_, dtype=np.float64), np.asarray(model.y_thresholds_, dtype=np.float64)


def _apply(calibrator: tuple[np.ndarray, np.ndarray] | None, score: np.ndarray) -> np.ndarray:
    """A calibrator on scores: linear between breakpoints, constant beyond them (as scikit-learn's predict)."""
    if calibrator is None:
        return score
    xs, ys = calibrator
    return np.interp(score, xs, ys) if len(xs) > 1 else np.full_like(score, ys[0] if len(ys) else 0.5)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0 (scikit-learn's zero_division default)."""
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if len(finite) == len(values) and finite else math.nan


def _variance(part: list[float | None], n: int) -> float:
    """The variance of a per-observation mean over the rows a window of n gives it (n × share)."""
    std, share = (_num(v) for v in part)
    return std**2 / (n * share) if share > 0 else math.nan


def _spread(obs: np.ndarray, n: int) -> list[float | None]:
    """[standard deviation of the per-observation values, their share of all n rows]."""
    return [float(obs.std()) if len(obs) else math.nan, len(obs) / n if n else 0.0]


def _auc_variance(part: list[float | None], n: int) -> float:
    var_pos, var_neg, share = (_num(v) for v in part)
    if not 0 < share < 1:
        return math.nan
    return var_pos / (n * share) + var_neg / (n * (1 - share))


def _num(value: float | None) -> float:
    """A saved figure (JSON keeps NaN as null) as a float."""
    return math.nan if value is None else float(value)


def _label(value: Any) -> str:
    """A label as text, so 1, 1.0 and "1" name one class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
