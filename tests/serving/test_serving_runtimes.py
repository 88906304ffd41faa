"""Runtimes loaded in-process: storage resolution, device selection on CPU, load errors naming the file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from infertap.serving.errors import InferenceError, ModelLoadError
from infertap.serving.runtimes import RUNTIMES, create_runtime, runtime_class
from infertap.serving.runtimes.devices import CPU_PROVIDER, CUDA_PROVIDER, select_onnx_providers, select_torch_device
from infertap.serving.settings import ModelSettings
from infertap.serving.storage import resolve_model_file

FILES = {
    "sklearn": "model.joblib",
    "xgboost": "model.json",
    "lightgbm": "model.txt",
    "pytorch": "model.pt",
    "onnx": "model.onnx",
}


def settings(fmt: str, uri: str | Path, **extra) -> ModelSettings:
    return ModelSettings(name="m", format=fmt, uri=str(uri), **extra)


def test_storage_accepts_file_uri_plain_path_and_folder(models_dir: Path) -> None:
    folder = models_dir / "sklearn-iris"
    file = folder / "model.joblib"
    assert resolve_model_file(f"file://{folder}", "sklearn") == file
    assert resolve_model_file(str(file), "sklearn") == file
    assert resolve_model_file(str(folder), "sklearn") == file  # reference.npy is not a model file


def test_storage_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=f"model file not found: {tmp_path / 'nope'}"):
        resolve_model_file(f"file://{tmp_path / 'nope'}", "sklearn")
    with pytest.raises(ModelLoadError, match=rf"no onnx model file \(\*\.onnx\) in folder {tmp_path}"):
        resolve_model_file(str(tmp_path), "onnx")
    (tmp_path / "a.pt").write_bytes(b"x")
    (tmp_path / "b.pt").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="several pytorch model files"):
        resolve_model_file(str(tmp_path), "pytorch")
    with pytest.raises(ModelLoadError, match="gs:// is not supported locally"):
        resolve_model_file("gs://bucket/model", "sklearn")


def test_registry_covers_every_format() -> None:
    assert set(RUNTIMES) == {"sklearn", "xgboost", "lightgbm", "pytorch", "onnx", "huggingface"}
    assert {runtime_class(f).platform for f in RUNTIMES} == {
        "sklearn",
        "xgboost",
        "lightgbm",
        "pytorch_torchscript",
        "onnxruntime_onnx",
        "huggingface",
    }
    with pytest.raises(ValueError, match="no runtime for model format 'tensorflow'"):
        runtime_class("tensorflow")


def test_torch_device_selection() -> None:
    assert select_torch_device("auto", cuda_available=True) == "cuda"
    assert select_torch_device("auto", cuda_available=False) == "cpu"
    assert select_torch_device("cuda", cuda_available=False) == "cpu"  # clean fallback, with a warning
    assert select_torch_device("cpu", cuda_available=True) == "cpu"


def test_onnx_provider_selection() -> None:
    both = [CUDA_PROVIDER, CPU_PROVIDER]
    assert select_onnx_providers("auto", both) == both
    assert select_onnx_providers("cpu", both) == [CPU_PROVIDER]
    assert select_onnx_providers("auto", [CPU_PROVIDER]) == [CPU_PROVIDER]
    assert select_onnx_providers("cuda", ["AzureExecutionProvider", CPU_PROVIDER]) == [CPU_PROVIDER]


def test_gpu_runtimes_pick_the_device_this_machine_has(models_dir: Path) -> None:
    import onnxruntime as ort
    import torch

    torch_rt = create_runtime(settings("pytorch", models_dir / "torch-digits", dynamic_batching=False))
    torch_rt.load()
    assert torch_rt.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    onnx_rt = create_runtime(settings("onnx", models_dir / "onnx-digits"))
    onnx_rt.load()
    assert onnx_rt.providers[0] == (CUDA_PROVIDER if CUDA_PROVIDER in ort.get_available_providers() else CPU_PROVIDER)
    assert onnx_rt._session.get_providers()[0] == onnx_rt.providers[0]
    X = np.load(models_dir / "torch-digits" / "reference.npy")[:3]
    a = asyncio.run(torch_rt.predict({"x": X}))["output-0"]
    b = asyncio.run(onnx_rt.predict({"input": X}))["logits"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)  # same weights, two runtimes
    asyncio.run(torch_rt.close())


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_corrupt_model_is_a_load_error_naming_the_file(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / FILES[fmt]
    path.write_bytes(b"this is not a model \x00\x01\x02" * 10)
    runtime = create_runtime(settings(fmt, f"file://{tmp_path}"))
    with pytest.raises(ModelLoadError) as err:
        runtime.load()
    assert f"cannot load {fmt} model 'm' from {path}" in str(err.value)
    assert not runtime.ready


def test_tabular_runtime_checks_feature_count(models_dir: Path) -> None:
    runtime = create_runtime(settings("xgboost", models_dir / "xgboost-cancer"))
    runtime.load()
    with pytest.raises(InferenceError, match="expects 30 features per row, got 4"):
        asyncio.run(runtime.predict({"x": np.zeros((1, 4), np.float32)}))
    with pytest.raises(InferenceError, match="needs numbers, got BYTES"):
        asyncio.run(runtime.predict({"x": np.array([[b"a"] * 30], dtype=object)}))


def test_predict_proba_setting_and_request_override(models_dir: Path, direct) -> None:
    X = np.load(models_dir / "sklearn-iris" / "reference.npy")[::30]
    runtime = create_runtime(settings("sklearn", models_dir / "sklearn-iris", predict_proba=True))
    runtime.load()
    assert runtime.metadata().outputs[0].shape == [-1, 3]
    np.testing.assert_allclose(asyncio.run(runtime.predict({"x": X}))["output-0"], direct.sklearn(X, proba=True))
    assert asyncio.run(runtime.predict({"x": X}, proba=False))["output-0"].tolist() == direct.sklearn(X).tolist()
