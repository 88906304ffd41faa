"""The data-quality schema: one entry per feature, inferred from reference data or declared in the spec.

A `Schema` is what `infertap fit` writes (`schema.json` in the saved folder, plain JSON, no
pickle) and what each window is checked against. A spec may declare any part of it under
`detector.params.schema` (`DeclaredFeature`, by feature name); declared fields win over
inferred ones, and a schema declared for every feature needs no reference data at all.

    params:
      schema:
        sepal_length: {type: numeric, min: 4.0, max: 8.0, tolerance: 0.1}
        colour: {type: categorical, categories: [red, green, blue], nullable: false}
      missing_margin: 0.05

Imports only pydantic and the result types: the spec model validates params with it cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

from infertap.detectors.result import QualityCheck

#: `detector.name` of the data-quality backend
DATA_QUALITY = "DataQuality"
FeatureType = Literal["numeric", "integer", "categorical", "boolean", "string"]
FEATURE_TYPES: tuple[FeatureType, ...] = ("numeric", "integer", "categorical", "boolean", "string")
NUMERIC_TYPES = ("numeric", "integer")
#: the checks, a closed set (a metric label)
Check = QualityCheck
CHECKS: tuple[Check, ...] = get_args(QualityCheck)
#: a category as the spec or JSON gives it
Category = str | int | float | bool
FORMAT_VERSION = 1


class DeclaredFeature(BaseModel):
    """What a spec may declare about one feature (`params.schema.<feature>`); unset fields are inferred."""

    model_config = ConfigDict(extra="forbid")

    type: FeatureType | None = Field(
        default=None, description="numeric, integer, categorical, boolean or string; default: inferred."
    )
    nullable: StrictBool | None = Field(
        default=None,
        description="false: any missing value (null, NaN) in a window is a violation; default true (missing values "
        "are a violation when their share exceeds the reference's by missing_margin).",
    )
    min: float | None = Field(default=None, description="Smallest allowed value (numeric, integer).")
    max: float | None = Field(default=None, description="Largest allowed value (numeric, integer).")
    tolerance: float | None = Field(
        default=None, ge=0, description="Share of max - min allowed beyond either end; default params.range_tolerance."
    )
    categories: list[Category] | None = Field(
        default=None, min_length=1, description="The allowed values of a categorical feature."
    )

    @field_validator("categories")
    @classmethod
    def _unique(cls, values: list[Category] | None) -> list[Category] | None:
        if values is not None:
            seen: set[Any] = set()
            for value in values:
                key = category_key(value)
                if key in seen:
                    raise ValueError(f"category {value!r} is listed twice")
                seen.add(key)
        return values

    @model_validator(mode="after")
    def _fits_type(self) -> DeclaredFeature:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        ranged = self.min is not None or self.max is not None or self.tolerance is not None
        if ranged and self.type not in (None, *NUMERIC_TYPES):
            raise ValueError(f"min, max and tolerance apply to numeric and integer features, not {self.type}")
        if self.categories is not None and self.type not in (None, "categorical"):
            raise ValueError(f"categories apply to categorical features, not {self.type}")
        if self.categories is not None and ranged:
            raise ValueError("give categories (categorical) or min/max (numeric), not both")
        return self

    @property
    def implied_type(self) -> FeatureType | None:
        """The type, or the one its other fields imply (categories: categorical)."""
        if self.type is not None:
            return self.type
        return "categorical" if self.categories is not None else None


class DataQualityParams(BaseModel):
    """`detector.params` of a DataQuality document: the declared schema and each check's threshold."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: dict[str, DeclaredFeature] = Field(
        default_factory=dict,
        alias="schema",
        description="Declared schema by feature name; what it leaves out is inferred from the reference data.",
    )
    checks: list[Check] = Field(default_factory=lambda: list(CHECKS), description="The checks to run.")
    missing_margin: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Missing values violate when their share of a window exceeds the reference's share plus this.",
    )
    type_share: float = Field(
        default=0.0, ge=0, le=1, description="Type violations violate when their share of a window exceeds this."
    )
    range_tolerance: float = Field(
        default=0.1,
        ge=0,
        description="Allowed beyond the reference's [min, max], as a share of max - min (each end).",
    )
    range_share: float = Field(
        default=0.0, ge=0, le=1, description="Values out of range violate when their share of a window exceeds this."
    )
    unseen_share: float = Field(
        default=0.0, ge=0, le=1, description="Unseen categories violate when their share of a window exceeds this."
    )
    constant_alpha: float = Field(
        default=0.001,
        gt=0,
        lt=1,
        description="A window holding one value only violates when the reference makes that this unlikely "
        "(its most common value's share to the power rows - 1 below this).",
    )
    duplicate_margin: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Duplicate rows violate when their share of a window exceeds the reference's (in chunks of "
        "the window's size) plus this.",
    )
    max_categories: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Inference: a text column with at most this many distinct values is categorical, else string.",
    )
    examples: int = Field(default=3, ge=0, le=20, description="Example values per violation in the detection.")
    chunk_size: int | None = Field(
        default=None,
        ge=2,
        description="Rows per reference chunk for the reference's duplicate share; default the spec's window size.",
    )

    @property
    def declared(self) -> dict[str, DeclaredFeature]:
        return self.schema_


class FeatureSchema(BaseModel):
    """One feature of a fitted schema: what a window is checked against."""

    name: str
    type: FeatureType
    nullable: bool = Field(default=True, description="false: any missing value is a violation.")
    min: float | None = Field(default=None, description="Reference minimum (numeric, integer).")
    max: float | None = Field(default=None, description="Reference maximum (numeric, integer).")
    tolerance: float | None = Field(default=None, description="Declared tolerance; None: params.range_tolerance.")
    categories: list[Category] | None = Field(default=None, description="Allowed values (categorical).")
    missing_share: float = Field(default=0.0, description="Share of the reference's rows missing this feature.")
    top_share: float | None = Field(
        default=None, description="Share of the reference's most common value (the constant check); None: unknown."
    )
    distinct: int | None = Field(default=None, description="Distinct values in the reference; None: unknown.")
    declared: list[str] = Field(default_factory=list, description="Fields the spec declared (the rest inferred).")

    def allowed_range(self, default_tolerance: float) -> tuple[float, float] | None:
        """[low, high] a value may take: the range widened by the tolerance (a share of max - min; of |max|,
        or 1, for a range of one value); None when the schema has no range."""
        if self.type not in NUMERIC_TYPES or (self.min is None and self.max is None):
            return None
        tolerance = default_tolerance if self.tolerance is None else self.tolerance
        lo = -math.inf if self.min is None else self.min
        hi = math.inf if self.max is None else self.max
        span = hi - lo if math.isfinite(hi - lo) else 0.0
        if span == 0.0:
            span = max(abs(hi if math.isfinite(hi) else lo), 1.0)
        return lo - tolerance * span, hi + tolerance * span


class Schema(BaseModel):
    """A fitted schema (`schema.json` in the saved folder)."""

    format: int = FORMAT_VERSION
    features: list[FeatureSchema]
    rows: int = Field(default=0, description="Reference rows it was inferred from (0: declared only).")
    duplicate_share: float = Field(default=0.0, description="The reference's share of duplicate rows per chunk.")
    chunk_size: int | None = Field(default=None, description="Rows per chunk of that share.")

    def feature(self, name: str) -> FeatureSchema | None:
        return next((f for f in self.features if f.name == name), None)


def category_key(value: Any) -> Any:
    """A hashable key comparing values as JSON does: 1 and 1.0 alike, True apart from 1, bytes as text."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return ("b", bool(value))
    if isinstance(value, (bytes, bytearray)):
        return ("s", bytes(value).decode("utf-8", "replace"))
    if isinstance(value, str):
        return ("s", value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ("o", repr(value))
    return ("n", int(number) if number.is_integer() else number)


def with_feature_types(params: dict[str, Any], features: Sequence[Any]) -> dict[str, Any]:
    """`params` with the spec's own feature types folded into `schema`: a `type: categorical` feature
    (with its `categories`) is declared categorical, a `type: text` one string, unless `params.schema`
    gives the feature a type itself."""
    raw = params.get("schema")
    if raw is not None and not isinstance(raw, dict):
        return params  # not a mapping: validation names it
    declared = dict(raw or {})
    for feature in features:
        own = declared.get(feature.name, {})
        if feature.type not in ("categorical", "text") or not isinstance(own, dict) or own.get("type") is not None:
            continue
        if feature.type == "text":
            declared[feature.name] = {**own, "type": "string"}
            continue
        if feature.categories is not None and "categories" not in own:
            own = {**own, "categories": list(feature.categories)}
        declared[feature.name] = {**own, "type": "categorical"}
    return {**params, "schema": declared} if declared else params


def check_params(params: dict[str, Any], names: Sequence[str] = ()) -> DataQualityParams:
    """The validated params; ValueError naming the field (`params.schema.colour.categories: ...`), or the
    declared features spec.features does not list."""
    try:
        checked = DataQualityParams.model_validate(params)
    except ValidationError as exc:
        raise ValueError("; ".join(param_errors(exc, "params"))) from None
    unknown = [n for n in checked.declared if names and n not in names]
    if unknown:
        raise ValueError(
            f"params.schema names {', '.join(map(repr, unknown))}, which spec.features does not list "
            f"(it lists {', '.join(names)})"
        )
    return checked


def missing_declarations(declared: dict[str, DeclaredFeature], names: Sequence[str]) -> list[str]:
    """Features a schema without reference data cannot check: no type, or categorical without categories."""
    gaps = []
    for name in names:
        own = declared.get(name)
        kind = own.implied_type if own is not None else None
        if kind is None:
            gaps.append(f"{name} (no type)")
        elif kind == "categorical" and (own is None or own.categories is None):
            gaps.append(f"{name} (categorical without categories)")
    return gaps


def without_reference(params: dict[str, Any], features: Sequence[Any]) -> str | None:
    """Why a DataQuality document with neither reference data nor a saved detector cannot run, or None
    when its declared schema (params.schema, the features' own types folded in) covers every feature."""
    names = [f.name for f in features]
    if not names:
        return "DataQuality checks the features spec.features lists: list them"
    checked = check_params(with_feature_types(params, features), names)
    gaps = missing_declarations(checked.declared, names)
    return undeclared(gaps) if gaps else None


def undeclared(gaps: Sequence[str]) -> str:
    """The sentence for features a schema without reference data leaves out."""
    return (
        "DataQuality without reference data checks the schema params.schema declares, which leaves out "
        f"{', '.join(gaps)}: declare them, or give reference data to infer them from"
    )


def param_errors(exc: ValidationError, prefix: str) -> list[str]:
    """pydantic's errors as `prefix.field.path: sentence`."""
    out = []
    for err in exc.errors():
        where = ".".join([prefix, *(str(p) for p in err["loc"])])
        out.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return out
