"""Resolve a KServe `storageUri` to the one model file to load.

Accepted: `file:///abs/path`, `file://./relative/path`, or a plain path; each may name the
file itself or a folder holding exactly one model file of the format (KServe's folder
convention: `model.joblib`, `model.bst`, `model.pt`, ...). Remote schemes (gs://, s3://,
...) are for a real cluster's storage initializer and are refused here with a clear error.
"""

from __future__ import annotations

from pathlib import Path

from infertap.serving.errors import ModelLoadError

# File suffixes each format may use, most usual first.
MODEL_SUFFIXES: dict[str, tuple[str, ...]] = {
    "sklearn": (".joblib", ".pkl", ".pickle"),
    "xgboost": (".json", ".ubj", ".bst", ".model"),
    "lightgbm": (".txt", ".bst", ".model"),
    "pytorch": (".pt", ".pth", ".torchscript"),
    "onnx": (".onnx",),
}


def uri_to_path(uri: str) -> Path:
    """The local path a storageUri points at (file:// stripped); ModelLoadError for remote schemes."""
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ModelLoadError(
            f"storageUri {uri!r}: scheme {scheme}:// is not supported locally; "
            f"use file:// or a path (a KServe cluster's storage initializer downloads {scheme}://)"
        )
    return Path(uri)


def resolve_model_file(uri: str, model_format: str) -> Path:
    """The model file for `uri`: the file itself, or the single model file in the folder."""
    path = uri_to_path(uri)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path} (storageUri {uri!r})")
    if path.is_file():
        return path
    suffixes = MODEL_SUFFIXES.get(model_format, ())
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    named_model = [p for p in found if p.stem == "model"]
    if len(named_model) == 1:
        return named_model[0]
    if len(found) == 1:
        return found[0]
    wanted = ", ".join(f"*{s}" for s in suffixes)
    if not found:
        raise ModelLoadError(f"no {model_format} model file ({wanted}) in folder {path}")
    raise ModelLoadError(
        f"folder {path} holds several {model_format} model files "
        f"({', '.join(p.name for p in found)}); point storageUri at one of them"
    )
