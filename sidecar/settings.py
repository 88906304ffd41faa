"""Typed settings of the logger sidecar; field names follow KServe's agent flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from infertap.logger.settings import DeliverySettings

LogMode = Literal["all", "request", "response"]


class LoggerSettings(DeliverySettings):
    """What `infertap logger` (flags named like KServe's agent) and `infertap up` configure."""

    host: str = "127.0.0.1"
    port: int = Field(default=9081, ge=0, le=65535, description="Where the sidecar listens (KServe agent: 9081).")
    component_host: str = "127.0.0.1"
    component_port: int = Field(default=8080, ge=1, le=65535, description="The model server behind the sidecar.")
    explainer_url: str | None = Field(
        default=None, description="Where `:explain` paths are routed, as KServe's ingress does."
    )
    log_mode: LogMode = "all"
    source_uri: str = "http://localhost:9081/"
    namespace: str = "default"
    endpoint: str = ""
    metadata_headers: list[str] = Field(
        default_factory=list, description="Request headers copied into the `metadata` extension (case-insensitive)."
    )
    metadata_annotations: dict[str, str] = Field(
        default_factory=dict, description="Copied into the `annotations` extension."
    )
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1, description="Larger bodies get 413.")
    ingest_auth_token: str | None = Field(
        default=None,
        description="Bearer token a CloudEvents ingest (`POST /` with a CloudEvent) must carry, else 401; default $INFERTAP_AUTH_TOKEN, none: no auth. Proxied inference traffic is not checked (the model server's business).",
    )
    upstream_timeout_s: float = Field(default=600.0, gt=0)
    upstream_keepalive_s: float = Field(
        default=4.0,
        gt=0,
        description="Pooled connections to the model server idle longer than this are closed, not reused: keep it below the model server's keep-alive timeout (uvicorn: 5 s), so a request is never written to a connection the server is closing.",
    )
    max_event_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=0,
        description="Most bytes of a (streamed) response body kept for its event; beyond, the event says `bodytruncated`.",
    )
    metrics_path: str = Field(
        default="/infertap/metrics",
        description="Where the sidecar serves its own Prometheus metrics; every other path, /metrics included, goes to the model server.",
    )
