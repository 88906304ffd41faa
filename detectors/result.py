"""What a detector says about one window (or one event, for online detectors).

Free of alibi-detect types so permissive backends can stand beside the BSL ones; this is
the body of the `io.infertap.detection.*` CloudEvents (plus the covered event ids and
offsets, added by the worker).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

DetectionKind = Literal["drift", "outlier", "adversarial"]


class FeatureScore(BaseModel):
    """Per-feature drift figures, where the detector gives them (univariate tests)."""

    name: str
    p_val: float | None = None
    distance: float | None = None
    is_drift: bool | None = None


class DetectionResult(BaseModel):
    """One detector's verdict on a batch of rows."""

    kind: DetectionKind
    detector: str = Field(description="Backend class name, e.g. TabularDrift, IForest.")
    n: int = Field(description="Rows evaluated.")
    # drift (window-level)
    is_drift: bool | None = None
    p_val: float | None = Field(default=None, description="Window p-value (min over features for univariate tests).")
    distance: float | None = None
    threshold: float | None = None
    features: list[FeatureScore] = Field(default_factory=list)
    # outlier / adversarial (per row)
    is_outlier: list[bool] | None = None
    is_adversarial: list[bool] | None = None
    instance_scores: list[float] | None = None
    raw: dict[str, Any] = Field(default_factory=dict, description="Backend's own output, JSON-able.")
    excluded: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Left out of the window before judging (set by the worker): failed_response (events whose response "
            "status was not 2xx), missing_value (rows holding a null, NaN or infinity, dropped)."
        ),
    )
