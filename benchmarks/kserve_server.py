"""The reference for the serving benchmark: KServe's Python ModelServer serving a joblib model.

Runs inside its own virtual environment (`.venv-kserve`, see serving_throughput.py); it
imports nothing of infertap. The model class does what KServe's own sklearnserver does
(python/sklearnserver/sklearnserver/model.py): load the one joblib/pickle file of the model
folder in `load()`, and in `predict()` turn a V1 dict or a V2 `InferRequest` into an array
with `get_predict_input`, call `predict` (or `predict_proba` when PREDICT_PROBA=true) and
build the reply with `get_predict_response`. Predict is synchronous, as there, so it runs
on the event loop.

    .venv-kserve/bin/python benchmarks/kserve_server.py --model_name sklearn-iris \
        --model_dir models/sklearn-iris --http_port 8090 --enable_grpc false

Every flag of `kserve.model_server.parser` (workers, logging, ...) is accepted; they keep
KServe's defaults unless given.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import joblib
import kserve
from kserve.errors import InferenceError
from kserve.model_server import parser as kserve_parser
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.utils.utils import get_predict_input, get_predict_response

MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")


def find_model_file(model_dir: str) -> Path:
    """The single model file at `model_dir` (a file, or a folder holding exactly one)."""
    path = Path(model_dir.removeprefix("file://"))
    if path.is_file():
        return path
    found = [p for p in sorted(path.iterdir()) if p.is_file() and p.suffix in MODEL_SUFFIXES] if path.is_dir() else []
    if len(found) != 1:
        raise RuntimeError(f"expected one {'/'.join(MODEL_SUFFIXES)} file in {path}, found {len(found)}")
    return found[0]


class JoblibModel(kserve.Model):
    """A scikit-learn estimator behind KServe's V1 and V2 data planes."""

    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self._model = None
        self.ready = False

    def load(self) -> bool:
        self._model = joblib.load(find_model_file(self.model_dir))
        self.ready = True
        return self.ready

    def predict(self, payload: dict | InferRequest, headers: dict[str, str] = None) -> dict | InferResponse:
        try:
            instances = get_predict_input(payload)
            proba = os.environ.get("PREDICT_PROBA", "false").lower() == "true"
            if proba and hasattr(self._model, "predict_proba"):
                result = self._model.predict_proba(instances)
            else:
                result = self._model.predict(instances)
            return get_predict_response(payload, result, self.name)
        except Exception as exc:  # noqa: BLE001 - any model error: KServe turns InferenceError into a 500 with the message
            raise InferenceError(str(exc)) from exc


def main() -> None:
    # kserve's parser already defines --model_name (default "model"), as sklearnserver uses it.
    p = argparse.ArgumentParser(parents=[kserve_parser])
    p.add_argument("--model_dir", required=True, help="folder holding one joblib file, or the file")
    args, _ = p.parse_known_args()
    model = JoblibModel(args.model_name, args.model_dir)
    model.load()
    # ModelServer reads its settings (port, workers, grpc, logging) from the same argv.
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
