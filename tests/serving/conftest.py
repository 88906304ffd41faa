"""Fixtures of the serving tests: one real model server process holding all five example models."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import Child, free_port

# name -> (format, folder under models/, extra ModelSettings)
SERVED = {
    "sklearn-iris": ("sklearn", "sklearn-iris", {"version": "1"}),
    "xgboost-cancer": ("xgboost", "xgboost-cancer", {}),
    "lightgbm-wine": ("lightgbm", "lightgbm-wine", {}),
    # A generous wait so concurrent test requests reliably share batches on a busy 2-core box.
    "torch-digits": ("pytorch", "torch-digits", {"max_batch_wait_ms": 50, "max_batch_size": 64}),
    "onnx-digits": ("onnx", "onnx-digits", {}),
}


class ServerProcess(Child):
    """`python -m infertap.serving --config ...` as a child process, stopped at the end of the session."""

    def __init__(self, settings: dict, log: Path):
        self.port = settings["http_port"]
        self.url = f"http://127.0.0.1:{self.port}"
        config = log.with_suffix(".json")
        config.write_text(json.dumps(settings))
        super().__init__([sys.executable, "-m", "infertap.serving", "--config", str(config)], log)

    def wait_ready(self, timeout: float = 120.0) -> None:
        self.wait_http(f"{self.url}/v2/health/ready", timeout)


@pytest.fixture(scope="session")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real model server serving every example model (python -m infertap.serving --config)."""
    models = [
        {"name": name, "format": fmt, "uri": f"file://{models_dir / folder}", **extra}
        for name, (fmt, folder, extra) in SERVED.items()
    ]
    settings = {"http_port": free_port(), "models": models, "inference_service": "tests"}
    proc = ServerProcess(settings, tmp_path_factory.mktemp("serving") / "server.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def reference(models_dir: Path):
    """reference.npy rows of a model folder: `reference("sklearn-iris")[:5]`."""
    cache: dict[str, np.ndarray] = {}

    def load(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = np.load(models_dir / name / "reference.npy")
        return cache[name]

    return load


class DirectModels:
    """The example models loaded straight from their files, to check the server's answers against."""

    def __init__(self, models_dir: Path):
        self.dir = models_dir

    def sklearn(self, X: np.ndarray, proba: bool = False) -> np.ndarray:
        import joblib

        model = joblib.load(self.dir / "sklearn-iris" / "model.joblib")
        return model.predict_proba(X) if proba else model.predict(X)

    def xgboost(self, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(str(self.dir / "xgboost-cancer" / "model.json"))
        return (booster.predict(xgb.DMatrix(X)) > 0.5).astype(np.int64)

    def lightgbm(self, X: np.ndarray) -> np.ndarray:
        import lightgbm as lgb

        return lgb.Booster(model_file=str(self.dir / "lightgbm-wine" / "model.txt")).predict(X).argmax(axis=1)

    def torch(self, X: np.ndarray) -> np.ndarray:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13
            model = torch.jit.load(str(self.dir / "torch-digits" / "model.pt"))
        with torch.no_grad():
            return model(torch.from_numpy(np.asarray(X, dtype=np.float32))).numpy()

    def onnx(self, X: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        session = ort.InferenceSession(str(self.dir / "onnx-digits" / "model.onnx"), providers=["CPUExecutionProvider"])
        return session.run(None, {"input": np.asarray(X, dtype=np.float32)})[0]


@pytest.fixture(scope="session")
def direct(models_dir: Path) -> DirectModels:
    return DirectModels(models_dir)
