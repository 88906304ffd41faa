"""Typed settings of event delivery: which sinks, the in-memory queue, batches, the disk spool, retries."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DeliverySettings(BaseModel):
    """What the delivery half of the logger needs; the sidecar's settings extend these."""

    model_config = ConfigDict(extra="forbid")

    log_url: list[str] = Field(
        default_factory=list,
        description="Sinks: kafka://host:port[,host:port]/topic[?opts], http(s)://..., file://path. Empty: no logging, proxy only.",
    )
    inference_service: str = ""
    component: str = "predictor"
    kafka_client: Literal["confluent", "kafka-python"] = Field(
        default="confluent", description="Kafka client library behind kafka:// sinks."
    )
    spool_dir: Path | None = Field(
        default=None,
        description="Disk spool for events a sink cannot take; default: a folder under the temp dir named after the service.",
    )
    queue_max_events: int = Field(default=10_000, ge=1)
    queue_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    spool_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    spool_full_policy: Literal["drop_newest", "drop_oldest"] = "drop_newest"
    spool_segment_bytes: int = Field(
        default=16 * 1024 * 1024, ge=4096, description="Spool segment file size; drop_oldest frees whole segments."
    )
    batch_max_events: int = Field(default=1000, ge=1, description="Events per batch sent to a sink.")
    batch_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1, description="Bytes per batch sent to a sink.")
    batch_linger_ms: float = Field(
        default=20.0,
        ge=0,
        le=60_000,
        description="How long a sink waits for a full batch before sending a partial one: bigger batches cost less CPU per event under light traffic; events reach the sink up to this much later. 0: send at once.",
    )
    sink_timeout_s: float = Field(
        default=60.0, gt=0, description="A batch not acknowledged in this time is spooled (slow sink)."
    )
    retry_backoff_s: float = Field(
        default=0.5, gt=0, description="Wait after a failed batch before trying the sink again; doubles per failure."
    )
    retry_backoff_max_s: float = Field(default=10.0, gt=0)
    http_timeout_s: float = Field(default=5.0, gt=0, description="Per request of http(s):// sinks.")
    http_retries: int = Field(
        default=3, ge=0, description="Retries per event of http(s):// sinks, with exponential backoff."
    )
