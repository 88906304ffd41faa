"""The detector side of a worker: build or restore the backend, judge windows, keep state.

Shared by the Kafka worker and the HTTP ingress. Backends come from
`infertap.detectors.backends.registry` (imported lazily: alibi-detect is heavy and optional), or
from `package.module:Class` names for a DetectorBackend subclass of one's own.
Online backends are fed one row at a time, as their tests expect, and their state is saved
under `state_dir` when the worker commits, so a restart resumes where the commit left it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.quality.schema import DATA_QUALITY, with_feature_types
from infertap.detectors.reference import load_labelled, load_reference
from infertap.detectors.result import DetectionResult
from infertap.detectors.settings import FeatureSettings, WorkerSettings

log = logging.getLogger(__name__)

#: detectors whose `categories_per_feature` the spec's categorical features fill in
CATEGORICAL_AWARE = ("TabularDrift", "ChiSquareDrift")
#: detectors whose alert thresholds come from reference chunks: of the spec's window size by default
CHUNKED = ("CBPE", "DLE", "DataQuality")


def backend_params(settings: WorkerSettings) -> dict[str, Any]:
    """The spec's params, with `categories_per_feature` from categorical features where it applies."""
    params = dict(settings.params)
    categorical = {
        j: (len(f.categories) if f.categories else None)
        for j, f in enumerate(settings.features)
        if f.type == "categorical"
    }
    if categorical and settings.detector in CATEGORICAL_AWARE:
        params.setdefault("categories_per_feature", categorical)
    if settings.detector in CHUNKED and settings.window.size:
        params.setdefault("chunk_size", settings.window.size)
    if settings.detector == DATA_QUALITY:  # the spec's categorical and text features are part of its schema
        params = with_feature_types(params, settings.features)
    return params


def build_backend(settings: WorkerSettings) -> DetectorBackend:
    """Restore saved online state, load a saved detector, or create and fit one from reference data;
    refused when missing values are to be passed to a backend that does not take them."""
    backend = _build(settings)
    if settings.missing_values == "pass" and not getattr(backend, "accepts_missing", False):
        raise ValueError(
            f"{type(backend).__name__} does not take missing values (NaN): set missingValues to drop or deadletter"
        )
    return backend


def _build(settings: WorkerSettings) -> DetectorBackend:
    state = current_state(settings.state_dir)
    if state is not None:  # trusted: this worker wrote it (online state is dill), see docs/detector-backends.md
        log.info("restoring detector state from %s", state)
        return _load(settings, state, allow_pickle=True)
    if settings.saved_detector is not None:
        return _load(settings, settings.saved_detector, allow_pickle=settings.allow_pickle)
    backend = _create(settings.detector, settings.feature_names, backend_params(settings))
    if settings.reference is None:  # WorkerSettings allows it for DataQuality only: a schema declared whole
        from infertap.detectors.backends.data_quality import DataQuality

        if not isinstance(backend, DataQuality):
            raise ValueError(f"{settings.detector} needs reference data or a saved detector")
        backend.fit_declared()
        return backend
    fit_backend(backend, *read_reference(backend, settings.reference, settings.features))
    return backend


def read_reference(
    backend: DetectorBackend, path: Path, features: Sequence[FeatureSettings]
) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows, labels) to fit `backend` on: labels (the `target` column) only for `labelled` backends;
    a backend with a reader of its own (`reference_from`: the text detectors' corpora) reads it itself."""
    if backend.labelled:
        return load_labelled(path, features, getattr(backend, "target", "target"))
    own = getattr(backend, "reference_from", None)
    if own is not None:
        return own(path, features), None
    return load_reference(path, features), None


def fit_backend(backend: DetectorBackend, x_ref: np.ndarray, y_ref: np.ndarray | None) -> None:
    """`fit`, or `fit_labelled` for a backend fitted on labels."""
    if backend.labelled:
        assert y_ref is not None  # read_reference reads labels for labelled backends
        backend.fit_labelled(x_ref, y_ref)
    else:
        backend.fit(x_ref)


def _plugin(name: str) -> type[DetectorBackend]:
    """`package.module:Class`: a DetectorBackend subclass of the user's own."""
    import importlib

    module, _, attr = name.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, DetectorBackend)):
        raise TypeError(f"{name} is not a DetectorBackend subclass")
    return cls


def _create(name: str, feature_names: list[str], params: dict[str, Any]) -> DetectorBackend:
    if ":" in name:
        return _plugin(name)(feature_names, params)
    from infertap.detectors.backends.registry import create_backend

    return create_backend(name, feature_names, params)


def _load(settings: WorkerSettings, path: Path, allow_pickle: bool) -> DetectorBackend:
    from infertap.detectors.backends.registry import load_backend, require_no_pickles

    if ":" in settings.detector:  # the plugin's own code reads the folder: the same rule before it does
        if not allow_pickle:
            require_no_pickles(Path(path))
        backend = _plugin(settings.detector)(settings.feature_names, backend_params(settings))
        backend.load(Path(path))
        return backend
    return load_backend(path, settings.feature_names or None, allow_pickle=allow_pickle)


def current_state(state_dir: Path | None) -> Path | None:
    if state_dir is None:
        return None
    path = Path(state_dir) / "current"
    return path if path.is_dir() else None


class Evaluator:
    """Judges windows with one backend; `save_state` persists an online backend's state."""

    #: windows a caller may submit beyond the one it collects (in-process: nothing runs ahead)
    lookahead = 0

    def __init__(self, backend: DetectorBackend, state_dir: Path | None = None):
        self.backend = backend
        self.state_dir = Path(state_dir) if state_dir else None
        self.dirty = False
        self._pending: np.ndarray | None = None

    @property
    def kind(self) -> str:
        return self.backend.kind

    def submit(self, x: np.ndarray) -> None:
        """Queue a window; `collect` judges it (the interface `RemoteEvaluator` pipelines)."""
        self._pending = x

    def collect(self) -> tuple[DetectionResult, float]:
        """(result, seconds) of the window submitted last."""
        x, self._pending = self._pending, None
        if x is None:
            raise RuntimeError("collect without a window submitted")
        return self.evaluate(x)

    def evaluate(self, x: np.ndarray) -> tuple[DetectionResult, float]:
        """(result, seconds spent in the backend)."""
        started = time.perf_counter()
        result = self._online(x) if self.backend.online else self.backend.predict(x)
        return result, time.perf_counter() - started

    def _online(self, x: np.ndarray) -> DetectionResult:
        """Row by row; one result for the window: the last row's figures, flagged if any row was."""
        last: DetectionResult | None = None
        flagged: list[int] = []
        for i in range(x.shape[0]):
            last = self.backend.predict(x[i : i + 1])
            if last.is_drift:
                flagged.append(i)
        self.dirty = True
        if last is None:
            raise ValueError("empty window")
        raw = dict(last.raw)
        raw["drift_rows"] = flagged[:1000]
        return last.model_copy(update={"n": int(x.shape[0]), "is_drift": bool(flagged), "raw": raw})

    def close(self) -> None:
        """Nothing to release in-process (`RemoteEvaluator.close` ends its detector process)."""

    def save_state(self) -> None:
        """Write the online backend's state to state_dir/current (atomically, by rename)."""
        if not (self.backend.online and self.state_dir and self.dirty):
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fresh, current, old = (self.state_dir / n for n in ("next", "current", "previous"))
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir()
        self.backend.save(fresh)
        shutil.rmtree(old, ignore_errors=True)
        if current.exists():
            os.rename(current, old)
        os.rename(fresh, current)
        shutil.rmtree(old, ignore_errors=True)
        self.dirty = False
