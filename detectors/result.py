"""What a detector says about one window (or one event, for online detectors).

Free of alibi-detect types so permissive backends can stand beside the BSL ones; this is
the body of the `io.infertap.detection.*` CloudEvents (plus the covered event ids and
offsets, added by the worker).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DetectionKind = Literal["drift", "outlier", "adversarial", "performance", "dataquality"]
#: a data-quality check (docs/data-quality.md), a closed set: a metric label
QualityCheck = Literal["missing", "type", "range", "unseen", "constant", "empty", "duplicate"]
#: whether a performance figure was estimated without labels (CBPE, DLE) or computed from them
PerformanceSource = Literal["estimated", "realised"]


class FeatureScore(BaseModel):
    """Per-feature drift figures, where the detector gives them (univariate tests)."""

    name: str
    p_val: float | None = None
    distance: float | None = None
    is_drift: bool | None = None
    value: float | None = Field(
        default=None, description="The window's own value, where the detector gives one (a mean, a share)."
    )
    reference: float | None = Field(default=None, description="The same value on the reference.")


class MetricEstimate(BaseModel):
    """One performance figure of a window: its value, confidence band and alert thresholds."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)

    name: str = Field(description="accuracy, precision, recall, f1, roc_auc (classification); mae, rmse (regression).")
    klass: str = Field(
        default="_all",
        alias="class",
        description="_all (the whole window), _macro (the mean over classes) or a class: the gauge's `class` label.",
    )
    headline: bool = Field(default=True, description="One of the figures the window's is_alert is judged on.")
    value: float | None = Field(description="The estimate (None when the window gives none, e.g. a class absent).")
    sampling_error: float | None = Field(
        default=None, description="Standard error of the metric at this window's size."
    )
    lower: float | None = Field(default=None, description="Confidence band: value - band_std x sampling_error.")
    upper: float | None = Field(default=None, description="Confidence band: value + band_std x sampling_error.")
    lower_threshold: float | None = Field(default=None, description="Alert below: reference chunks' mean - k std.")
    upper_threshold: float | None = Field(default=None, description="Alert above: reference chunks' mean + k std.")
    alert: bool = Field(default=False, description="The value lies outside the thresholds.")


class QualityExample(BaseModel):
    """A row that fails a data-quality check, and its value."""

    row: int = Field(description="The row of the window's frame.")
    value: Any = Field(
        default=None, description="The value as sent (a row's values for duplicates); text cut to 100 characters."
    )
    event_id: str | None = Field(default=None, description="The event the row came from (set by the worker).")


class QualityViolation(BaseModel):
    """One violated data-quality check of one feature in a window."""

    feature: str = Field(description="The feature; _all for duplicate rows.")
    check: QualityCheck
    count: int = Field(description="Rows failing the check.")
    share: float = Field(description="Their share of the window's rows.")
    threshold: float = Field(
        description="The share above which the check is violated (constant: the chance bound constant_alpha)."
    )
    reference: float | None = Field(
        default=None, description="The reference's share (missing, duplicate) or top value share (constant)."
    )
    examples: list[QualityExample] = Field(default_factory=list)
    message: str = Field(description="One sentence.")


class FeatureQuality(BaseModel):
    """One feature's data-quality figures in a window (violated or not)."""

    name: str
    type: str = Field(description="Its schema type: numeric, integer, categorical, boolean or string.")
    rows: int
    missing: int = Field(description="Rows holding null or NaN.")
    missing_share: float
    type_violations: int = 0
    out_of_range: int = 0
    unseen: int = Field(default=0, description="Values outside the categories (categorical).")
    distinct: int = Field(default=0, description="Distinct present values.")
    min: float | None = Field(default=None, description="The window's smallest finite number (numeric, integer).")
    max: float | None = Field(default=None, description="The window's largest finite number (numeric, integer).")
    constant: bool = False
    empty: bool = False


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
    # performance (window-level)
    performance_kind: PerformanceSource | None = Field(
        default=None,
        description="Performance: estimated (without labels: CBPE, DLE) or realised (from the labels that came back).",
    )
    problem: str | None = Field(default=None, description="Performance: binary, multiclass or regression.")
    metrics: list[MetricEstimate] = Field(default_factory=list, description="Performance: one entry per metric.")
    is_alert: bool | None = Field(
        default=None,
        description="Performance: some metric lies outside its thresholds; data quality: some check is violated.",
    )
    # data quality (window-level)
    violations: list[QualityViolation] = Field(
        default_factory=list, description="Data quality: each violated (feature, check), with counts and examples."
    )
    quality: list[FeatureQuality] = Field(
        default_factory=list, description="Data quality: every feature's figures of the window."
    )
    raw: dict[str, Any] = Field(default_factory=dict, description="Backend's own output, JSON-able.")
    companions: list[DetectionResult] = Field(
        default_factory=list,
        description=(
            "Further results on the same window from one backend (a TextSuite's outlier member), each "
            "published as a detection event of its own kind."
        ),
    )
    excluded: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Left out of the window before judging (set by the worker): failed_response (events whose response "
            "status was not 2xx), missing_value (rows holding a null, NaN or infinity, dropped)."
        ),
    )
