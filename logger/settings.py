"""Typed settings of event delivery: which sinks, the in-memory queue, batches, the disk spool, retries."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DeliverySettings(BaseSettings):
    """What the delivery half of the logger needs; the sidecar's settings extend these.

    Environment variables INFERTAP_LOGGER_<FIELD> set fields (flags and --help: infertap/flags.py).
    """

    model_config = SettingsConfigDict(env_prefix="INFERTAP_LOGGER_", extra="forbid")

    log_url: list[str] = Field(
        default_factory=list,
        description="Sinks: kafka://host:port[,host:port]/topic[?opts], http(s)://..., file://path. Empty: no logging, proxy only.",
    )
    inference_service: str = Field(default="", description="`inferenceservicename` extension of the events.")
    component: str = Field(
        default="predictor", description="`component` extension: predictor, transformer or explainer."
    )
    kafka_client: Literal["confluent", "kafka-python"] = Field(
        default="confluent", description="Kafka client library behind kafka:// sinks."
    )
    spool_dir: Path | None = Field(
        default=None,
        description="Disk spool for events a sink cannot take; default: a folder under the temp dir named after the service.",
    )
    queue_max_events: int = Field(
        default=10_000, ge=1, description="Events held in memory for the sinks; past it new events go to the spool."
    )
    queue_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1,
        description="Bytes held in memory for the sinks; past it new events are spooled.",
    )
    spool_max_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1, description="Most bytes on disk in the spool; then spool_full_policy."
    )
    spool_full_policy: Literal["drop_newest", "drop_oldest"] = Field(
        default="drop_newest", description="What a full spool drops (counted): the new events or its oldest segment."
    )
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
        default=60.0,
        gt=0,
        description="A batch not acknowledged in this time is spooled (slow sink).",
        json_schema_extra={"aliases": ["--sink-timeout"]},
    )
    retry_backoff_s: float = Field(
        default=0.5,
        gt=0,
        description="Wait after a failed batch before trying the sink again; doubles per failure.",
        json_schema_extra={"aliases": ["--retry-backoff"]},
    )
    retry_backoff_max_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait between tries of a failing sink.",
        json_schema_extra={"aliases": ["--retry-backoff-max"]},
    )
    http_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Per request of http(s):// sinks.",
        json_schema_extra={"aliases": ["--http-timeout"]},
    )
    http_retries: int = Field(
        default=3, ge=0, description="Retries per event of http(s):// sinks, with exponential backoff."
    )
    http_concurrency: int = Field(
        default=16,
        ge=1,
        description="Events in flight at once per http(s):// sink (KServe's agent: --workers, 5).",
        json_schema_extra={"aliases": ["--workers"]},
    )
    logger_ca_cert_file: str = Field(
        default="service-ca.crt",
        description="CA certificate that https:// sinks are verified with: a name under /etc/tls/logger (where KServe mounts the logger's caBundle ConfigMap) or an absolute path; when the file is missing, the system's CAs.",
    )
    logger_tls_skip_verify: bool = Field(
        default=False, description="Do not verify the certificate of https:// sinks (KServe's tlsSkipVerify)."
    )
    ce_header_encoding: Literal["raw", "percent"] = Field(
        default="raw",
        description="How http(s):// sinks write CloudEvent attribute headers: raw (as KServe's Go agent, sdk-go, sends them, JSON unescaped, which is what Go receivers read) or percent (the CloudEvents HTTP binding's percent-encoding, as the Python SDK writes it).",
    )
