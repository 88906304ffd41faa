"""Backends by name: `create_backend` for a spec's `detector.name`, `load_backend` for a saved folder.

Importing this module imports no detector library: each backend module is imported when its
name is asked for. Names are alibi-detect's class names for the alibi-detect backends
(Business Source License 1.1, extra `alibi-detect`; the TensorFlow ones, extra
`detectors-tf`) and `ScipyKS` / `SklearnIForest` for the permissive ones.

`load_backend` reads our own folders (with `infertap-detector.json`) and, unchanged, the
folders alibi-detect's `save_detector` writes (`config.toml` for drift detectors,
`meta.dill` for the legacy format of outlier and adversarial ones), as Seldon's
alibi-detect-server users have them.

Pickles run code when loaded, so a folder holding any (dill, pickle, joblib, torch.save
files, or a config.toml naming one) loads only with `allow_pickle=True`: the spec's
`detector.allowPickle: true` or `--allow-pickle`. Folders of data alone (config.toml with
.npy arrays, our manifest with .npy) load without it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.backends.folder import read_manifest

#: backend name -> module under infertap.detectors.backends
BACKENDS: dict[str, str] = {
    # permissive (scipy, scikit-learn): always available
    "ScipyKS": "scipy_drift",
    "SklearnIForest": "sklearn_outlier",
    # data quality against a schema inferred from reference data or declared (docs/data-quality.md)
    "DataQuality": "data_quality",
    # performance estimation without labels, fitted on labelled reference data
    "CBPE": "cbpe",  # classifiers (scikit-learn, scipy)
    "DLE": "dle",  # regressors (LightGBM, extra lightgbm)
    # text on the stream (docs/text-detectors.md): sentence embeddings (torch, transformers), scipy, scikit-learn
    "TextMMDDrift": "text_drift",
    "TextClassifierDrift": "text_drift",
    "TextDescriptorDrift": "text_drift",
    "TextOOD": "text_ood",
    "TextSuite": "text_suite",
    "LLMResponseSignals": "llm_signals",
    # alibi-detect, no TensorFlow
    "KSDrift": "alibi_drift",
    "CVMDrift": "alibi_drift",
    "ChiSquareDrift": "alibi_drift",
    "TabularDrift": "alibi_drift",
    "MMDDrift": "alibi_drift",
    "LSDDDrift": "alibi_drift",
    "ClassifierDrift": "alibi_drift",
    "MMDDriftOnline": "alibi_online",
    "LSDDDriftOnline": "alibi_online",
    "CVMDriftOnline": "alibi_online",
    "IForest": "alibi_outlier",
    "Mahalanobis": "alibi_outlier",
    # alibi-detect with TensorFlow (extra detectors-tf)
    "OutlierAE": "alibi_tf",
    "OutlierVAE": "alibi_tf",
    "AdversarialAE": "alibi_tf",
    "ModelDistillation": "alibi_tf",
}
TENSORFLOW = frozenset(name for name, module in BACKENDS.items() if module == "alibi_tf")


def known_backends() -> list[str]:
    return list(BACKENDS)


def backend_class(name: str) -> type[DetectorBackend]:
    """The class for `name`; ValueError listing the known names when there is none."""
    if name not in BACKENDS:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(BACKENDS)} (or package.module:Class)")
    module = importlib.import_module(f"infertap.detectors.backends.{BACKENDS[name]}")
    return getattr(module, name)


def create_backend(name: str, feature_names: list[str], params: dict[str, Any]) -> DetectorBackend:
    """An unfitted backend; ValueError for an unknown name or a parameter it does not take."""
    if not isinstance(params, dict):
        raise ValueError(f"{name}: params must be a mapping (got {type(params).__name__})")
    return backend_class(name)(list(feature_names), dict(params))


def load_backend(path: Path, feature_names: list[str] | None = None, allow_pickle: bool = False) -> DetectorBackend:
    """A fitted backend from a folder: ours, or one alibi-detect's `save_detector` wrote.

    `feature_names` name the columns of alibi-detect folders (which do not record them);
    our folders carry their own. A folder that holds a pickle is refused (PickleRefused, a
    ValueError naming the file and the opt-in) unless `allow_pickle`; nothing in it is
    read before that check.
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"saved detector {path} is not a folder")
    if not allow_pickle:
        require_no_pickles(path)
    manifest = read_manifest(path)
    if manifest is not None:
        cls = backend_class(manifest["backend"])
        backend = cls.__new__(cls)
        DetectorBackend.__init__(
            backend, list(manifest.get("feature_names") or feature_names or []), manifest.get("params") or {}
        )
        _prepare(backend)
        backend.load(path)
        return backend
    if (path / "config.toml").is_file() or (path / "meta.dill").is_file():
        return _load_alibi(path, feature_names)
    raise ValueError(f"{path} holds no saved detector (no infertap-detector.json, config.toml or meta.dill)")


def _prepare(backend: DetectorBackend) -> None:
    """Attributes a backend's __init__ would set, for one rebuilt from a folder (no param checks)."""
    from infertap.detectors.backends.alibi_common import AlibiBackend

    if isinstance(backend, AlibiBackend):
        backend.detector = None
    else:  # permissive backends: their __init__ checks params and sets defaults cheaply
        type(backend).__init__(backend, backend.feature_names, backend.params)


def _load_alibi(path: Path, feature_names: list[str] | None) -> DetectorBackend:
    """A folder from alibi-detect's `save_detector`, wrapped in the backend of the same class name."""
    from infertap.detectors.backends.alibi_common import AlibiBackend, import_alibi

    legacy = (path / "meta.dill").is_file() and not (path / "config.toml").is_file()
    if legacy and _legacy_name(path) in ("IForest", "Mahalanobis"):
        from infertap.detectors.backends.alibi_outlier import load_legacy

        detector = load_legacy(path)  # without TensorFlow, which alibi-detect's legacy loader insists on
    else:
        if legacy:
            from infertap.detectors.backends.alibi_tf import import_tf

            import_tf()
        detector = import_alibi("alibi_detect.saving").load_detector(str(path))
    name = type(detector).__name__
    if name not in BACKENDS:
        raise ValueError(f"{path}: alibi-detect {name} has no infertap backend; known: {', '.join(BACKENDS)}")
    cls = backend_class(name)
    if not issubclass(cls, AlibiBackend):
        raise ValueError(f"{path}: alibi-detect {name} has no infertap backend (infertap's {name} is another)")
    return cls.from_alibi(detector, feature_names)


def _legacy_name(path: Path) -> str | None:
    """The detector class a legacy folder's meta.dill names."""
    import dill

    with open(path / "meta.dill", "rb") as fh:
        meta = dill.load(fh)
    return meta.get("name") if isinstance(meta, dict) else None


# --- pickles -------------------------------------------------------------------------------

#: suffixes of files that are unpickled when loaded (torch.save files are pickles too)
PICKLE_SUFFIXES = frozenset({".dill", ".pkl", ".pickle", ".joblib", ".pt", ".pth"})


class PickleRefused(ValueError):
    """A saved detector folder holds a pickle and the user has not opted in."""


def require_no_pickles(path: Path) -> None:
    """PickleRefused naming the first pickle `path` holds or its config.toml names; else nothing."""
    found = pickles_in(Path(path))
    if found:
        raise PickleRefused(
            f"refusing to load pickled detector state {found[0]}: pickles can run code when loaded; "
            "set spec.detector.allowPickle: true (or --allow-pickle) if you trust this folder"
        )


def pickles_in(path: Path) -> list[Path]:
    """Pickled files in the folder (any depth), then those its alibi-detect config.toml refers to."""
    found = sorted(p for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    config = path / "config.toml"
    if config.is_file():  # alibi-detect resolves `src` strings (preprocess_fn, kernel, model) anywhere on disk
        for ref in _config_paths(config):
            target = ref if ref.is_absolute() else path / ref
            if target.suffix.lower() in PICKLE_SUFFIXES:
                found.append(target)
            elif target.is_dir() and target.resolve() != path.resolve():
                found += sorted(p for p in target.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    return found


def _config_paths(config: Path) -> list[Path]:
    """Every string in an alibi-detect config.toml that may name a file (none when it does not parse)."""
    import tomllib

    try:
        body = tomllib.loads(config.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []  # alibi-detect's loader fails on it too, before unpickling anything
    strings: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(body)
    return [Path(s).expanduser() for s in strings if s and s != "None" and not s.startswith("@") and "\n" not in s]
