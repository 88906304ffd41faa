"""One interface for every detector backend (alibi-detect, scipy, scikit-learn, torch)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from infertap.detectors.result import DetectionKind, DetectionResult


class DetectorBackend(ABC):
    """A fitted detector that judges batches of rows.

    Subclasses live one per module under `detectors/backends/` and import their heavy
    libraries lazily, inside methods, so importing the registry stays cheap.
    """

    kind: ClassVar[DetectionKind]
    #: Online detectors are fed row by row (`update`) and keep state between windows.
    online: ClassVar[bool] = False
    #: Takes rows holding NaN (the worker's `missing_values: pass`); otherwise the worker drops or
    #: dead-letters them before `predict` sees them.
    accepts_missing: ClassVar[bool] = False
    #: Fitted on labelled reference data (`fit_labelled`): the performance estimators, which read the
    #: reference file's target column (`target`) beside the features.
    labelled: ClassVar[bool] = False

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        self.feature_names = feature_names
        self.params = params

    @abstractmethod
    def fit(self, x_ref: np.ndarray) -> None:
        """Fit from reference rows (2-D float array, or the backend's own shape)."""

    def fit_labelled(self, x_ref: np.ndarray, y_ref: np.ndarray) -> None:
        """Fit from reference rows and their labels (backends that are `labelled`)."""
        raise NotImplementedError(f"{type(self).__name__} is not fitted on labels")

    @abstractmethod
    def predict(self, x: np.ndarray) -> DetectionResult:
        """Judge a window of rows."""

    def save(self, path: Path) -> None:
        """Persist the fitted state under `path` (a folder)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    def load(self, path: Path) -> None:
        """Restore what `save` wrote."""
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded")
