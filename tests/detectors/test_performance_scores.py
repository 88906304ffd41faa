"""The figures of a window of labelled predictions, each against scikit-learn's on the same rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from infertap.detectors.performance import scores

pytestmark = pytest.mark.fast  # no broker, no server child

CLASSES = ["setosa", "versicolor", "virginica"]


def _rows(seed: int, n: int = 400, k: int = 3):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), truth] += rng.uniform(0, 2.5, n)  # better than chance, far from perfect
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return truth, proba


def test_multiclass_figures_are_scikit_learns() -> None:
    truth, proba = _rows(1)
    predicted = proba.argmax(axis=1)
    y = [CLASSES[i] for i in truth]
    p = [CLASSES[i] for i in predicted]
    got = scores.classification(p, y, CLASSES, proba, CLASSES)
    assert got["n"] == len(y)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    for name in ("precision", "recall", "f1"):
        fn = getattr(skm, f"{name}_score" if name != "f1" else "f1_score")
        assert got[f"{name}_macro"] == pytest.approx(fn(y, p, average="macro"))
        per = fn(y, p, average=None, labels=CLASSES)
        assert [got["per_class"][c][name] for c in CLASSES] == pytest.approx(list(per))
    assert got["confusion_matrix"] == skm.confusion_matrix(y, p, labels=CLASSES).tolist()
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, proba, multi_class="ovr", average="macro"))
    for j, c in enumerate(CLASSES):
        assert got["per_class"][c]["roc_auc"] == pytest.approx(skm.roc_auc_score(truth == j, proba[:, j]))
    assert [got["per_class"][c]["support"] for c in CLASSES] == [int((truth == j).sum()) for j in range(3)]


def test_binary_auc_and_ties() -> None:
    truth, proba = _rows(2, k=2)
    proba = np.round(proba, 1)  # many ties: average ranks, as scikit-learn
    y, p = [str(t) for t in truth], [str(i) for i in proba.argmax(axis=1)]
    got = scores.classification(p, y, None, proba, ["0", "1"])
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, proba[:, 1]))
    assert got["classes"] == ["0", "1"]


def test_rows_without_probabilities_are_left_out_of_the_auc_only() -> None:
    truth, proba = _rows(3)
    proba[::3] = np.nan  # logged without probabilities
    y = [CLASSES[i] for i in truth]
    p = [CLASSES[i] for i in np.nan_to_num(proba, nan=0).argmax(axis=1)]
    got = scores.classification(p, y, CLASSES, proba, CLASSES)
    keep = ~np.isnan(proba).any(axis=1)
    assert got["roc_auc_rows"] == int(keep.sum())
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(truth[keep], proba[keep], multi_class="ovr"))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p))  # every row counts here


def test_macro_over_the_classes_present_and_unknown_predictions() -> None:
    y = ["a", "a", "b", "b"]
    p = ["a", "c", "b", "b"]  # the model said a class the labels never do
    got = scores.classification(p, y, ["a", "b", "d"])
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert got["classes"] == ["a", "b", "d", "c"]  # the spec's classes first, in their order
    assert got["confusion_matrix"][0] == [1, 0, 0, 1]
    assert got["roc_auc"] is None


def test_regression_figures() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(10, 3, 300)
    p = y + rng.normal(0, 1, 300)
    got = scores.regression(p.tolist(), y.tolist())
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert got["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, p))
    assert got["r2"] == pytest.approx(skm.r2_score(y, p))
    zeros = scores.regression([1.0, 2.0, 3.0], [0.0, 2.0, 4.0])
    assert zeros["mape_excluded"] == 1 and zeros["mape"] == pytest.approx(0.125)
    assert scores.regression([1.0], [1.0])["r2"] is None


def test_delay_quantiles() -> None:
    d = np.random.default_rng(5).exponential(300, 1000)
    got = scores.delays(d.tolist())
    assert got["p50"] == pytest.approx(np.quantile(d, 0.5)) and got["p99"] == pytest.approx(np.quantile(d, 0.99))
    assert got["max"] == pytest.approx(d.max()) and got["mean"] == pytest.approx(d.mean())
    assert scores.delays([])["p50"] is None


def test_average_ranks_are_scipys() -> None:
    from scipy.stats import rankdata

    x = np.round(np.random.default_rng(6).normal(size=500), 1)
    assert scores.average_ranks(x).tolist() == rankdata(x).tolist()
