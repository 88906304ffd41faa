"""What every alibi-detect backend shares: lazy import, parameter checks, save/load, result mapping.

alibi-detect 0.13.0 is under the Business Source License 1.1 (production use needs a
licence from Seldon; each release turns Apache-2.0 four years after it came out). It is an
optional extra (`pip install 'infertap[alibi-detect]'`), imported only inside methods, and
none of its types leave these modules: callers see `DetectionResult`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.backends.folder import write_manifest

#: how a backend's fitted alibi-detect object is written:
#: "alibi": alibi-detect's own `save_detector` (config.toml, or the legacy dill+model format
#: for TF outlier/adversarial detectors), so the folder also loads with `load_detector`;
#: "dill": the whole object, thresholds and state included (online detectors, whose
#: thresholds `load_detector` would spend tens of seconds re-simulating, and IForest /
#: Mahalanobis, whose `save_detector` needs TensorFlow).
Store = Literal["alibi", "dill"]
DETECTOR_DILL = "detector.dill"
INSTALL_HINT = "pip install 'infertap[alibi-detect]' (alibi-detect 0.13.0, Business Source License 1.1)"


def import_alibi(module: str) -> Any:
    """Import an alibi_detect module, or raise ImportError saying which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is not installed: {INSTALL_HINT} ({exc})") from exc


def torch_device() -> str:
    """'cuda' when torch sees a GPU, else 'cpu' (torch is imported here, lazily)."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def finite(value: Any) -> float | None:
    """A float for JSON, or None for missing / NaN values."""
    if value is None:
        return None
    value = float(np.asarray(value).reshape(-1)[0]) if np.ndim(value) else float(value)
    return None if math.isnan(value) else value


def floats(values: Any) -> list[float | None]:
    return [finite(v) for v in np.asarray(values, dtype=float).reshape(-1)]


def scores(values: Any) -> list[float]:
    """Per-row scores as floats; ValueError for a NaN one (`DetectionResult.instance_scores` holds no None)."""
    out: list[float] = []
    for value in floats(values):
        if value is None:
            raise ValueError("the detector gave a NaN instance score")
        out.append(value)
    return out


def scalar_raw(data: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able, small part of alibi-detect's `data` dict (no probabilities, models, arrays of rows)."""
    raw: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, (bool, int, float, str, np.generic)) or value is None:
            raw[key] = value.item() if isinstance(value, np.generic) else value
            if isinstance(raw[key], float) and math.isnan(raw[key]):
                raw[key] = None
    return raw


class AlibiBackend(DetectorBackend):
    """A DetectorBackend wrapping one alibi-detect detector class.

    `params` are the alibi-detect constructor's keyword arguments (checked against its
    signature when the backend is created) plus the few of our own in `own_params`.
    """

    alibi_module: ClassVar[str]
    #: alibi-detect's class name; defaults to the backend's name
    alibi_class: ClassVar[str | None] = None
    #: parameters this wrapper consumes itself (name -> description), never passed to alibi-detect
    own_params: ClassVar[dict[str, str]] = {}
    #: constructor arguments that are data, not settings: never taken from params
    data_args: ClassVar[tuple[str, ...]] = ("x_ref", "self")
    store: ClassVar[Store] = "alibi"

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(list(feature_names), dict(params))
        self.detector: Any = None
        self.check_params()

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def name(cls) -> str:
        return cls.alibi_class or cls.__name__

    @classmethod
    def alibi_cls(cls) -> type[Any]:
        return getattr(import_alibi(cls.alibi_module), cls.name())

    @classmethod
    def accepted(cls) -> set[str]:
        """Keyword arguments alibi-detect's constructor takes, less the data ones."""
        signature = inspect.signature(cls.alibi_cls().__init__)
        return {n for n in signature.parameters if n not in cls.data_args}

    def check_params(self) -> None:
        """ValueError naming the first parameter that neither alibi-detect nor this wrapper knows."""
        known = self.accepted() | set(self.own_params)
        for key in self.params:
            if key not in known:
                raise ValueError(f"{self.name()}: unknown parameter {key!r} (known: {', '.join(sorted(known))})")

    def alibi_kwargs(self) -> dict[str, Any]:
        """Params for alibi-detect's constructor (ours removed, defaults filled in)."""
        kwargs = {k: v for k, v in self.params.items() if k not in self.own_params}
        kwargs.update({k: v for k, v in self.defaults().items() if k not in kwargs})
        return kwargs

    def defaults(self) -> dict[str, Any]:
        """Constructor defaults that differ from alibi-detect's (e.g. the pytorch backend)."""
        return {}

    def construct(self, *args: Any, **extra: Any) -> Any:
        """Build the alibi-detect object; its TypeError/ValueError become ValueError naming the detector."""
        quiet = logging.getLogger("alibi_detect")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "No threshold level set": fit infers it next
        try:
            return self.alibi_cls()(*args, **self.alibi_kwargs(), **extra)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.name()}: bad parameters {self.params!r}: {exc}") from exc
        finally:
            quiet.setLevel(level)

    @classmethod
    def from_alibi(cls, detector: Any, feature_names: list[str] | None = None) -> AlibiBackend:
        """Wrap an alibi-detect object loaded elsewhere (e.g. by `load_detector`)."""
        backend = cls.__new__(cls)
        DetectorBackend.__init__(backend, list(feature_names or []), {})
        backend.detector = detector
        return backend

    # --- results ---------------------------------------------------------------------------

    def names_for(self, d: int) -> list[str]:
        if len(self.feature_names) == d:
            return list(self.feature_names)
        return [f"f{j}" for j in range(d)]

    def require_fitted(self) -> Any:
        if self.detector is None:
            raise RuntimeError(f"{self.name()} is not fitted: call fit(x_ref) or load(path) first")
        return self.detector

    # --- persistence -----------------------------------------------------------------------

    def save(self, path: Path) -> None:
        path = Path(path)
        detector = self.require_fitted()
        path.mkdir(parents=True, exist_ok=True)
        if self.store == "alibi":
            from alibi_detect.saving import save_detector

            save_detector(detector, str(path))
        else:
            import dill

            with open(path / DETECTOR_DILL, "wb") as fh:
                dill.dump(detector, fh)
        write_manifest(
            path, type(self).__name__, self.feature_names, self.params, store=self.store, alibi_detect=_alibi_version()
        )

    def load(self, path: Path) -> None:
        path = Path(path)
        if (path / DETECTOR_DILL).is_file():
            import_alibi(self.alibi_module)  # the classes the pickle names must import
            import dill

            with open(path / DETECTOR_DILL, "rb") as fh:
                self.detector = dill.load(fh)
        else:
            from alibi_detect.saving import load_detector

            self.detector = load_detector(str(path))


def _alibi_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("alibi-detect")
    except Exception:  # noqa: BLE001 - only informative
        return None
