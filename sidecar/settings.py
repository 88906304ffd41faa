"""Typed settings of the logger sidecar; field names follow KServe's agent flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from infertap.logger.settings import DeliverySettings

LogMode = Literal["all", "request", "response"]
RedactMode = Literal["openai", "all", "none"]


class LoggerSettings(DeliverySettings):
    """What `infertap logger` (flags named like KServe's agent) and `infertap up` configure.

    Environment variables INFERTAP_LOGGER_<FIELD> (model_config from DeliverySettings; flags: infertap/flags.py).
    """

    host: str = Field(default="127.0.0.1", description="Interface to listen on (0.0.0.0: all).")
    port: int = Field(default=9081, ge=0, le=65535, description="Where the sidecar listens (KServe agent: 9081).")
    component_host: str = Field(default="127.0.0.1", description="Host of the model server behind the sidecar.")
    component_port: int = Field(default=8080, ge=1, le=65535, description="The model server behind the sidecar.")
    explainer_url: str | None = Field(
        default=None,
        description="Where explain calls are routed (V1 `:explain`, as KServe's ingress does, and V2 `/v2/models/{name}-explainer/infer`).",
    )
    log_mode: LogMode = Field(default="all", description="Which events are logged: all, request or response.")
    request_id_header: str = Field(
        default="",
        description="A request without `ce-id` takes its event id from this header when present (`x-request-id`: KServe #5591), else a new UUID; empty: always a new UUID, as KServe's agent.",
    )
    # ground truth (`POST /v1/models/{name}/feedback`; infertap.logger.feedback, docs/ground-truth.md)
    feedback_url: list[str] = Field(
        default_factory=list,
        description="Sinks of the feedback POSTed to /v1/models/{name}/feedback; default: each kafka:// --log-url with the topic <inference-service>-feedback.",
    )
    feedback_task: Literal["any", "classification", "regression"] = Field(
        default="any",
        description="What a feedback target must be: any class or number, a class (of --feedback-classes when given), or a finite number; others are answered 400.",
    )
    feedback_classes: list[str] = Field(
        default_factory=list,
        description="The classes the model predicts: feedback naming another class is answered 400 (with --feedback-task classification).",
        json_schema_extra={"comma_list": True},
    )
    feedback_max_items: int = Field(
        default=10_000, ge=1, description="Most feedback items in one POST; more is answered 400."
    )
    source_uri: str = Field(default="http://localhost:9081/", description="CloudEvent `source` of the events.")
    namespace: str = Field(default="default", description="`namespace` extension of the events.")
    endpoint: str = Field(default="", description="`endpoint` extension (KServe: default or canary).")
    metadata_headers: list[str] = Field(
        default_factory=list,
        description="Request headers copied into the `metadata` extension (case-insensitive).",
        json_schema_extra={"comma_list": True},
    )
    metadata_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Copied into the `annotations` extension.",
        json_schema_extra={"comma_list": True},
    )
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1, description="Larger bodies get 413.")
    # caps on a request's head, checked as it arrives (`infertap.sidecar.front`): past one, the
    # client gets 414/431 and the connection closes, before anything reaches the model server
    max_request_line_bytes: int = Field(
        default=16 * 1024,
        ge=64,
        le=65535,
        description="Longest request line (method, target, version); longer gets 414 (nginx: 8 KiB, h11: 16 KiB).",
    )
    max_header_bytes: int = Field(
        default=16 * 1024, ge=64, description="Longest single header field (name and value); longer gets 431."
    )
    max_head_bytes: int = Field(
        default=64 * 1024,
        ge=256,
        description="Most bytes of a request's head (request line and all header fields); more gets 431.",
    )
    max_connections: int = Field(
        default=4096,
        ge=1,
        description="Client connections served at once; past it a new one is answered 503 and closed (counted in infertap_proxy_refused_total).",
    )
    ingest_auth_token: str | None = Field(
        default=None,
        description="Bearer token a CloudEvents ingest (`POST /` with a CloudEvent) must carry, else 401; default $INFERTAP_AUTH_TOKEN, none: no auth. Proxied inference traffic is not checked (the model server's business).",
        json_schema_extra={"aliases": ["--auth-token"]},
    )
    upstream_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Seconds the model server may take to answer a proxied request; then 504.",
        json_schema_extra={"aliases": ["--upstream-timeout"]},
    )
    upstream_keepalive_s: float = Field(
        default=4.0,
        gt=0,
        description="Pooled connections to the model server idle longer than this are closed, not reused: keep it below the model server's keep-alive timeout (uvicorn: 5 s), so a request is never written to a connection the server is closing.",
        json_schema_extra={"aliases": ["--upstream-keepalive"]},
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
    # LLM traffic, privacy, sampling (docs/llm-capture.md; infertap.sidecar.llm_tap)
    log_sample_rate: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of exchanges logged, chosen by event id (request and response together); failures (status >= 400) are always logged. Annotation infertap.io/log-sample-rate.",
    )
    redact: RedactMode = Field(
        default="openai",
        description="PII redaction of logged bodies before they are queued: openai (the OpenAI endpoints only), all, none. Annotation infertap.io/redact: true (all) / false (none).",
    )
    redact_patterns: list[str] = Field(
        default_factory=list,
        description="Extra regular expressions redacted from logged bodies (rule `custom`), repeatable.",
    )
    keep_raw_sse: bool = Field(
        default=False,
        description="Also keep a reassembled stream's raw SSE, as the field x_infertap_sse of the logged object.",
    )
    llm_prices: dict[str, str] = Field(
        default_factory=dict,
        description="Price table MODEL=INPUT:OUTPUT in US dollars per 1M tokens, for infertap_gen_ai_client_cost_usd_total.",
        json_schema_extra={"comma_list": True},
    )
    # OpenTelemetry export of the OpenAI calls (docs/llm-capture.md, "OTel export"; infertap.sidecar.llm_otel)
    otel_endpoint: str = Field(
        default="",
        description="OTLP/HTTP traces URL (http://collector:4318/v1/traces) that gets one OpenTelemetry span per OpenAI call, gen_ai.* attributes; `env`: the URL of $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else $OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces; empty: no export. Auth headers only from $OTEL_EXPORTER_OTLP_HEADERS, never a flag. Needs the extra infertap[otel].",
    )
    otel_capture_content: bool = Field(
        default=False,
        description="Also put the messages on the spans (gen_ai.input.messages, gen_ai.output.messages), redacted as the events are (--redact).",
    )
    otel_service_name: str = Field(
        default="",
        description="service.name of the spans; empty: $OTEL_SERVICE_NAME, else the inference service's name, else infertap-logger.",
    )
    otel_provider_name: str = Field(
        default="openai",
        description="gen_ai.provider.name of the spans: the API flavour (openai), or the name of what serves it (vllm, ...).",
    )
