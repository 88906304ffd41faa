"""CBPE and DLE on models the tests train: estimates follow the realised figures (scikit-learn's) under
covariate shift, the drop is flagged, bands cover the realised figures, folders load without pickles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    precision_score,
    recall_score,
    roc_auc_score,
)

from infertap.detectors.backends.registry import create_backend, load_backend, pickles_in

pytestmark = pytest.mark.fast  # starts no process (make test-fast)

WEIGHTS = np.array([2.0, -1.5])


def binary_rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs around (2.5 - shift, 0), labels from a fixed P(y|x): shifting moves rows onto the boundary."""
    x = rng.normal(size=(n, 2))
    x[:, 0] += 2.5 - shift
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ WEIGHTS)))).astype(int)
    return x, y


def headline(result) -> dict[str, object]:
    return {m.name: m for m in result.metrics if m.headline}


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(0)
    model = LogisticRegression().fit(*binary_rows(rng, 5000))
    x_ref, y_ref = binary_rows(rng, 20_000)
    backend = create_backend("CBPE", ["p0", "p1"], {"chunk_size": 1000})
    backend.fit_labelled(model.predict_proba(x_ref), y_ref)
    windows = [binary_rows(rng, 1000, shift) for shift in (0, 0, 0, 0, 1.2, 1.8, 2.5, 2.5)]
    return model, backend, [(model.predict_proba(x), y) for x, y in windows]


def test_cbpe_follows_realised_accuracy_on_a_shifted_classifier_and_flags_the_drop(binary) -> None:
    _, backend, windows = binary
    realised = [accuracy_score(y, (p[:, 1] >= 0.5).astype(int)) for p, y in windows]
    results = [backend.predict(p) for p, _ in windows]
    accuracy = [headline(r)["accuracy"] for r in results]
    assert realised[0] - realised[-1] > 0.1  # the shift costs the model accuracy
    assert accuracy[0].value - accuracy[-1].value > 0.1  # and the estimate sees it, without labels
    errors = [abs(a.value - r) for a, r in zip(accuracy, realised, strict=True)]
    assert max(errors) < 0.04, errors
    covered = [a.lower <= r <= a.upper for a, r in zip(accuracy, realised, strict=True)]
    assert sum(covered) >= 7, (covered, realised, [(a.lower, a.upper) for a in accuracy])
    # unshifted windows stay inside the thresholds, the strongly shifted ones are flagged
    assert [r.is_alert for r in results[:4]] == [False] * 4
    assert all(a.alert for a in accuracy[-2:]) and all(r.is_alert for r in results[-2:])
    assert accuracy[-1].value < accuracy[-1].lower_threshold


def test_cbpe_binary_figures_match_scikit_learn_on_the_labels(binary) -> None:
    _, backend, windows = binary
    for p, y in windows[::3]:
        y_pred = (p[:, 1] >= 0.5).astype(int)
        realised = backend.realised(p, y)
        assert realised[("accuracy", "_all")] == pytest.approx(accuracy_score(y, y_pred))
        assert realised[("precision", "1")] == pytest.approx(precision_score(y, y_pred))
        assert realised[("recall", "1")] == pytest.approx(recall_score(y, y_pred))
        assert realised[("f1", "1")] == pytest.approx(f1_score(y, y_pred))
        assert realised[("f1", "_macro")] == pytest.approx(f1_score(y, y_pred, average="macro"))
        assert realised[("roc_auc", "1")] == pytest.approx(roc_auc_score(y, p[:, 1]))
        estimate = headline(backend.predict(p))
        for name, value in (
            ("precision", precision_score(y, y_pred)),
            ("recall", recall_score(y, y_pred)),
            ("f1", f1_score(y, y_pred)),
            ("roc_auc", roc_auc_score(y, p[:, 1])),
        ):
            assert abs(estimate[name].value - value) < 0.05, (name, estimate[name].value, value)


def three_class_rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 2)) * (1 + shift)
    logits = 2.0 * np.column_stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return x, (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)


def test_cbpe_multiclass_macro_estimates_follow_scikit_learn(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    model = LogisticRegression(max_iter=500).fit(*three_class_rows(rng, 6000))
    names = np.array(["cat", "dog", "emu"])
    x_ref, y_ref = three_class_rows(rng, 12_000)
    backend = create_backend(
        "CBPE", ["p_cat", "p_dog", "p_emu"], {"chunk_size": 1000, "classes": list(names), "target": "animal"}
    )
    backend.fit_labelled(model.predict_proba(x_ref), names[y_ref])  # labels as the reference file holds them
    assert backend.problem == "multiclass"
    drops = []
    for shift in (0.0, -0.6):  # inputs pulled towards the centre, where the classes meet
        x, y = three_class_rows(rng, 2000, shift)
        p = model.predict_proba(x)
        y_pred = p.argmax(axis=1)
        est = headline(backend.predict(p))
        assert {m: est[m].klass for m in est} == {
            "accuracy": "_all",
            "precision": "_macro",
            "recall": "_macro",
            "f1": "_macro",
            "roc_auc": "_macro",
        }
        for name, value in (
            ("accuracy", accuracy_score(y, y_pred)),
            ("precision", precision_score(y, y_pred, average="macro")),
            ("recall", recall_score(y, y_pred, average="macro")),
            ("f1", f1_score(y, y_pred, average="macro")),
            ("roc_auc", roc_auc_score(y, p, multi_class="ovr")),
        ):
            assert abs(est[name].value - value) < 0.04, (shift, name, est[name].value, value)
            assert est[name].lower - 0.01 <= value <= est[name].upper + 0.01, (shift, name)
        drops.append(est["accuracy"])
    assert drops[0].value - drops[1].value > 0.1 and drops[1].alert and not drops[0].alert
    per_class = {(m.name, m.klass) for m in backend.predict(p).metrics}
    assert {("recall", "cat"), ("recall", "dog"), ("recall", "emu")} <= per_class


def test_isotonic_calibration_fixes_an_overconfident_model() -> None:
    rng = np.random.default_rng(2)
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(*binary_rows(rng, 3000))  # overconfident

    def squashed(x: np.ndarray) -> np.ndarray:
        p = forest.predict_proba(x)[:, 1] ** 3  # and made miscalibrated on purpose
        return np.column_stack([1 - p, p])

    x_ref, y_ref = binary_rows(rng, 20_000)
    x, y = binary_rows(rng, 4000, 0.8)
    realised = accuracy_score(y, (squashed(x)[:, 1] >= 0.5).astype(int))
    estimates = {}
    for calibration in ("auto", "none"):
        backend = create_backend("CBPE", ["p0", "p1"], {"chunk_size": 2000, "calibration": calibration})
        backend.fit_labelled(squashed(x_ref), y_ref)
        estimates[calibration] = headline(backend.predict(squashed(x)))["accuracy"].value
        assert (backend.calibrators[1] is not None) == (calibration == "auto")
    assert abs(estimates["auto"] - realised) < 0.03
    assert abs(estimates["none"] - realised) > 2 * abs(estimates["auto"] - realised)


def regression_rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The model's error grows with |x0|: moving x0 away from 0 makes it worse."""
    x = rng.normal(size=(n, 3))
    x[:, 0] += shift
    y = x @ np.array([1.0, 2.0, -1.0]) + rng.normal(size=n) * (0.2 + 0.8 * np.abs(x[:, 0]))
    return x, y


def test_dle_estimates_mae_and_rmse_of_a_regressor_and_flags_the_rise() -> None:
    pytest.importorskip("lightgbm")  # the lightgbm extra (in .venv: make venv)
    rng = np.random.default_rng(3)
    model = LinearRegression().fit(*regression_rows(rng, 5000))
    x_ref, y_ref = regression_rows(rng, 20_000)
    backend = create_backend("DLE", ["a", "b", "c", "prediction"], {"chunk_size": 1000})
    backend.fit_labelled(np.column_stack([x_ref, model.predict(x_ref)]), y_ref)
    results = []
    for shift in (0.0, 0.0, 0.8, 1.2):
        x, y = regression_rows(rng, 1000, shift)
        pred = model.predict(x)
        figures = headline(backend.predict(np.column_stack([x, pred])))
        mae, rmse = mean_absolute_error(y, pred), float(np.sqrt(np.mean((y - pred) ** 2)))
        assert abs(figures["mae"].value - mae) / mae < 0.1, (shift, figures["mae"].value, mae)
        assert abs(figures["rmse"].value - rmse) / rmse < 0.1, (shift, figures["rmse"].value, rmse)
        results.append((figures, mae))
    assert [f["mae"].alert for f, _ in results] == [False, False, True, True]
    assert results[-1][0]["mae"].value > results[-1][0]["mae"].upper_threshold
    assert sum(f["mae"].lower <= mae <= f["mae"].upper for f, mae in results[:2]) == 2


@pytest.mark.parametrize("name", ["CBPE", "DLE"])
def test_fit_save_load_round_trip_without_pickles(name: str, binary, tmp_path: Path) -> None:
    if name == "CBPE":
        _, backend, windows = binary
        x = windows[-1][0]
    else:
        pytest.importorskip("lightgbm")
        rng = np.random.default_rng(4)
        model = LinearRegression().fit(*regression_rows(rng, 2000))
        x_ref, y_ref = regression_rows(rng, 5000)
        backend = create_backend("DLE", ["a", "b", "c", "prediction"], {"chunk_size": 500})
        backend.fit_labelled(np.column_stack([x_ref, model.predict(x_ref)]), y_ref)
        xs, _ = regression_rows(rng, 500, 1.0)
        x = np.column_stack([xs, model.predict(xs)])
    folder = tmp_path / name
    backend.save(folder)
    assert pickles_in(folder) == []
    assert {p.suffix for p in folder.iterdir()} <= {".json", ".npz", ".txt"}
    loaded = load_backend(folder)  # allow_pickle=False: refused if anything in it were a pickle
    assert type(loaded).__name__ == name
    assert loaded.predict(x) == backend.predict(x)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"metrics": ["accuracy", "auc"]}, "metrics"),
        ({"probabilities": ["p9"]}, "p9"),
        ({"decision_threshold": 1.5}, "decision_threshold"),
        ({"calibration": "platt"}, "calibration"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"classes": ["a"]}, "classes"),
        ({"window": 3}, "unknown parameter 'window'"),
    ],
)
def test_bad_cbpe_params_name_the_parameter(params: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        create_backend("CBPE", ["p0", "p1"], params)


def test_reference_problems_are_sentences(binary) -> None:
    model, _, windows = binary
    p, y = windows[0]
    small = create_backend("CBPE", ["p0", "p1"], {"chunk_size": 800})
    with pytest.raises(ValueError, match="fewer than 2 chunks of 800"):
        small.fit_labelled(p, y)
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        create_backend("CBPE", ["p0", "p1"], {"chunk_size": 100}).fit_labelled(p * 3, y)
    with pytest.raises(ValueError, match="target value 7 is none of the classes"):
        create_backend("CBPE", ["p0", "p1"], {"chunk_size": 100}).fit_labelled(p, np.where(y == 1, 7, 0))
    with pytest.raises(ValueError, match="labelled reference data"):
        create_backend("CBPE", ["p0", "p1"], {}).fit(p)


def test_fit_reads_the_labelled_reference_and_refuses_one_without_labels(tmp_path: Path) -> None:
    import pandas as pd

    from infertap.detectors.fit import FitError, fit_detector
    from infertap.stack.specs.detector import Detector

    pytest.importorskip("lightgbm")
    rng = np.random.default_rng(7)
    model = LinearRegression().fit(*regression_rows(rng, 1000))
    x, y = regression_rows(rng, 3000)
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(prediction=model.predict(x), price=y)
    frame.to_parquet(tmp_path / "reference.parquet")
    np.save(tmp_path / "reference.npy", frame[["a", "b", "c", "prediction"]].to_numpy())
    spec = {
        "apiVersion": "infertap.dev/v1alpha1",
        "kind": "Detector",
        "metadata": {"name": "prices"},
        "spec": {
            "source": {"inferenceService": "prices", "events": "joined"},
            "features": [{"name": n} for n in "abc"] + [{"name": "prediction", "source": "output"}],
            "detector": {"name": "DLE", "params": {"target": "price"}, "reference": "reference.parquet"},
            "window": {"size": 500},
        },
    }
    doc = Detector.model_validate(spec)
    stages: list[str] = []
    outcome = fit_detector(doc, tmp_path, progress=lambda stage, done, total: stages.append(stage))
    assert outcome.rows == 3000 and outcome.path == tmp_path / "prices-detector"
    assert stages[0] == "reading reference data" and stages[-1] == "done"
    assert set(outcome.summary) == {"estimated_on_reference", "thresholds"}
    assert set(outcome.summary["thresholds"]) == {"mae", "rmse"}
    loaded = load_backend(outcome.path)
    assert loaded.chunk_size == 500  # the window's size: thresholds from the spread of windows
    with pytest.raises(FitError, match="labelled reference data must be .csv or .parquet"):
        fit_detector(doc, tmp_path, reference=tmp_path / "reference.npy")
    frame.drop(columns="price").to_csv(tmp_path / "unlabelled.csv", index=False)
    with pytest.raises(FitError, match="no column 'price'"):
        fit_detector(doc, tmp_path, reference=tmp_path / "unlabelled.csv")


def test_cbpe_reads_the_v2_output_tensor_the_spec_names(binary) -> None:
    """A V2 model answering a label tensor and a probability tensor: `output: probabilities` picks the latter."""
    from infertap.detectors.decode import Decoder, records_to_events
    from infertap.detectors.settings import FeatureSettings
    from tests.detectors.records import response

    model, backend, windows = binary
    p, _ = windows[-1]
    records = [
        response(
            {
                "model_name": "clf",
                "outputs": [
                    {"name": "label", "shape": [1], "datatype": "INT64", "data": [int(row[1] >= 0.5)]},
                    {"name": "probabilities", "shape": [1, 2], "datatype": "FP64", "data": row.tolist()},
                ],
            },
            eid=f"e{i}",
            offset=i,
        )
        for i, row in enumerate(p)
    ]
    events, rejects, _ = records_to_events(records, "response")
    features = [FeatureSettings(name="p0"), FeatureSettings(name="p1")]
    window = Decoder(features, "response", output_name="probabilities").decode(events)
    assert not rejects and not window.rejects and window.x.shape == p.shape
    assert backend.predict(window.x) == backend.predict(p)
