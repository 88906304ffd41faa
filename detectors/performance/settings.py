"""Settings of the realised-performance worker, typed: the one place each of them is declared.

`PerformanceParams` is what a `kind: Detector` document's `detector.params` holds for
`detector: {name: RealisedPerformance}` (the spec model validates the document's params with
it); `PerformanceSettings` is everything one worker process needs, built from the document
by the spec model (`Detector.to_settings`) or from flags and `$INFERTAP_PERFORMANCE_*`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infertap.detectors.settings import WindowSettings
from infertap.stream.topics import topics

#: `detector.name` of the documents this worker runs (not a `DetectorBackend`: it judges no frame)
PERFORMANCE_DETECTORS = ("RealisedPerformance",)
JoinOn = Literal["event_id", "header"]


class PerformanceParams(BaseModel):
    """`detector.params` of a RealisedPerformance document."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["classification", "regression"] = Field(
        description="classification (accuracy, precision, recall, F1, ROC AUC, confusion matrix) or regression "
        "(MAE, RMSE, MAPE, R²)."
    )
    classes: list[str] | None = Field(
        default=None,
        description="The classes the model predicts, in the order of its probability columns (a model answering "
        "0, 1, 2 stands for them by position when no class is itself a number). Known classes make a label for "
        "any other class bad feedback (400, or a dead letter) and bound the metrics' `class` label.",
    )
    join_on: JoinOn = Field(
        default="event_id",
        description="What feedback ids name: event_id (the logged CloudEvent id; under `infertap up` the sidecar "
        "takes it from the request's `id_header` when the request has one), or header (the `id_header` value "
        "copied into the events' `metadata` extension by the logger's metadataHeaders, as on KServe; one worker "
        "reads every partition then: the header is not the record key).",
    )
    id_header: str = Field(
        default="X-Request-Id",
        min_length=1,
        description="The request header that carries the client's id (KServe #5591's X-Request-Id).",
    )
    probability_output: str | None = Field(
        default=None,
        description="V2 output tensor of the class probabilities, when it is not the prediction tensor "
        "(spec.output, default the first); a 2-D prediction tensor (or V1 rows of numbers) is read as "
        "probabilities, the predicted class their argmax.",
    )
    max_pending: int = Field(
        default=100_000,
        ge=1,
        description="Predictions awaiting their label, per partition; past it the oldest fall out (counted: "
        "infertap_performance_evicted_total{kind=prediction,reason=count}).",
    )
    max_pending_labels: int = Field(
        default=100_000,
        ge=1,
        description="Labels awaiting their prediction (labels that came first, or for an id never seen), per "
        "partition; past it the oldest fall out (counted, reason count).",
    )
    max_age_s: float = Field(
        default=86_400.0,
        gt=0,
        description="Predictions and labels older than this (event time, against the newest event time seen on "
        "the partition) fall out unjoined (counted, reason age). Also how long joined ids are remembered to "
        "recognise a duplicate label.",
    )

    @field_validator("classes", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        if isinstance(value, list):  # YAML integers and booleans are class names as text
            return [str(int(v)) if isinstance(v, bool) else str(v) for v in value]
        return value

    @field_validator("classes")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if len(value) < 2:
                raise ValueError("a classifier has at least two classes")
            if len(set(value)) != len(value):
                raise ValueError("classes are listed once each")
        return value

    @model_validator(mode="after")
    def _regression(self) -> PerformanceParams:
        if self.task == "regression" and (self.classes or self.probability_output):
            raise ValueError("classes and probability_output apply to classification")
        return self


class PerformanceSettings(BaseSettings):
    """Everything one performance worker needs.

    Environment variables INFERTAP_PERFORMANCE_<FIELD> set fields (flags and --help: infertap/flags.py).
    """

    model_config = SettingsConfigDict(env_prefix="INFERTAP_PERFORMANCE_", extra="ignore")

    name: str = Field(description="Detector document name; also the default consumer group.")
    inference_service: str = Field(
        default="",
        description="The InferenceService: reads <isvc>-events and <isvc>-feedback, writes <isvc>-detections.",
    )
    detector: Literal["RealisedPerformance"] = Field(default="RealisedPerformance", description="The worker's kind.")
    bootstrap: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers (host:port or kafka://host:port)."
    )
    topic: str | None = Field(
        default=None, description="Topic of the logged events; default <inference_service>-events."
    )
    feedback_topic: str | None = Field(
        default=None, description="Topic of the feedback; default <inference_service>-feedback."
    )
    consumer_group: str | None = Field(
        default=None,
        description="Kafka consumer group; default infertap-performance-<name>.",
        json_schema_extra={"aliases": ["--group"]},
    )
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka properties for the consumer and producers (TLS, SASL: security.protocol, sasl.*, ssl.*).",
        json_schema_extra={"aliases": ["-X"]},
    )
    output_name: str | None = Field(
        default=None, description="V2 output tensor of the predictions (default: the first)."
    )
    params: PerformanceParams = Field(description="The document's detector.params, JSON.")
    window: WindowSettings = Field(
        default_factory=lambda: WindowSettings(size=1000),
        description='Labelled predictions per window, JSON: {"size": N} (rows) or {"duration": S} (seconds).',
    )
    output_topic: str | None = Field(
        default=None, description="Topic of the performance events; default <isvc>-detections."
    )
    dead_letter_topic: str | None = Field(
        default=None, description="Topic of unusable records; default <isvc>-deadletter."
    )
    host: str = Field(default="127.0.0.1", description="Interface of /metrics.")
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="Port of /metrics.")
    state_dir: Path | None = Field(
        default=None,
        description="Where the join state lives, one SQLite file per partition (workers of one group that "
        "share it hand a partition's state over with the partition); default: a folder per user and group "
        "under the temp dir.",
    )
    state_synchronous: Literal["normal", "full"] = Field(
        default="normal",
        description="SQLite's synchronous mode of the state: normal survives a killed worker (what a commit "
        "waits for); full also a power loss, at an fsync per poll.",
    )
    poll_batch: int = Field(default=5000, ge=1, description="Most records read from Kafka per poll.")
    source_uri: str = Field(default="", description="`source` of the events written; default infertap://detector/NAME.")

    @field_validator("bootstrap", mode="before")
    @classmethod
    def _bootstrap(cls, value):
        if isinstance(value, str) and value.startswith("kafka://"):
            return value.removeprefix("kafka://").split("/")[0]
        return value

    @field_validator("window")
    @classmethod
    def _tumbling(cls, value: WindowSettings) -> WindowSettings:
        if value.slide is not None:
            raise ValueError("performance windows are tumbling: leave out slide")
        return value

    @model_validator(mode="after")
    def _fill(self) -> PerformanceSettings:
        if not self.inference_service and (self.topic is None or self.feedback_topic is None):
            raise ValueError("name an inference_service, or both topic and feedback_topic")
        names = topics(self.inference_service or self.name)
        self.topic = self.topic or names.events
        self.feedback_topic = self.feedback_topic or names.feedback
        self.output_topic = self.output_topic or names.detections
        self.dead_letter_topic = self.dead_letter_topic or names.deadletter
        self.consumer_group = self.consumer_group or f"infertap-performance-{self.name}"
        self.source_uri = self.source_uri or f"infertap://detector/{self.name}"
        return self
