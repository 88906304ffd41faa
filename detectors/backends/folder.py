"""The folder a saved backend lives in: `infertap-detector.json` names the backend that reads it.

Every backend saves into a folder with this manifest beside its own files, so
`registry.load_backend(path)` can rebuild it without being told what it is. Folders made by
alibi-detect's own `save_detector` carry no manifest (they have `config.toml` or
`meta.dill`); the registry recognises those separately.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "infertap-detector.json"
FORMAT_VERSION = 1


def jsonable(value: Any) -> Any:
    """Params as JSON: numpy scalars and arrays to Python, dict keys to str, NaN to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_manifest(path: Path, backend: str, feature_names: list[str], params: dict[str, Any], **extra: Any) -> None:
    """Write the manifest naming `backend` into the folder `path` (created if missing)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    body = {
        "format": FORMAT_VERSION,
        "backend": backend,
        "feature_names": list(feature_names),
        "params": jsonable(params),
        **jsonable(extra),
    }
    (path / MANIFEST).write_text(json.dumps(body, indent=2) + "\n")


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of the folder `path`, or None when it has none."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        return None
    body = json.loads(file.read_text())
    if not isinstance(body, dict) or "backend" not in body:
        raise ValueError(f"{file}: not an infertap detector manifest (no 'backend')")
    return body
