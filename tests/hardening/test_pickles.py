"""No pickle or dill loaded from an untrusted location without an explicit opt-in (issue 7).

A planted "malicious" pickle here is one whose `__reduce__` creates a marker file when it is
unpickled: if the marker exists afterwards, code ran.

Trust boundaries, decided:
- explainers: saved explainers (`--explainer-uri`, dill/pickle/torch.save) load only with
  `--allow-pickle`; backgrounds are read as data (.npz/.npy with allow_pickle=False).
- serving: sklearn/xgboost/lightgbm model files are joblib/pickle files by nature (KServe
  loads them the same way); the model server reads them only from the configured
  `storageUri`, which is the trust boundary: whoever can write there can run code.
- detectors: a saved detector folder (`savedDetector`) holding a pickle (dill, pickle,
  joblib, torch.save, or a config.toml naming one) loads only with `spec.detector.allowPickle:
  true` / `--allow-pickle`; folders of data (config.toml + .npy, our manifest + .npy) load
  without it. The worker's own `stateDir` is trusted (it wrote it).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import dill
import pytest

from tests.conftest import ROOT, free_port


class Planted:
    """Unpickling this opens (creates) the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path, module=pickle) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(module.dumps(Planted(marker)))
    return path


@pytest.mark.parametrize("kind,suffix", [("AnchorTabular", "explainer.dill"), ("DeepLift", "module.pt")])
def test_explainer_refuses_a_planted_pickle_without_allow_pickle(
    tmp_path: Path, models_dir: Path, kind: str, suffix: str
) -> None:
    marker = tmp_path / "pwned"
    evil = plant(tmp_path / suffix, marker)
    args = [
        sys.executable,
        "-m",
        "infertap.explainers",
        "--name",
        "sklearn-iris",
        "--explainer-type",
        kind,
        "--explainer-uri",
        str(evil),
        "--http-port",
        str(free_port()),
        "--background",
        str(models_dir / "sklearn-iris" / "reference.npy"),
    ]
    args += (
        ["--predictor-url", "http://127.0.0.1:1"]
        if kind == "AnchorTabular"
        else ["--storage-uri", str(evil), "--model-format", "pytorch"]
    )
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode != 0
    assert "allow-pickle" in (run.stderr + run.stdout)
    assert not marker.exists(), "the planted pickle ran"


def test_explainer_backgrounds_are_never_unpickled(tmp_path: Path) -> None:
    from infertap.explainers.backgrounds import load_background
    from infertap.explainers.errors import ExplainerLoadError

    marker = tmp_path / "pwned"
    for name in ("bg.pkl", "bg.joblib", "bg.npy"):  # an .npy holding a pickled object array too
        evil = plant(tmp_path / name, marker)
        if name.endswith(".npy"):
            import numpy as np

            arr = np.empty(1, dtype=object)
            arr[0] = Planted(marker)
            np.save(evil, arr, allow_pickle=True)
        with pytest.raises((ExplainerLoadError, ValueError)):
            load_background(str(evil))
        assert not marker.exists(), f"{name}: the planted pickle ran"


def _alibi_config_naming(folder: Path, dill_file: Path) -> None:
    """An alibi-detect config.toml folder whose preprocess_fn is a dill file elsewhere on disk."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "x_ref.npy", np.zeros((10, 4), dtype=np.float32))
    (folder / "config.toml").write_text(
        f'name = "KSDrift"\nx_ref = "x_ref.npy"\np_val = 0.05\n'
        f'[preprocess_fn]\nsrc = "{dill_file}"\n[meta]\nversion = "0.13.0"\n'
    )


def _manifest(folder: Path, backend: str) -> None:
    from infertap.detectors.backends.folder import write_manifest

    write_manifest(folder, backend, list("abcd"), {})


#: planted pickles, each where a saved detector folder's loader would unpickle it
PLANTS = {
    "alibi-detect legacy meta.dill": lambda f, m: plant(f / "meta.dill", m, dill),
    "our online/IForest detector.dill": lambda f, m: (plant(f / "detector.dill", m, dill), _manifest(f, "IForest")),
    "SklearnIForest model.joblib": lambda f, m: (plant(f / "model.joblib", m), _manifest(f, "SklearnIForest")),
    "config.toml naming a dill elsewhere": lambda f, m: _alibi_config_naming(f, plant(f.parent / "fn.dill", m, dill)),
}


@pytest.mark.parametrize("case", list(PLANTS))
def test_detector_refuses_a_planted_pickle_in_a_saved_folder(tmp_path: Path, case: str) -> None:
    from infertap.detectors.backends.registry import PickleRefused, load_backend

    marker, folder = tmp_path / "pwned", tmp_path / "saved"
    folder.mkdir()
    PLANTS[case](folder, marker)
    with pytest.raises(PickleRefused) as info:
        load_backend(folder, ["a", "b", "c", "d"])
    message = str(info.value)
    assert "allowPickle: true" in message and "--allow-pickle" in message
    assert (".dill" in message or ".joblib" in message) and str(tmp_path) in message  # names the file
    assert not marker.exists(), "the planted pickle ran when the saved detector folder was loaded"


def test_the_planted_pickle_does_run_when_opted_in(tmp_path: Path) -> None:
    """The refusal above is the gate's doing: with the opt-in the same plant runs (so it is live)."""
    from infertap.detectors.backends.registry import load_backend

    marker, folder = tmp_path / "pwned", tmp_path / "saved"
    plant(folder / "meta.dill", marker, dill)
    with pytest.raises(Exception):  # noqa: B017 - the "meta" is a file object, not a detector
        load_backend(folder, list("abcd"), allow_pickle=True)
    assert marker.exists()


def test_opted_in_folders_load_and_data_folders_need_no_opt_in(tmp_path: Path) -> None:
    import numpy as np

    from infertap.detectors.backends.registry import PickleRefused, create_backend, load_backend

    x = np.random.default_rng(0).normal(size=(300, 4))
    forest = create_backend("SklearnIForest", list("abcd"), {"threshold_perc": 99})
    forest.fit(x)
    forest.save(tmp_path / "forest")  # model.joblib: a pickle
    with pytest.raises(PickleRefused, match="model.joblib"):
        load_backend(tmp_path / "forest")
    restored = load_backend(tmp_path / "forest", allow_pickle=True)
    assert restored.predict(x[:50]).instance_scores == pytest.approx(forest.predict(x[:50]).instance_scores)

    ks = create_backend("ScipyKS", list("abcd"), {})
    ks.fit(x)
    ks.save(tmp_path / "ks")  # manifest + x_ref.npy, read with allow_pickle=False
    assert load_backend(tmp_path / "ks").predict(x[:50]).is_drift is False


def test_detector_spec_allow_pickle_is_validated() -> None:
    from pydantic import ValidationError

    from infertap.stack.specs.detector import DetectorBlock

    assert (
        DetectorBlock.model_validate({"name": "IForest", "savedDetector": "f", "allowPickle": True}).allow_pickle
        is True
    )
    assert DetectorBlock.model_validate({"name": "IForest", "savedDetector": "f"}).allow_pickle is False
    with pytest.raises(ValidationError, match="boolean"):
        DetectorBlock.model_validate({"name": "IForest", "savedDetector": "f", "allowPickle": "yes"})
    with pytest.raises(ValidationError, match="allowPickle applies to a savedDetector"):
        DetectorBlock.model_validate({"name": "IForest", "reference": "r.npy", "allowPickle": True})


def test_infertap_detect_refuses_a_planted_folder_and_loads_with_allow_pickle(
    tmp_path: Path, detector_yaml, spawn
) -> None:
    """Real processes: `infertap detect` exits with the sentence (marker never created); with
    --allow-pickle (or allowPickle in the spec) a legitimate SklearnIForest folder serves."""
    import numpy as np

    from infertap.detectors.backends.registry import create_backend

    marker = tmp_path / "pwned"
    plant(tmp_path / "evil" / "model.joblib", marker)
    _manifest(tmp_path / "evil", "SklearnIForest")
    spec = {"source": {"transport": "http"}, "features": [{"name": n} for n in "abcd"], "window": {"size": 5}}
    evil = detector_yaml(
        "evil", {**spec, "detector": {"name": "SklearnIForest", "savedDetector": str(tmp_path / "evil")}}
    )
    run = subprocess.run(
        [sys.executable, "-m", "infertap", "detect", str(evil), "--metrics-port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode != 0
    assert "allowPickle: true" in run.stderr + run.stdout and "model.joblib" in run.stderr + run.stdout
    assert not marker.exists(), "the planted pickle ran in the detector worker"

    forest = create_backend("SklearnIForest", list("abcd"), {})
    forest.fit(np.random.default_rng(0).normal(size=(200, 4)))
    forest.save(tmp_path / "good")
    for name, block, extra in (("flag", {}, ["--allow-pickle"]), ("field", {"allowPickle": True}, [])):
        good = detector_yaml(
            name, {**spec, "detector": {"name": "SklearnIForest", "savedDetector": str(tmp_path / "good"), **block}}
        )
        port = free_port()
        child = spawn(
            [sys.executable, "-m", "infertap", "detect", str(good), "--metrics-port", str(port), *extra], name=name
        )
        child.wait_http(f"http://127.0.0.1:{port}/protocol", timeout=120)
        assert child.proc.poll() is None
        child.stop()
