"""`infertap fit` on Detector YAML, end to end in a child process: progress, saved folder, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from infertap.detectors.backends.registry import load_backend
from tests.conftest import ROOT

FEATURES = ["a", "b", "c"]


def write_spec(folder: Path, detector: dict, name: str = "toy") -> Path:
    doc = {
        "apiVersion": "infertap.dev/v1alpha1",
        "kind": "Detector",
        "metadata": {"name": name},
        "spec": {
            "source": {"inferenceService": "toy"},
            "features": [{"name": f} for f in FEATURES],
            "detector": detector,
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def infertap(*args: str, python: str = sys.executable, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-m", "infertap", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    np.save(tmp_path / "reference.npy", np.random.default_rng(0).normal(size=(600, 3)))
    return tmp_path / "reference.npy"


def test_fit_iforest_saves_a_folder_the_worker_loads(tmp_path: Path, reference: Path) -> None:
    spec = write_spec(tmp_path, {"name": "IForest", "params": {"threshold_perc": 98}, "reference": "reference.npy"})
    done = infertap("fit", str(spec))
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert "[4/4] done" in out or "done" in out  # the progress line
    folder = tmp_path / "toy-detector"
    assert f"saved to {folder}" in out and "savedDetector" in out
    backend = load_backend(folder, allow_pickle=True)  # IForest is saved as dill
    assert backend.feature_names == FEATURES and backend.params == {"threshold_perc": 98}
    rows = np.random.default_rng(1).normal(size=(50, 3))
    rows[7] = [7, -7, 7]
    result = backend.predict(rows)
    assert result.is_outlier[7] and result.instance_scores[7] > result.threshold
    assert sum(result.is_outlier) <= 4


def test_fit_online_configures_thresholds_into_saved_detector(tmp_path: Path, reference: Path) -> None:
    """With only savedDetector in the spec, --reference gives the rows and the folder is filled."""
    spec = write_spec(
        tmp_path,
        {
            "name": "MMDDriftOnline",
            "savedDetector": "online",
            "params": {"ert": 100, "window_size": 10, "n_bootstraps": 200},
        },
    )
    done = infertap("fit", str(spec), "--reference", str(reference))
    assert done.returncode == 0, done.stderr
    backend = load_backend(tmp_path / "online", allow_pickle=True)
    assert backend.online and backend.t == 0
    assert np.asarray(backend.detector._detector.thresholds).shape == (10,)  # configured once, kept
    assert backend.predict(np.zeros(3)).raw["time"] == 1


@pytest.mark.parametrize(
    "detector, message",
    [
        ({"name": "IForest", "params": {"threshold_perc": 150}, "reference": "reference.npy"}, "'threshold_perc'"),
        ({"name": "KSDrift", "params": {"pval": 0.1}, "reference": "reference.npy"}, "unknown parameter 'pval'"),
        ({"name": "Nope", "reference": "reference.npy"}, "unknown detector 'Nope'"),
        ({"name": "IForest", "reference": "missing.npy"}, "does not exist"),
        ({"name": "IForest", "savedDetector": "out"}, "no reference data"),
    ],
)
def test_bad_input_exits_2_with_a_sentence(tmp_path: Path, reference: Path, detector: dict, message: str) -> None:
    spec = write_spec(tmp_path, detector)
    done = infertap("fit", str(spec))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "toy.yaml: document 1" in done.stderr


def test_wrong_feature_count_in_reference_exits_2(tmp_path: Path) -> None:
    np.save(tmp_path / "reference.npy", np.zeros((20, 5)))
    spec = write_spec(tmp_path, {"name": "KSDrift", "reference": "reference.npy"})
    done = infertap("fit", str(spec))
    assert done.returncode == 2 and "5 columns" in done.stderr
