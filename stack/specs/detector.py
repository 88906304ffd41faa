"""`infertap.dev/v1alpha1` `kind: Detector`: a detector worker on an InferenceService's events.

```yaml
apiVersion: infertap.dev/v1alpha1
kind: Detector
metadata: {name: iris-drift}
spec:
  source: {inferenceService: sklearn-iris, events: request}   # or topic:, bootstrap:, consumerGroup:, kafkaConfig:
  features:                                                   # or input: <V2 input name>
    - {name: sepal_length}
    - {name: colour, type: categorical, categories: [red, green]}
  detector: {name: TabularDrift, params: {p_val: 0.05}, reference: reference.npy}  # or savedDetector: (allowPickle:)
                                                              # missingValues: drop | deadletter | pass
  window: {size: 1000}                                        # or duration: 60; slide: for sliding
  outputs: {topic: ..., replyUrl: ..., deadLetterTopic: ..., metricsPort: 9102}
  replicas: 2                                                 # workers in one consumer group
  runtime: {python: .venv-tf/bin/python}                      # the worker's interpreter (stack/interpreter.py)
```

Realised performance (docs/ground-truth.md) is a Detector too: labels from `<isvc>-feedback`
joined by id to the logged responses; no reference data, `params` as
`infertap.detectors.performance.settings.PerformanceParams` declares them, `window` counts
labelled predictions, `stateDir` holds the join state (shared by its replicas):

```yaml
  detector: {name: RealisedPerformance, params: {task: classification, classes: [setosa, versicolor, virginica]}}
  window: {size: 500}
```

Relative paths are resolved beside the YAML file by the planner. `to_settings` builds the
worker's `WorkerSettings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictBool, ValidationError, field_validator, model_validator

from infertap.detectors.performance.settings import PERFORMANCE_DETECTORS, PerformanceParams
from infertap.detectors.quality.schema import DATA_QUALITY, check_params, with_feature_types, without_reference
from infertap.stack.specs.base import SpecModel
from infertap.stack.specs.inference_service import ObjectMeta
from infertap.stack.specs.logger_url import KafkaURL
from infertap.stack.specs.paths import spec_path

DETECTOR_API_VERSION = "infertap.dev/v1alpha1"


class SourceSpec(SpecModel):
    inference_service: str | None = None
    topic: str | None = None
    feedback_topic: str | None = Field(
        default=None, description="RealisedPerformance: the topic of the labels; default <inferenceService>-feedback"
    )
    bootstrap: str = "localhost:9092"
    events: Literal["request", "response", "joined"] = "request"
    consumer_group: str | None = None
    transport: Literal["kafka", "http"] = "kafka"
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "librdkafka properties (security.protocol, sasl.*, ssl.*); default: those of the "
            "InferenceService logger's kafka:// URL when the source is its topic"
        ),
    )

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        url = value if value.startswith("kafka://") else f"kafka://{value}"
        return KafkaURL.parse(url).bootstrap  # ValueError with a sentence when malformed

    @model_validator(mode="after")
    def _named(self) -> SourceSpec:
        if self.transport == "kafka" and not (self.inference_service or self.topic):
            raise ValueError("name an inferenceService (its topic is <name>-events) or a topic")
        return self


class FeatureSpec(SpecModel):
    name: str = Field(min_length=1)
    type: Literal["numeric", "categorical", "text"] = "numeric"
    categories: list[Any] | None = None
    source: Literal["input", "output"] = "input"
    messages: Literal["last_user", "user", "system", "conversation"] = Field(
        default="last_user", description="Text features of OpenAI chat requests: which messages make the text."
    )


class DetectorBlock(SpecModel):
    name: str = Field(min_length=1, description="TabularDrift, KSDrift, IForest, ... or package.module:Class")
    params: dict[str, Any] = Field(default_factory=dict)
    reference: str | None = None
    saved_detector: str | None = None
    missing_values: Literal["drop", "deadletter", "pass"] = Field(
        default="drop",
        description=(
            "Rows holding a null, NaN or infinity: drop them (counted), deadletter their events, or pass them to a "
            "backend that takes missing values"
        ),
    )
    allow_pickle: StrictBool = Field(
        default=False,
        description=(
            "Opt in to loading a savedDetector folder that holds pickles (dill, pickle, joblib, torch.save files, "
            "or a config.toml naming one): unpickling runs code, so set it only for folders you trust. Folders "
            "of data alone (alibi-detect config.toml drift folders, .npy) load without it."
        ),
    )

    @field_validator("reference")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and Path(value.removeprefix("file://")).suffix.lower() not in (
            ".csv",
            ".parquet",
            ".pq",
            ".npy",
            ".txt",  # text detectors: one text a line
            ".jsonl",  # text detectors: one JSON value (a string, an object, an OpenAI body) a line
        ):
            raise ValueError(f"reference data must be a .csv, .parquet, .npy, .txt or .jsonl file (got {value!r})")
        return value

    @property
    def performance(self) -> bool:
        """A realised-performance worker (`infertap.detectors.performance`), not a backend on frames."""
        return self.name in PERFORMANCE_DETECTORS

    @model_validator(mode="after")
    def _one_source(self) -> DetectorBlock:
        if self.performance:  # joins feedback: no reference data; params as `PerformanceParams` declares them
            if self.reference is not None or self.saved_detector is not None:
                raise ValueError(f"{self.name} joins labels to predictions: it takes no reference or savedDetector")
            try:
                PerformanceParams.model_validate(self.params)
            except ValidationError as exc:
                raise ValueError("params: " + "; ".join(_param_errors(exc))) from None
            return self
        if self.name == DATA_QUALITY:  # params as `DataQualityParams` declares them (a sentence naming the field)
            check_params(self.params)
            if self.reference is None and self.saved_detector is None:
                return self  # a declared schema only: DetectorSpec checks that it covers every feature
        if (self.reference is None) == (self.saved_detector is None):
            raise ValueError("give exactly one of reference (data to fit on) or savedDetector (a folder)")
        if self.allow_pickle and self.saved_detector is None:
            raise ValueError("allowPickle applies to a savedDetector folder; with reference data nothing is unpickled")
        return self


class WindowSpec(SpecModel):
    size: int | None = Field(default=None, ge=1)
    duration: float | None = Field(default=None, gt=0)
    slide: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> WindowSpec:
        if self.size is not None and self.duration is not None:
            raise ValueError("give size (events) or duration (seconds), not both")
        limit = self.size if self.size is not None else self.duration
        if self.slide is not None and limit is not None and self.slide > limit:
            raise ValueError(f"slide ({self.slide:g}) must not exceed the window ({limit:g})")
        if self.slide is not None and self.size is not None and self.slide != int(self.slide):
            raise ValueError(f"slide of a count window is a whole number of events (got {self.slide:g})")
        return self


class OutputsSpec(SpecModel):
    topic: str | None = None
    reply_url: str | None = None
    dead_letter_topic: str | None = None
    metrics_port: int = Field(default=9102, ge=0, le=65535)

    @field_validator("reply_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s):// URL (got {value!r})")
        return value


class RuntimeSpec(SpecModel):
    python: str | None = Field(
        default=None,
        description=(
            "The Python that runs this Detector's worker under `infertap up` (and `infertap fit` of it): a path, "
            "relative to the YAML's folder and then to the current one, or a command on PATH. Default: the Python "
            "running infertap; for the TensorFlow detectors $INFERTAP_TF_PYTHON, else infertap's own when it has "
            "TensorFlow, else the nearest .venv-tf/bin/python (`make venv-tf`) above the current or the YAML's folder."
        ),
    )


class DetectorSpec(SpecModel):
    source: SourceSpec
    features: list[FeatureSpec] = Field(default_factory=list)
    input: str | None = Field(default=None, description="V2 input tensor to take when features are not listed.")
    output: str | None = Field(default=None, description="V2 output tensor to take (response/joined events).")
    detector: DetectorBlock
    window: WindowSpec = Field(default_factory=lambda: WindowSpec(size=1000))
    outputs: OutputsSpec = Field(default_factory=OutputsSpec)
    state_dir: str | None = None
    replicas: int = Field(
        default=1, ge=1, le=32, description="Workers in one consumer group; they share the partitions."
    )
    runtime: RuntimeSpec = Field(
        default_factory=RuntimeSpec, description="How the worker runs locally: its Python interpreter."
    )

    @model_validator(mode="after")
    def _data_quality(self) -> DetectorSpec:
        """DataQuality: params.schema names listed features; without reference data it declares every one."""
        block = self.detector
        if block.name == DATA_QUALITY:
            if block.missing_values == "deadletter":
                raise ValueError(
                    "DataQuality counts missing values in every row: missingValues: deadletter does not apply"
                )
            check_params(with_feature_types(block.params, self.features), [f.name for f in self.features])
            if block.reference is None and block.saved_detector is None:
                why = without_reference(block.params, self.features)
                if why is not None:
                    raise ValueError(why)
        return self

    @model_validator(mode="after")
    def _replicas(self) -> DetectorSpec:
        if self.detector.performance:  # replicas share the stateDir: one SQLite file per partition
            if self.replicas > 1 and self.detector.params.get("join_on") == "header":
                raise ValueError("join_on: header needs one worker (replicas: 1): a header is not the record key")
            return self
        if self.replicas > 1 and self.source.transport != "kafka":
            raise ValueError(
                "replicas > 1 needs source.transport kafka (HTTP workers would each be a separate endpoint)"
            )
        if self.replicas > 1 and self.state_dir is not None:
            raise ValueError("replicas > 1 cannot share one stateDir (each online detector saves its own state)")
        return self

    @model_validator(mode="after")
    def _text(self) -> DetectorSpec:
        """Text features need a text detector and the reverse (docs/text-detectors.md)."""
        from infertap.detectors.frames import check_frame

        check_frame(self.detector.name, self.features, self.source.events)
        return self

    @field_validator("features")
    @classmethod
    def _unique(cls, features: list[FeatureSpec]) -> list[FeatureSpec]:
        seen = set()
        for feature in features:
            if feature.name in seen:
                raise ValueError(f"feature {feature.name!r} is listed twice")
            seen.add(feature.name)
        return features


class Detector(SpecModel):
    """One `kind: Detector` document."""

    api_version: Literal["infertap.dev/v1alpha1"]
    kind: Literal["Detector"]
    metadata: ObjectMeta
    spec: DetectorSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def inference_service(self) -> str:
        return self.spec.source.inference_service or ""

    def to_settings(self, base_dir: Path | None = None, **overrides: Any):
        """The worker's settings; relative paths resolved against `base_dir` (the YAML's folder):
        `PerformanceSettings` for a RealisedPerformance document, `WorkerSettings` otherwise."""
        from infertap.detectors.settings import WorkerSettings

        s = self.spec
        if s.detector.performance:
            return self._performance_settings(base_dir, overrides)
        window = s.window if (s.window.size or s.window.duration) else WindowSpec(size=1000, slide=s.window.slide)
        values: dict[str, Any] = {
            "name": self.name,
            "inference_service": self.inference_service,
            "bootstrap": s.source.bootstrap,
            "topic": s.source.topic,
            "events": s.source.events,
            "consumer_group": s.source.consumer_group,
            "transport": s.source.transport,
            "kafka_config": s.source.kafka_config,
            "features": [
                f.model_dump(include={"name", "type", "categories", "source", "messages"}) for f in s.features
            ],
            "input_name": s.input,
            "output_name": s.output,
            "detector": s.detector.name,
            "params": s.detector.params,
            "reference": _path(s.detector.reference, base_dir),
            "saved_detector": _path(s.detector.saved_detector, base_dir),
            "allow_pickle": s.detector.allow_pickle,
            "missing_values": s.detector.missing_values,
            "window": window.model_dump(include={"size", "duration", "slide"}),
            "output_topic": s.outputs.topic,
            "reply_url": s.outputs.reply_url,
            "dead_letter_topic": s.outputs.dead_letter_topic,
            "metrics_port": s.outputs.metrics_port,
            "state_dir": _path(s.state_dir, base_dir),
        }
        values.update(overrides)
        return WorkerSettings(**values)

    def _performance_settings(self, base_dir: Path | None, overrides: dict[str, Any]):
        from infertap.detectors.performance.settings import PerformanceSettings

        s = self.spec
        values: dict[str, Any] = {
            "name": self.name,
            "inference_service": self.inference_service,
            "detector": s.detector.name,
            "bootstrap": s.source.bootstrap,
            "topic": s.source.topic,
            "feedback_topic": s.source.feedback_topic,
            "consumer_group": s.source.consumer_group,
            "kafka_config": s.source.kafka_config,
            "output_name": s.output,
            "params": s.detector.params,
            "window": (s.window if (s.window.size or s.window.duration) else WindowSpec(size=1000)).model_dump(
                include={"size", "duration", "slide"}
            ),
            "output_topic": s.outputs.topic,
            "dead_letter_topic": s.outputs.dead_letter_topic,
            "metrics_port": s.outputs.metrics_port,
            "state_dir": _path(s.state_dir, base_dir),
        }
        values.update({k: v for k, v in overrides.items() if k in PerformanceSettings.model_fields})
        return PerformanceSettings(**values)


def _param_errors(exc: ValidationError) -> list[str]:
    """pydantic's errors of `PerformanceParams` as `field: sentence`."""
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {message}" if where else message)
    return out


def _path(value: str | None, base_dir: Path | None) -> Path | None:
    if value is None:
        return None
    return spec_path(value, base_dir)  # beside the YAML, then the current folder: as `up` and `render` look


def _register() -> None:
    from infertap.stack.specs.loader import register_kind

    register_kind("Detector", DETECTOR_API_VERSION)(Detector)


_register()
