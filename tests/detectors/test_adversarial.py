"""TensorFlow detectors for real, in `.venv-tf` (built by `make venv-tf`, which `make test` runs):
OutlierAE / OutlierVAE flag planted outliers; AdversarialAE and ModelDistillation, fitted with
`infertap fit` against a model served over V1 HTTP, score adversarial examples (PGD, crafted in
torch on the served network's own weights, checked to fool the server) above clean rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT, free_port

TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"
FEATURES = [f"x{j}" for j in range(6)]


@pytest.fixture(scope="module")
def tf_python() -> Path:
    if not (ROOT / ".venv-tf" / ".installed").exists():
        if os.environ.get("CI"):
            pytest.fail(".venv-tf is missing: `make test` builds it with `make venv-tf`")
        pytest.skip("no .venv-tf: run `make venv-tf` for the TensorFlow detectors")
    return TF_PYTHON


def run_tf(python: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(python), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


SCORE = """
import json, sys
from pathlib import Path
import numpy as np
from infertap.detectors.backends.registry import load_backend
out = {}
for folder in sys.argv[2:]:
    backend = load_backend(Path(folder), allow_pickle=True)  # legacy TF folders: meta.dill
    result = backend.predict(np.load(sys.argv[1]))
    out[folder] = {"name": type(backend).__name__, "kind": result.kind, "scores": result.instance_scores,
                   "flags": result.is_outlier if result.is_outlier is not None else result.is_adversarial,
                   "threshold": result.threshold}
print("RESULT" + json.dumps(out))
"""


def score(python: Path, rows: np.ndarray, folders: list[Path], tmp_path: Path) -> dict:
    np.save(tmp_path / "rows.npy", rows.astype(np.float32))
    done = run_tf(python, "-c", SCORE, str(tmp_path / "rows.npy"), *map(str, folders))
    line = next(out for out in done.stdout.splitlines() if out.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def spec(folder: Path, name: str, detector: dict) -> Path:
    doc = {
        "apiVersion": "infertap.dev/v1alpha1",
        "kind": "Detector",
        "metadata": {"name": name},
        "spec": {
            "source": {"inferenceService": "clf"},
            "features": [{"name": f} for f in FEATURES],
            "detector": detector,
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def auc(negatives: list[float], positives: list[float]) -> float:
    """P(score of a positive > score of a negative)."""
    neg, pos = np.asarray(negatives), np.asarray(positives)
    return float((pos[:, None] > neg[None, :]).mean())


@pytest.mark.timeout(900)
def test_autoencoders_flag_planted_outliers(tf_python: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(1500, 2))
    mix = rng.normal(size=(2, 6))
    ref = latent @ mix + 0.05 * rng.normal(size=(1500, 6))  # rows on a 2-D plane in 6-D
    np.save(tmp_path / "reference.npy", ref)
    detectors = [
        ("OutlierAE", {"epochs": 30, "batch_size": 128, "hidden": [32, 16], "encoding_dim": 2, "threshold_perc": 99}),
        (
            "OutlierVAE",
            {"epochs": 30, "batch_size": 128, "hidden": [32, 16], "latent_dim": 2, "threshold_perc": 99, "samples": 5},
        ),
    ]
    paths = [
        str(spec(tmp_path, name.lower(), {"name": name, "params": params, "reference": "reference.npy"}))
        for name, params in detectors
    ]
    done = run_tf(tf_python, "-m", "infertap", "fit", *paths)  # one TensorFlow start for both
    for name, _ in detectors:
        assert f"{name.lower()}/detector ({name})" in done.stdout
    folders = [tmp_path / f"{name.lower()}-detector" for name, _ in detectors]
    window = rng.normal(size=(200, 2)) @ mix + 0.05 * rng.normal(size=(200, 6))
    planted = [5, 60, 150]
    window[planted] += np.array([2.0, -2.0, 2.0, -2.0, 2.0, -2.0])  # off the plane
    results = score(tf_python, window, folders, tmp_path)
    for folder in folders:
        r = results[str(folder)]
        assert r["kind"] == "outlier"
        assert all(r["flags"][i] and r["scores"][i] > r["threshold"] for i in planted), r["name"]
        assert sum(r["flags"]) <= len(planted) + 10, r["name"]
    # the folders are alibi-detect's legacy format too: its own load_detector reads them
    check = (
        "import sys; from infertap.detectors.backends.alibi_tf import import_tf; import_tf(); "
        "from alibi_detect.saving import load_detector; print(type(load_detector(sys.argv[1])).__name__)"
    )
    assert run_tf(tf_python, "-c", check, str(folders[0])).stdout.strip().endswith("OutlierAE")


@pytest.mark.timeout(600)
def test_iforest_saved_by_alibi_detect_with_tf_loads_without_it(tf_python: Path, tmp_path: Path) -> None:
    """alibi-detect's save_detector writes IForest in its legacy format, which its loader reads
    only with TensorFlow; load_backend reads it in the main environment, which has none."""
    make = (
        "import sys, numpy as np; from infertap.detectors.backends.alibi_tf import import_tf; import_tf(); "
        "from alibi_detect.od import IForest; from alibi_detect.saving import save_detector; "
        "x = np.random.default_rng(0).normal(size=(500, 6)); d = IForest(); d.fit(x); "
        "d.infer_threshold(x, threshold_perc=99); save_detector(d, sys.argv[1])"
    )
    run_tf(tf_python, "-c", make, str(tmp_path / "iforest"))
    assert {"meta.dill", "IForest.dill"} <= {p.name for p in (tmp_path / "iforest").iterdir()}
    from infertap.detectors.backends.registry import load_backend

    backend = load_backend(tmp_path / "iforest", FEATURES, allow_pickle=True)
    rows = np.zeros((3, 6))
    rows[1] = 8.0
    assert backend.predict(rows).is_outlier == [False, True, False]
    assert "tensorflow" not in sys.modules


# --- adversarial ----------------------------------------------------------------------------


def make_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    centres = np.array([[2, 0, 0, 1, 0, 0], [0, 2, 0, 0, 1, 0], [0, 0, 2, 0, 0, 1]], dtype=float)
    y = rng.integers(0, 3, size=n)
    return centres[y] + 0.8 * rng.normal(size=(n, 6)), y


def pgd(model, x: np.ndarray, y: np.ndarray, eps: float, steps: int = 20) -> np.ndarray:
    """L-inf PGD in torch on the served scikit-learn MLP's own weights (the same network)."""
    import torch

    weights = [
        (torch.tensor(w, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
        for w, b in zip(model.coefs_, model.intercepts_, strict=True)
    ]

    def logits(v):
        for i, (w, b) in enumerate(weights):
            v = v @ w + b
            if i < len(weights) - 1:
                v = torch.relu(v)
        return v

    x0 = torch.tensor(x, dtype=torch.float64)
    target = torch.tensor(y)
    adv = x0.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(logits(adv), target)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = (adv.detach() + 2.5 * eps / steps * grad.sign()).clamp(x0 - eps, x0 + eps)
    return adv.numpy()


@pytest.mark.timeout(900)
def test_adversarial_detectors_score_attacks_above_clean_rows(tf_python: Path, tmp_path: Path, spawn) -> None:
    import httpx
    import joblib
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(1)
    x_train, y_train = make_data(rng, 2000)
    model = MLPClassifier(hidden_layer_sizes=(32,), max_iter=600, random_state=0).fit(x_train, y_train)
    (tmp_path / "model").mkdir()
    joblib.dump(model, tmp_path / "model" / "model.joblib")
    np.save(tmp_path / "reference.npy", x_train)
    port = free_port()
    server = spawn(
        [
            sys.executable,
            "-m",
            "infertap",
            "serve",
            "--model-name",
            "clf",
            "--model-format",
            "sklearn",
            "--storage-uri",
            str(tmp_path / "model"),
            "--http-port",
            str(port),
            "--predict-proba",
        ],
        name="serve",
    )
    url = f"http://127.0.0.1:{port}/v1/models/clf"
    server.wait_http(url, timeout=120)

    def served(rows: np.ndarray) -> np.ndarray:
        reply = httpx.post(url + ":predict", json={"instances": rows.tolist()}, timeout=30)
        return np.asarray(reply.json()["predictions"]).argmax(axis=1)

    # adversarial examples crafted against the served network, kept where they fool the server
    x_test, y_test = make_data(rng, 400)
    right = served(x_test) == y_test
    x_clean, y_clean = x_test[right], y_test[right]
    x_adv = pgd(model, x_clean, y_clean, eps=0.9)
    fooled = served(x_adv) != y_clean
    assert fooled.mean() > 0.5, f"attack fooled only {fooled.mean():.0%} of rows"
    x_clean, x_adv = x_clean[fooled], x_adv[fooled]

    detectors = [
        ("AdversarialAE", {"epochs": 30, "batch_size": 128, "hidden": [32], "threshold_perc": 95}),
        ("ModelDistillation", {"epochs": 30, "batch_size": 128, "hidden": [8], "threshold_perc": 95}),
    ]
    paths = [
        str(
            spec(
                tmp_path,
                name.lower(),
                {
                    "name": name,
                    "reference": "reference.npy",
                    "params": {**params, "predictor": url, "surrogate_epochs": 60},
                },
            )
        )
        for name, params in detectors
    ]
    done = run_tf(tf_python, "-m", "infertap", "fit", *paths)  # one TensorFlow start for both
    for name, _ in detectors:
        assert f"({name})" in done.stdout
    folders = [tmp_path / f"{name.lower()}-detector" for name, _ in detectors]

    # clean and attacked rows scored in one TensorFlow start, then split
    both = score(tf_python, np.concatenate([x_clean, x_adv]), folders, tmp_path)
    n = len(x_clean)
    for folder in folders:
        r = both[str(folder)]
        c = {**r, "scores": r["scores"][:n], "flags": r["flags"][:n]}
        a = {**r, "scores": r["scores"][n:], "flags": r["flags"][n:]}
        assert c["kind"] == "adversarial"
        separation = auc(c["scores"], a["scores"])
        print(
            f"{c['name']}: clean mean {np.mean(c['scores']):.4f}, adversarial mean {np.mean(a['scores']):.4f}, "
            f"AUC {separation:.2f}, flagged {np.mean(a['flags']):.0%} of attacks, {np.mean(c['flags']):.0%} of clean"
        )
        assert np.mean(a["scores"]) > np.mean(c["scores"]), c["name"]
        assert separation > 0.5, (c["name"], separation)
        assert np.mean(a["flags"]) > np.mean(c["flags"]), c["name"]
