"""Typed settings of the logger sidecar; field names follow KServe's agent flags."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LogMode = Literal["all", "request", "response"]


class LoggerSettings(BaseModel):
    """What `infertap logger` (flags named like KServe's agent) and `infertap up` configure."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=9081, ge=0, le=65535, description="Where the sidecar listens (KServe agent: 9081).")
    component_host: str = "127.0.0.1"
    component_port: int = Field(default=8080, ge=1, le=65535, description="The model server behind the sidecar.")
    explainer_url: str | None = Field(default=None, description="Where `:explain` paths are routed, as KServe's ingress does.")
    log_url: list[str] = Field(default_factory=list, description="Sinks: kafka://host:port[,host:port]/topic[?opts], http(s)://..., file://path. Empty: no logging, proxy only.")
    log_mode: LogMode = "all"
    source_uri: str = "http://localhost:9081/"
    inference_service: str = ""
    namespace: str = "default"
    component: str = "predictor"
    endpoint: str = ""
    metadata_headers: list[str] = Field(default_factory=list, description="Request headers copied into the `metadata` extension (case-insensitive).")
    metadata_annotations: dict[str, str] = Field(default_factory=dict, description="Copied into the `annotations` extension.")
    kafka_client: Literal["confluent", "kafka-python"] = Field(default="confluent", description="Kafka client library behind kafka:// sinks.")
    spool_dir: Path | None = Field(default=None, description="Disk spool for events a sink cannot take; default: a folder under the temp dir named after the service.")
    queue_max_events: int = Field(default=10_000, ge=1)
    queue_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    spool_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    spool_full_policy: Literal["drop_newest", "drop_oldest"] = "drop_newest"
    spool_segment_bytes: int = Field(default=16 * 1024 * 1024, ge=4096, description="Spool segment file size; drop_oldest frees whole segments.")
    batch_max_events: int = Field(default=1000, ge=1, description="Events per batch sent to a sink.")
    batch_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1, description="Bytes per batch sent to a sink.")
    batch_linger_ms: float = Field(default=20.0, ge=0, le=60_000, description="How long a sink waits for a full batch before sending a partial one: bigger batches cost less CPU per event under light traffic; events reach the sink up to this much later. 0: send at once.")
    sink_timeout_s: float = Field(default=60.0, gt=0, description="A batch not acknowledged in this time is spooled (slow sink).")
    retry_backoff_s: float = Field(default=0.5, gt=0, description="Wait after a failed batch before trying the sink again; doubles per failure.")
    retry_backoff_max_s: float = Field(default=10.0, gt=0)
    http_timeout_s: float = Field(default=5.0, gt=0, description="Per request of http(s):// sinks.")
    http_retries: int = Field(default=3, ge=0, description="Retries per event of http(s):// sinks, with exponential backoff.")
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1, description="Larger bodies get 413.")
    ingest_auth_token: str | None = Field(default=None, description="Bearer token a CloudEvents ingest (`POST /` with a CloudEvent) must carry, else 401; default $INFERTAP_AUTH_TOKEN, none: no auth. Proxied inference traffic is not checked (the model server's business).")
    upstream_timeout_s: float = Field(default=600.0, gt=0)
    upstream_keepalive_s: float = Field(default=4.0, gt=0, description="Pooled connections to the model server idle longer than this are closed, not reused: keep it below the model server's keep-alive timeout (uvicorn: 5 s), so a request is never written to a connection the server is closing.")
    max_event_body_bytes: int = Field(default=16 * 1024 * 1024, ge=0, description="Most bytes of a (streamed) response body kept for its event; beyond, the event says `bodytruncated`.")
    metrics_path: str = Field(default="/infertap/metrics", description="Where the sidecar serves its own Prometheus metrics; every other path, /metrics included, goes to the model server.")
