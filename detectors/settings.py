"""Settings of one detector worker, typed; built from a `kind: Detector` document by `sidecar`.

The worker takes these as JSON (`python -m infertap.detectors SETTINGS_JSON`), so this package needs
nothing of `sidecar` (dependencies flow one way).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

EventMode = Literal["request", "response", "joined"]


class FeatureSettings(BaseModel):
    """One column of the frame a window decodes to."""

    name: str
    type: Literal["numeric", "categorical"] = "numeric"
    #: categorical values as sent (strings or numbers), in code order; None: values are codes
    categories: list[Any] | None = None
    #: where the column comes from: the request's inputs or the response's outputs (joined)
    source: Literal["input", "output"] = "input"


class WindowSettings(BaseModel):
    """Count windows (`size` events) or time windows (`duration` seconds); `slide` makes them sliding."""

    size: int | None = Field(default=None, ge=1)
    duration: float | None = Field(default=None, gt=0)
    slide: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> WindowSettings:
        if (self.size is None) == (self.duration is None):
            raise ValueError("give exactly one of size (events) or duration (seconds)")
        if self.slide is not None:
            limit = self.size if self.size is not None else self.duration
            if self.slide > limit:
                raise ValueError(f"slide ({self.slide}) must not exceed the window ({limit})")
            if self.size is not None and self.slide != int(self.slide):
                raise ValueError(f"slide of a count window is a whole number of events (got {self.slide})")
        return self

    @property
    def tumbling(self) -> bool:
        return self.slide is None


class WorkerSettings(BaseModel):
    """Everything one worker process needs."""

    name: str = Field(description="Detector document name; also the default consumer group.")
    inference_service: str = ""
    # source
    bootstrap: str = "127.0.0.1:9092"
    topic: str | None = None
    events: EventMode = "request"
    consumer_group: str | None = None
    transport: Literal["kafka", "http"] = "kafka"
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "librdkafka properties for the consumer and producers (TLS, SASL: security.protocol, sasl.*, ssl.*)."
        ),
    )
    # frame
    features: list[FeatureSettings] = Field(default_factory=list)
    input_name: str | None = Field(default=None, description="V2 input tensor to take (default: the only/first one).")
    output_name: str | None = Field(default=None, description="V2 output tensor to take in joined/response mode.")
    # detector
    detector: str
    params: dict[str, Any] = Field(default_factory=dict)
    reference: Path | None = None
    saved_detector: Path | None = None
    allow_pickle: bool = Field(
        default=False,
        description=(
            "Load a saved_detector folder holding pickles (dill/pickle/joblib/torch.save); they run code when loaded. "
            "The worker's own state_dir is trusted without it (the worker wrote it)."
        ),
    )
    # window
    window: WindowSettings = Field(default_factory=lambda: WindowSettings(size=1000))
    # outputs
    output_topic: str | None = None
    reply_url: str | None = None
    dead_letter_topic: str | None = None
    host: str = "127.0.0.1"
    metrics_port: int = 9102
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1, description="HTTP ingress: larger bodies get 413.")
    auth_token: str | None = Field(
        default=None, description="HTTP ingress: bearer token every POST must carry; default $INFERTAP_AUTH_TOKEN."
    )
    # delivery
    state_dir: Path | None = Field(default=None, description="Online detectors save their state here at each commit.")
    join_timeout: float = Field(default=60.0, gt=0, description="Seconds a request waits for its response (joined).")
    poll_batch: int = Field(default=5000, ge=1)
    source_uri: str = Field(default="", description="`source` of detection events; default infertap://detector/NAME.")

    @model_validator(mode="after")
    def _fill(self) -> WorkerSettings:
        base = self.inference_service or self.name
        if self.topic is None and self.transport == "kafka":
            if not self.inference_service:
                raise ValueError("name an inference_service or a topic to read")
            self.topic = f"{self.inference_service}-events"
        self.output_topic = self.output_topic or f"{base}-detections"
        self.dead_letter_topic = self.dead_letter_topic or f"{base}-deadletter"
        self.consumer_group = self.consumer_group or f"infertap-detector-{self.name}"
        self.source_uri = self.source_uri or f"infertap://detector/{self.name}"
        if (self.reference is None) == (self.saved_detector is None):
            raise ValueError("give exactly one of reference (data to fit on) or saved_detector (a folder)")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]
