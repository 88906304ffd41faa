"""Fixtures of the explainer tests: one real model server (child process) serving the example
models, a real logger sidecar in front of it, and explainer servers on real HTTP ports.

Explainer apps run in this process under uvicorn on a thread (a real server on 127.0.0.1:
its predictor calls are real HTTP), which spares each test the seconds it takes to import
shap, captum and alibi in a fresh process on a busy 2-core machine; the `python -m
explainers` process itself is covered by the CLI tests.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import free_port, running

SERVED = {
    "sklearn-iris": "sklearn",
    "xgboost-cancer": "xgboost",
    "lightgbm-wine": "lightgbm",
    "torch-digits": "pytorch",
}
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="session")
def predictor(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real model server (python -m infertap.serving) holding four example models."""
    folder = tmp_path_factory.mktemp("explain-predictor")
    port = free_port()
    models = [{"name": n, "format": f, "uri": f"file://{models_dir / n}"} for n, f in SERVED.items()]
    config = folder / "serving.json"
    config.write_text(json.dumps({"http_port": port, "models": models, "inference_service": "explain-tests"}))
    url = f"http://127.0.0.1:{port}"
    with running(
        [sys.executable, "-m", "infertap.serving", "--config", str(config)],
        folder / "serving.log",
        f"{url}/v2/health/ready",
        timeout=240,
    ):
        yield url


@pytest.fixture(scope="session")
def logged_predictor(predictor: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL, JSONL file): the real logger sidecar with a file:// sink in front of the predictor."""
    folder = tmp_path_factory.mktemp("explain-logger")
    sink = folder / "events.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        [
            sys.executable,
            "-m",
            "infertap.sidecar",
            "--port",
            str(port),
            "--component-port",
            predictor.rsplit(":", 1)[1],
            "--inference-service",
            "sklearn-iris",
            "--log-url",
            f"file://{sink}",
            "--spool-dir",
            str(folder / "spool"),
        ],
        folder / "logger.log",
        f"{url}/infertap/metrics",
        timeout=120,
    ):
        yield url, sink


class ThreadServer:
    """An ASGI app served by uvicorn on a free port, on a daemon thread."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("explainer app did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def serve_explainer():
    """`serve_explainer(settings)` -> URL of a running explainer server; stopped at teardown."""
    from infertap.explainers.server import create_app
    from infertap.explainers.settings import ExplainerSettings

    running: list[ThreadServer] = []

    def start(**values) -> str:
        settings = ExplainerSettings(**values)
        server = ThreadServer(create_app(settings)).__enter__()
        running.append(server)
        return server.url

    yield start
    for server in reversed(running):
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def reference(models_dir: Path):
    def load(name: str) -> np.ndarray:
        return np.load(models_dir / name / "reference.npy")

    return load


def explain(url: str, model: str, instances, timeout: float = 120.0, **parameters) -> httpx.Response:
    body = {"instances": np.asarray(instances).tolist()}
    if parameters:
        body["parameters"] = parameters
    return httpx.post(f"{url}/v1/models/{model}:explain", json=body, timeout=timeout)


def metric(text: str, name: str, **labels) -> float | None:
    """The value of the first sample `name{labels...}` in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None
