"""Startup of the real server process: a missing or corrupt model ends it with a sentence naming the file."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_args(uri: str, fmt: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "infertap.serving",
        "--model-name",
        "m",
        "--model-format",
        fmt,
        "--storage-uri",
        uri,
        "--http-port",
        str(port),
    ]


def test_missing_model_exits_naming_the_file(spawn, tmp_path: Path) -> None:
    child = spawn(serve_args(f"file://{tmp_path}/absent", "sklearn", free_port()), name="serve-missing")
    assert child.proc.wait(60) == 1
    assert f"infertap serve: model file not found: {tmp_path}/absent" in child.tail()


def test_corrupt_model_exits_naming_the_file(spawn, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not an onnx graph")
    code = (
        "from infertap.serving.server import run; from infertap.serving.settings import ServerSettings, ModelSettings; "
        f"run(ServerSettings(http_port={free_port()}, models=[ModelSettings(name='m', format='onnx', "
        f"uri='{tmp_path}')]))"
    )
    child = spawn([sys.executable, "-c", code], name="serve-corrupt")
    assert child.proc.wait(60) == 1
    assert f"infertap serve: cannot load onnx model 'm' from {tmp_path}/model.onnx" in child.tail()


def test_python_m_serving_serves_from_flags(spawn, models_dir: Path) -> None:
    port = free_port()
    child = spawn(serve_args(f"file://{models_dir}/lightgbm-wine", "lightgbm", port), name="serve-flags")
    child.wait_http(f"http://127.0.0.1:{port}/v2/health/ready", timeout=90)
    r = httpx.post(f"http://127.0.0.1:{port}/v1/models/m:predict", json={"instances": [[13.0] * 13]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1
