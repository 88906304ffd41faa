"""Every detector backend on real arrays: no drift on the reference distribution, drift on exactly
the shifted features, planted outliers above the threshold, save/load round trips, online
state that continues after a restore, and folders written by alibi-detect's own save_detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infertap.detectors.backends.registry import BACKENDS, TENSORFLOW, create_backend, load_backend
from infertap.detectors.result import DetectionResult

NAMES = ["age", "income", "tenure", "score", "visits"]
SHIFTED = {"income", "score"}


def draw(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    x = rng.normal(size=(n, len(NAMES)))
    x[:, [NAMES.index(n) for n in SHIFTED]] += shift
    return x


@pytest.fixture(autouse=True)
def _seeded():
    """Permutation tests draw from torch's and numpy's global generators."""
    import torch

    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"ref": draw(rng, 1000), "same": draw(rng, 500), "shifted": draw(rng, 500, shift=0.6)}


# --- univariate drift ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ScipyKS", "KSDrift", "CVMDrift", "TabularDrift"])
def test_univariate_drift_flags_exactly_the_shifted_features(name: str, data, tmp_path: Path) -> None:
    backend = create_backend(name, NAMES, {"p_val": 0.05})
    backend.fit(data["ref"])
    calm = backend.predict(data["same"])
    assert calm.kind == "drift" and calm.is_drift is False and calm.n == 500
    assert [f.name for f in calm.features] == NAMES and not any(f.is_drift for f in calm.features)

    drift = backend.predict(data["shifted"])
    assert drift.is_drift is True
    assert {f.name for f in drift.features if f.is_drift} == SHIFTED
    assert drift.threshold == pytest.approx(0.05 / len(NAMES))  # Bonferroni
    for f in drift.features:
        assert 0 <= f.p_val <= 1 and f.distance is not None
    assert drift.p_val == min(f.p_val for f in drift.features)

    backend.save(tmp_path / "saved")
    again = load_backend(tmp_path / "saved").predict(data["shifted"])
    assert type(load_backend(tmp_path / "saved")).__name__ == name
    assert [f.p_val for f in again.features] == pytest.approx([f.p_val for f in drift.features])
    DetectionResult.model_validate_json(drift.model_dump_json())  # JSON-able, as the worker publishes it


def test_tabular_and_chisquare_judge_categorical_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ref = np.column_stack([rng.normal(size=800), rng.choice(3, size=800, p=[0.6, 0.3, 0.1])])
    moved = np.column_stack([rng.normal(size=400), rng.choice(3, size=400, p=[0.2, 0.3, 0.5])])
    tab = create_backend("TabularDrift", ["x", "colour"], {"categories_per_feature": {"1": 3}})
    tab.fit(ref)
    result = tab.predict(moved)
    assert [f.name for f in result.features if f.is_drift] == ["colour"]
    chi = create_backend("ChiSquareDrift", ["colour"], {"categories_per_feature": {0: 3}})
    chi.fit(ref[:, 1:])
    assert chi.predict(ref[:400, 1:]).is_drift is False
    assert chi.predict(moved[:, 1:]).is_drift is True
    chi.save(tmp_path / "chi")
    assert load_backend(tmp_path / "chi").predict(moved[:, 1:]).features[0].p_val == pytest.approx(
        chi.predict(moved[:, 1:]).features[0].p_val
    )


def test_scipy_ks_fdr_correction() -> None:
    rng = np.random.default_rng(1)
    ks = create_backend("ScipyKS", NAMES, {"correction": "fdr"})
    ks.fit(draw(rng, 800))
    result = ks.predict(draw(rng, 400, shift=0.6))
    assert {f.name for f in result.features if f.is_drift} == SHIFTED


# --- multivariate drift ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, params",
    [
        ("MMDDrift", {"n_permutations": 100}),
        ("LSDDDrift", {"n_permutations": 100}),
        ("ClassifierDrift", {"n_folds": 3, "model": "logistic_regression"}),
    ],
)
def test_multivariate_drift(name: str, params: dict, data, tmp_path: Path) -> None:
    backend = create_backend(name, NAMES, params)
    backend.fit(data["ref"])
    calm = backend.predict(data["same"])
    assert calm.is_drift is False and calm.p_val > 0.05
    drift = backend.predict(data["shifted"])
    assert drift.is_drift is True and drift.p_val <= 0.05 and drift.threshold == 0.05
    assert drift.distance is not None and drift.features == []
    backend.save(tmp_path / "saved")
    # MMD/LSDD folders are config.toml + npy; ClassifierDrift's hold its model (joblib) and loss (dill)
    restored = load_backend(tmp_path / "saved", allow_pickle=name == "ClassifierDrift")
    assert restored.predict(data["shifted"]).is_drift is True


def test_kernel_detectors_use_the_pytorch_backend_on_this_device() -> None:
    import torch

    mmd = create_backend("MMDDrift", NAMES, {"n_permutations": 10})
    mmd.fit(np.random.default_rng(0).normal(size=(100, 5)))
    assert type(mmd.detector._detector).__module__.startswith("alibi_detect.cd.pytorch")
    assert mmd.detector._detector.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="backend must be 'pytorch'"):
        create_backend("MMDDrift", NAMES, {"backend": "tensorflow"})


# --- outliers -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SklearnIForest", "IForest", "Mahalanobis"])
def test_planted_outliers_score_above_the_threshold(name: str, data, tmp_path: Path) -> None:
    backend = create_backend(name, NAMES, {"threshold_perc": 99})
    backend.fit(data["ref"])
    rng = np.random.default_rng(11)
    window = draw(rng, 200)
    planted = [3, 50, 120, 199]
    window[planted] += np.array([6.0, -6.0, 6.0, -6.0, 6.0])
    backend.save(tmp_path / "saved")  # before predict: Mahalanobis updates its running moments on each batch
    result = backend.predict(window)
    assert result.kind == "outlier" and len(result.instance_scores) == 200
    for i in planted:
        assert result.is_outlier[i] and result.instance_scores[i] > result.threshold
    clean = [i for i in range(200) if i not in planted]
    assert sum(result.is_outlier[i] for i in clean) <= 10  # about 1 % by the 99th percentile
    restored = load_backend(tmp_path / "saved", allow_pickle=True).predict(window)  # joblib / dill
    assert restored.instance_scores == pytest.approx(result.instance_scores)
    assert restored.threshold == pytest.approx(result.threshold)


# --- online ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, params",
    [
        ("MMDDriftOnline", {"ert": 150, "window_size": 20, "n_bootstraps": 300}),
        ("LSDDDriftOnline", {"ert": 150, "window_size": 20, "n_bootstraps": 300}),
        ("CVMDriftOnline", {"ert": 150, "window_sizes": [20], "n_bootstraps": 1000}),
    ],
)
def test_online_state_survives_save_and_load(name: str, params: dict, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(300, 3))
    stream = rng.normal(size=(90, 3))
    stream[40:, 1] += 3.0  # a large change in one feature from event 40 on
    backend = create_backend(name, ["a", "b", "c"], params)
    assert backend.online
    backend.fit(ref)
    first = [backend.predict(stream[i]) for i in range(30)]
    assert not any(r.is_drift for r in first[:20])  # the window is not full yet
    backend.save(tmp_path / "state")
    restored = load_backend(tmp_path / "state", allow_pickle=True)  # online state is one dill file
    assert restored.t == backend.t == 30

    go_on = [backend.predict(stream[i : i + 1]) for i in range(30, 90)]
    resumed = [restored.predict(stream[i : i + 1]) for i in range(30, 90)]
    assert [r.distance for r in resumed] == pytest.approx([r.distance for r in go_on])
    assert [r.raw["time"] for r in resumed] == list(range(31, 91))
    flagged = [30 + i for i, r in enumerate(resumed) if r.is_drift]
    assert flagged and flagged[0] >= 40 - 1 and flagged[0] < 70, flagged
    if name == "CVMDriftOnline":
        assert [f.name for f in resumed[-1].features if f.is_drift] == ["b"]


def test_online_detectors_need_their_settings() -> None:
    with pytest.raises(ValueError, match="'window_size' is required"):
        create_backend("MMDDriftOnline", ["a"], {"ert": 100})
    with pytest.raises(ValueError, match="'ert' is required"):
        create_backend("CVMDriftOnline", ["a"], {"window_sizes": [10]})


# --- registry -------------------------------------------------------------------------------


def test_unknown_detector_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        create_backend("KSDirft", NAMES, {})
    assert "KSDirft" in str(info.value) and "KSDrift" in str(info.value) and "SklearnIForest" in str(info.value)


@pytest.mark.parametrize(
    "name, params, word",
    [
        ("KSDrift", {"pval": 0.05}, "'pval'"),
        ("TabularDrift", {"p_val": 0.05, "window": 3}, "'window'"),
        ("IForest", {"threshold_perc": 150}, "'threshold_perc'"),
        ("ClassifierDrift", {"model": "svm"}, "'model'"),
        ("ScipyKS", {"p_val": 2}, "'p_val'"),
        ("SklearnIForest", {"trees": 10}, "'trees'"),
        ("OutlierAE", {"epochs": 0}, "'epochs'"),
        ("AdversarialAE", {"epochs": 3}, "'model'"),
    ],
)
def test_bad_params_name_the_parameter(name: str, params: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        create_backend(name, NAMES, params)


def test_every_registered_name_creates() -> None:
    """Creating a backend checks its params without TensorFlow, even for the TF ones."""
    needs = {
        "MMDDriftOnline": {"ert": 10, "window_size": 5},
        "LSDDDriftOnline": {"ert": 10, "window_size": 5},
        "CVMDriftOnline": {"ert": 10, "window_sizes": [5]},
        "AdversarialAE": {"predictor": "http://x/v1/models/m"},
        "ModelDistillation": {"model": "m.keras"},
        "DLE": {"prediction": NAMES[-1]},  # the feature that holds the model's prediction
    }
    for name in BACKENDS:
        backend = create_backend(name, NAMES, needs.get(name, {}))
        assert backend.kind in ("drift", "outlier", "adversarial", "performance", "dataquality")
    assert TENSORFLOW == {"OutlierAE", "OutlierVAE", "AdversarialAE", "ModelDistillation"}


def test_load_backend_rejects_folders_without_a_detector(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a folder"):
        load_backend(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no saved detector"):
        load_backend(tmp_path)


# --- alibi-detect's own folders -------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        ("KSDrift", {"p_val": 0.05}),
        ("TabularDrift", {"p_val": 0.05, "categories_per_feature": {}}),
        ("CVMDrift", {}),
        ("MMDDrift", {"backend": "pytorch", "n_permutations": 100}),
        ("LSDDDrift", {"backend": "pytorch", "n_permutations": 100}),
    ],
)
def test_save_detector_folders_load_unchanged(cls: str, kwargs: dict, data, tmp_path: Path) -> None:
    """As Seldon's alibi-detect-server users have them: config.toml + x_ref.npy, no manifest of ours."""
    import alibi_detect.cd as cd
    from alibi_detect.saving import save_detector

    save_detector(getattr(cd, cls)(data["ref"].astype(np.float32), **kwargs), str(tmp_path / "ad"))
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == ["config.toml", "x_ref.npy"]
    backend = load_backend(tmp_path / "ad", NAMES)
    assert type(backend).__name__ == cls
    assert backend.predict(data["same"]).is_drift is False
    shifted = backend.predict(data["shifted"])
    assert shifted.is_drift is True
    if shifted.features:
        assert {f.name for f in shifted.features if f.is_drift} == SHIFTED


def test_our_drift_folders_load_with_alibi_detect_too(data, tmp_path: Path) -> None:
    """Offline drift detectors are saved in alibi-detect's config format, beside our manifest."""
    from alibi_detect.saving import load_detector

    backend = create_backend("KSDrift", NAMES, {})
    backend.fit(data["ref"])
    backend.save(tmp_path / "ks")
    assert (tmp_path / "ks" / "infertap-detector.json").is_file()
    assert load_detector(str(tmp_path / "ks")).predict(data["shifted"])["data"]["is_drift"] == 1
