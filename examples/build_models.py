"""Build the small example models from scikit-learn's bundled datasets.

    python -m examples.build_models --out models

Writes `models/<name>/` for each example: the model file in KServe's folder convention
(`model.joblib`, `model.json`, `model.txt`, `model.pt`, `model.onnx`) and
`reference.npy`, the training features that detectors and explainers fit on. Everything
is seeded, so two runs give the same models; the whole build takes a few seconds on CPU.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from examples.hf_models import build_tiny_classifier, build_tiny_llm, copy_minilm

SEED = 0


def _save_reference(folder: Path, X: np.ndarray) -> None:
    np.save(folder / "reference.npy", np.ascontiguousarray(X, dtype=np.float32))


def build_sklearn_iris(folder: Path) -> str:
    """Logistic regression on iris (4 features, 3 classes)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000, random_state=SEED).fit(X, y)
    joblib.dump(model, folder / "model.joblib")
    _save_reference(folder, X)
    return f"accuracy {model.score(X, y):.3f}"


def build_xgboost_cancer(folder: Path) -> str:
    """Gradient-boosted trees on breast cancer (30 features, binary)."""
    import xgboost as xgb
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    model = xgb.XGBClassifier(
        n_estimators=40, max_depth=3, learning_rate=0.2, random_state=SEED, n_jobs=2, tree_method="hist"
    )
    model.fit(X, y)
    # The Booster file, as KServe's xgbserver loads it (the sklearn wrapper's own save_model
    # trips over scikit-learn >= 1.8 in xgboost 3.0).
    model.get_booster().save_model(str(folder / "model.json"))
    _save_reference(folder, X)
    return f"accuracy {model.score(X, y):.3f}"


def build_lightgbm_wine(folder: Path) -> str:
    """LightGBM on wine (13 features, 3 classes), saved as a text Booster."""
    import lightgbm as lgb
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    model = lgb.LGBMClassifier(
        n_estimators=30, num_leaves=8, random_state=SEED, n_jobs=2, deterministic=True, verbose=-1
    )
    model.fit(X, y)
    model.booster_.save_model(str(folder / "model.txt"))
    _save_reference(folder, X)
    return f"accuracy {model.score(X, y):.3f}"


def _digits_cnn():
    """A small CNN on 8x8 digits; takes (N, 64) or (N, 1, 8, 8) float32, returns logits (N, 10)."""
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(8, 16, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # Flat rows are what V1 clients and detectors send; reshape in the graph so both work.
            return self.head(self.features(x.reshape(-1, 1, 8, 8)))

    return DigitsCNN()


def _train_digits():
    import torch
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)  # pixel values are 0..16
    torch.manual_seed(SEED)
    torch.set_num_threads(min(2, torch.get_num_threads()))  # tiny convs: more threads only contend
    model = _digits_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    gen = torch.Generator().manual_seed(SEED)
    for _epoch in range(8):
        for idx in torch.randperm(len(xt), generator=gen).split(128):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    return model, X, acc


_DIGITS: dict = {}


def _digits():
    # Train once; TorchScript and ONNX get the same weights.
    if not _DIGITS:
        _DIGITS["model"], _DIGITS["X"], _DIGITS["acc"] = _train_digits()
    return _DIGITS["model"], _DIGITS["X"], _DIGITS["acc"]


def build_torch_digits(folder: Path) -> str:
    import torch

    model, X, acc = _digits()
    scripted = torch.jit.script(model)
    scripted.save(str(folder / "model.pt"))
    _save_reference(folder, X)
    return f"accuracy {acc:.3f}"


def build_onnx_digits(folder: Path) -> str:
    import torch

    model, X, acc = _digits()
    # The TorchScript-based exporter: dynamic batch axis, no onnxscript rewrite passes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.from_numpy(X[:2]),),
            str(folder / "model.onnx"),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    _save_reference(folder, X)
    return f"accuracy {acc:.3f}"


BUILDERS: dict[str, Callable[[Path], str]] = {
    "sklearn-iris": build_sklearn_iris,
    "xgboost-cancer": build_xgboost_cancer,
    "lightgbm-wine": build_lightgbm_wine,
    "torch-digits": build_torch_digits,
    "onnx-digits": build_onnx_digits,
    "tiny-llm": build_tiny_llm,
    "tiny-classifier": build_tiny_classifier,
    "all-minilm-l6-v2": copy_minilm,
}


def build_all(out: Path, only: list[str] | None = None) -> None:
    """Build every example model (or those named in `only`) under `out`."""
    for name, build in BUILDERS.items():
        if only and name not in only:
            continue
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        note = build(folder)
        print(f"built {name:<16} {note}  ({time.perf_counter() - start:.1f}s) -> {folder}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="folder to write models/<name>/ into")
    parser.add_argument("--only", nargs="*", choices=sorted(BUILDERS), help="build only these models")
    args = parser.parse_args(argv)
    build_all(args.out, args.only)


if __name__ == "__main__":
    main()
