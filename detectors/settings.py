"""Settings of one detector worker, typed; built from a `kind: Detector` document by `sidecar`.

The worker takes these as JSON (`python -m infertap.detectors SETTINGS_JSON`), so this package needs
nothing of `sidecar` (dependencies flow one way).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infertap.detectors.frames import frame_of
from infertap.stream.topics import topics

EventMode = Literal["request", "response", "joined"]
MissingValues = Literal["drop", "deadletter", "pass"]
TextMessages = Literal["last_user", "user", "system", "conversation"]


class FeatureSettings(BaseModel):
    """One column of the frame a window decodes to."""

    name: str = Field(description="Column name.")
    type: Literal["numeric", "categorical", "text"] = Field(
        default="numeric", description="numeric, categorical, or text (the text detectors: docs/text-detectors.md)."
    )
    categories: list[Any] | None = Field(
        default=None,
        description="Categorical values as sent (strings or numbers), in code order; None: values are codes.",
    )
    source: Literal["input", "output"] = Field(
        default="input",
        description="Where the column comes from: the request's inputs or the response's outputs (joined).",
    )
    messages: TextMessages = Field(
        default="last_user",
        description=(
            "Text columns of OpenAI chat requests: which messages make the text (last_user, user: every user "
            "message, system: system and developer messages, conversation: every message in order)."
        ),
    )


class WindowSettings(BaseModel):
    """Count windows (`size` events) or time windows (`duration` seconds); `slide` makes them sliding."""

    size: int | None = Field(default=None, ge=1, description="Count window: events per window.")
    duration: float | None = Field(default=None, gt=0, description="Time window: seconds per window.")
    slide: float | None = Field(
        default=None, gt=0, description="Sliding windows: events (count) or seconds (time) between windows."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> WindowSettings:
        if (self.size is None) == (self.duration is None):
            raise ValueError("give exactly one of size (events) or duration (seconds)")
        if self.slide is not None:
            limit = self.size if self.size is not None else self.duration
            assert limit is not None  # exactly one of them is set (checked above)
            if self.slide > limit:
                raise ValueError(f"slide ({self.slide}) must not exceed the window ({limit})")
            if self.size is not None and self.slide != int(self.slide):
                raise ValueError(f"slide of a count window is a whole number of events (got {self.slide})")
        return self

    @property
    def tumbling(self) -> bool:
        return self.slide is None


class WorkerSettings(BaseSettings):
    """Everything one worker process needs.

    Environment variables INFERTAP_DETECTOR_<FIELD> set fields (flags and --help: infertap/flags.py).
    """

    model_config = SettingsConfigDict(env_prefix="INFERTAP_DETECTOR_", extra="ignore")

    name: str = Field(description="Detector document name; also the default consumer group.")
    inference_service: str = Field(
        default="", description="The InferenceService watched: topic <isvc>-events, outputs <isvc>-detections."
    )
    # source
    bootstrap: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers (host:port or kafka://host:port)."
    )
    topic: str | None = Field(default=None, description="Topic to read; default <inference_service>-events.")
    events: EventMode = Field(
        default="request", description="Which events make the frame: requests, responses, or both joined by id."
    )
    consumer_group: str | None = Field(
        default=None,
        description="Kafka consumer group; default infertap-detector-<name>.",
        json_schema_extra={"aliases": ["--group"]},
    )
    transport: Literal["kafka", "http"] = Field(
        default="kafka", description="Where events come from: a Kafka topic, or POSTs to the HTTP ingress."
    )
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "librdkafka properties for the consumer and producers (TLS, SASL: security.protocol, sasl.*, ssl.*)."
        ),
        json_schema_extra={"aliases": ["-X"]},
    )
    # frame
    features: list[FeatureSettings] = Field(
        default_factory=list, description='Columns of the frame, JSON: [{"name": "x", "type": "numeric"}, ...].'
    )
    input_name: str | None = Field(default=None, description="V2 input tensor to take (default: the only/first one).")
    output_name: str | None = Field(default=None, description="V2 output tensor to take in joined/response mode.")
    # detector
    detector: str = Field(description="Detector backend name (see docs/detector-backends.md).")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend parameters, KEY=VALUE with a JSON value (p_val=0.01).",
        json_schema_extra={"aliases": ["--param"]},
    )
    missing_values: MissingValues = Field(
        default="drop",
        description=(
            "Rows holding a null, NaN or infinity: drop them (counted in the detection's `excluded` and a metric), "
            "deadletter their events (reason missing_value), or pass them to a backend that declares it takes "
            "missing values (accepts_missing)."
        ),
    )
    reference: Path | None = Field(
        default=None, description="Reference data to fit on (csv, parquet, npy; text detectors: also txt, jsonl)."
    )
    saved_detector: Path | None = Field(default=None, description="A saved detector folder to load instead.")
    allow_pickle: bool = Field(
        default=False,
        description=(
            "Load a saved_detector folder holding pickles (dill/pickle/joblib/torch.save); they run code when loaded. "
            "The worker's own state_dir is trusted without it (the worker wrote it)."
        ),
    )
    # window
    window: WindowSettings = Field(
        default_factory=lambda: WindowSettings(size=1000),
        description='Window, JSON: {"size": N} (events) or {"duration": S} (seconds), "slide" for sliding.',
    )
    # outputs
    output_topic: str | None = Field(default=None, description="Topic of detections; default <isvc>-detections.")
    reply_url: str | None = Field(default=None, description="Also POST each detection here.")
    dead_letter_topic: str | None = Field(
        default=None, description="Topic of undecodable events; default <isvc>-deadletter."
    )
    host: str = Field(default="127.0.0.1", description="Interface of /metrics and the HTTP ingress.")
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="Port of /metrics (and the HTTP ingress).")
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1, description="HTTP ingress: larger bodies get 413.")
    auth_token: str | None = Field(
        default=None, description="HTTP ingress: bearer token every POST must carry; default $INFERTAP_AUTH_TOKEN."
    )
    # delivery
    state_dir: Path | None = Field(default=None, description="Online detectors save their state here at each commit.")
    join_timeout: float = Field(default=60.0, gt=0, description="Seconds a request waits for its response (joined).")
    poll_batch: int = Field(default=5000, ge=1, description="Most records read from Kafka per poll.")
    source_uri: str = Field(default="", description="`source` of detection events; default infertap://detector/NAME.")

    @field_validator("bootstrap", mode="before")
    @classmethod
    def _bootstrap(cls, value):
        if isinstance(value, str) and value.startswith("kafka://"):  # a logger URL's servers
            return value.removeprefix("kafka://").split("/")[0]
        return value

    @model_validator(mode="after")
    def _fill(self) -> WorkerSettings:
        base = self.inference_service or self.name
        if self.topic is None and self.transport == "kafka":
            if not self.inference_service:
                raise ValueError("name an inference_service or a topic to read")
            self.topic = topics(self.inference_service).events
        self.output_topic = self.output_topic or topics(base).detections
        self.dead_letter_topic = self.dead_letter_topic or topics(base).deadletter
        self.consumer_group = self.consumer_group or f"infertap-detector-{self.name}"
        self.source_uri = self.source_uri or f"infertap://detector/{self.name}"
        # DataQuality may run on a schema params.schema declares for every feature (checked when it is built)
        declared = self.detector == "DataQuality" and self.reference is None and self.saved_detector is None
        if not declared and (self.reference is None) == (self.saved_detector is None):
            raise ValueError("give exactly one of reference (data to fit on) or saved_detector (a folder)")
        frame_of(self)  # text features need a text detector, and the reverse (a sentence, not a late traceback)
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]
