"""DataQuality: each window checked against a schema of the features (docs/data-quality.md).

Fitted by `infertap fit` (or when the worker starts) from reference data: the schema is
inferred (`infertap.detectors.quality.infer`), what `params.schema` declares taking
precedence; a schema declared for every feature needs no reference data. Saved as a folder
of JSON (the manifest and `schema.json`), loaded without pickles.

A window is the object frame of `infertap.detectors.quality.decode.QualityDecoder` (the
values as sent, nulls and all). The result (`kind: dataquality`, published as
`io.infertap.dataquality`) names each violated feature and check with counts, shares,
thresholds and examples (`violations`), gives every feature's figures (`quality`), and
`is_alert` when anything is violated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.backends.folder import write_manifest
from infertap.detectors.quality.checks import check_window
from infertap.detectors.quality.infer import declared_only, infer_schema, read_frame
from infertap.detectors.quality.schema import (
    Schema,
    check_params,
    missing_declarations,
    undeclared,
)
from infertap.detectors.result import DetectionResult
from infertap.detectors.settings import FeatureSettings

SCHEMA_FILE = "schema.json"


class DataQuality(DetectorBackend):
    """Missing values, types, ranges, categories, constant and empty features, duplicate rows per window."""

    kind = "dataquality"
    accepts_missing: ClassVar[bool] = True  # missing values are what it counts

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(feature_names, params)
        if not feature_names:
            raise ValueError("DataQuality checks the features spec.features lists: list them")
        self.options = check_params(params, feature_names)
        self.schema: Schema | None = None
        self.on_progress: Callable[[str], None] | None = None  # set by `infertap fit`
        if not missing_declarations(self.options.declared, feature_names):  # declared whole: nothing to infer
            self.schema = declared_only(feature_names, self.options.declared)

    def reference_from(self, path: Path, features: Sequence[FeatureSettings]) -> Any:
        """The reference as a DataFrame of the features (csv, parquet, npy), values as they are."""
        return read_frame(path, [f.name for f in features] or self.feature_names)

    def fit(self, x_ref: Any) -> None:
        """Infer the schema from the reference frame (a DataFrame, or a 2-D array in feature order)."""
        import pandas as pd

        frame = (
            x_ref if isinstance(x_ref, pd.DataFrame) else pd.DataFrame(np.asarray(x_ref), columns=self.feature_names)
        )
        self.schema = infer_schema(frame, self.feature_names, self.options.declared, self.options, self.on_progress)

    def fit_declared(self) -> None:
        """No reference data: the schema params.schema declares (ValueError when it leaves a feature out)."""
        gaps = missing_declarations(self.options.declared, self.feature_names)
        if gaps:
            raise ValueError(undeclared(gaps))

    def predict(self, x: np.ndarray) -> DetectionResult:
        """Check one window (rows x features, the values as sent)."""
        schema = self._fitted()
        x = np.asarray(x, dtype=object)
        if x.ndim != 2 or x.shape[1] != len(schema.features):
            raise ValueError(f"DataQuality expects rows of {len(schema.features)} features, got shape {x.shape}")
        window = check_window(x, schema, self.options)
        return DetectionResult(
            kind="dataquality",
            detector="DataQuality",
            n=int(x.shape[0]),
            is_alert=bool(window.violations),
            violations=window.violations,
            quality=window.features,
            raw={
                "duplicates": {
                    "rows": window.duplicates,
                    "share": window.duplicate_share,
                    "threshold": window.duplicate_threshold,
                    "reference_share": schema.duplicate_share,
                }
            },
        )

    def fit_summary(self) -> dict[str, Any]:
        """What `infertap fit` prints: each feature's type and what it is checked against."""
        schema = self._fitted()
        summary: dict[str, Any] = {"rows": schema.rows, "duplicate_share": round(schema.duplicate_share, 4)}
        for f in schema.features:
            entry: dict[str, Any] = {"type": f.type, "missing_share": round(f.missing_share, 4)}
            if f.min is not None or f.max is not None:
                entry["range"] = [f.min, f.max]
            if f.categories is not None:
                entry["categories"] = len(f.categories)
            summary[f.name] = entry
        return summary

    def save(self, path: Path) -> None:
        """The manifest and schema.json: JSON only."""
        schema = self._fitted()
        write_manifest(path, "DataQuality", self.feature_names, self.params)
        (Path(path) / SCHEMA_FILE).write_text(schema.model_dump_json(indent=2) + "\n")

    def load(self, path: Path) -> None:
        file = Path(path) / SCHEMA_FILE
        if not file.is_file():
            raise ValueError(f"{path}: no {SCHEMA_FILE} (a DataQuality folder holds the manifest and its schema)")
        self.schema = Schema.model_validate_json(file.read_text())
        names = [f.name for f in self.schema.features]
        if names != self.feature_names:
            raise ValueError(f"{file} checks features {names}, but the folder's manifest names {self.feature_names}")

    def _fitted(self) -> Schema:
        if self.schema is None:
            raise ValueError("DataQuality has no schema: fit it on reference data, or declare every feature")
        return self.schema
