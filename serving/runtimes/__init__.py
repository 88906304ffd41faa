"""Model runtimes behind one interface (`Runtime`), picked by KServe's `modelFormat.name`.

Runtime modules import their ML library lazily, so serving an sklearn model never imports torch.
"""

from __future__ import annotations

from importlib import import_module

from infertap.serving.runtimes.base import Runtime, Tensors
from infertap.serving.settings import ModelSettings

# modelFormat.name -> "module:Class"
RUNTIMES: dict[str, str] = {
    "sklearn": "infertap.serving.runtimes.sklearn:SKLearnRuntime",
    "xgboost": "infertap.serving.runtimes.xgboost:XGBoostRuntime",
    "lightgbm": "infertap.serving.runtimes.lightgbm:LightGBMRuntime",
    "pytorch": "infertap.serving.runtimes.pytorch:PyTorchRuntime",
    "onnx": "infertap.serving.runtimes.onnx:OnnxRuntime",
    "huggingface": "infertap.serving.runtimes.huggingface:HuggingFaceRuntime",
}


def runtime_class(model_format: str) -> type[Runtime]:
    """The Runtime class serving `model_format`; ValueError for formats with no runtime."""
    try:
        module, cls = RUNTIMES[model_format].split(":")
    except KeyError:
        raise ValueError(f"no runtime for model format {model_format!r}; known: {', '.join(RUNTIMES)}") from None
    return getattr(import_module(module), cls)


def create_runtime(settings: ModelSettings) -> Runtime:
    """An unloaded runtime for one model (call `load()` next)."""
    return runtime_class(settings.format)(settings)


__all__ = ["RUNTIMES", "Runtime", "Tensors", "create_runtime", "runtime_class"]
