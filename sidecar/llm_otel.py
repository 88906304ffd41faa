"""OpenTelemetry export of the OpenAI calls through the sidecar: one span per call, beside the
CloudEvents, over OTLP/HTTP, so Langfuse, Phoenix, Tempo (any OTLP/HTTP receiver) show them.
See docs/llm-capture.md, "OTel export".

- **What.** One span per captured OpenAI exchange (`openai_capture.Capture`), named and
  attributed as the OpenTelemetry GenAI semantic conventions' inference (and embeddings)
  client span: `{gen_ai.operation.name} {gen_ai.request.model}`, kind CLIENT (the model server
  is another process, reached over HTTP), `gen_ai.*` request and response attributes,
  `server.address`/`server.port` of the model server, `error.type` on failures, and
  `gen_ai.response.time_to_first_chunk` on streams. Message content
  (`gen_ai.input.messages`, `gen_ai.output.messages`, JSON strings) only with
  `otel_capture_content`, redacted by the rules of the events (`--redact`).
- **When.** `LLMTap.response_event` calls `LLMSpans.export` once the exchange is finished
  (also for calls whose events are sampled out or not logged: spans follow the trace's own
  sampling, `$OTEL_TRACES_SAMPLER`, parent-based by default). The span starts at the
  request's arrival at the sidecar and ends at the end of the exchange there; a request
  carrying a W3C `traceparent` gets its span as that span's child.
- **Never in the way.** Building a span is a few dictionary steps on the event loop; the
  SDK's `BatchSpanProcessor` queues it (bounded, `$OTEL_BSP_MAX_QUEUE_SIZE`; a full queue
  drops) and exports from its own thread. A receiver that is down or slow costs the tap
  nothing; `shutdown()` (run in a thread when the sidecar stops) flushes what is queued.
- **Secrets.** Headers for the receiver (Langfuse's basic auth) come from the standard
  `$OTEL_EXPORTER_OTLP_HEADERS` (or `$OTEL_EXPORTER_OTLP_TRACES_HEADERS`) only, read by
  the SDK: never a flag, never logged.

The SDK is the optional extra `infertap[otel]`: this module imports it only when export is
configured, and without it `otel_endpoint` is a startup error naming the extra.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from infertap.logger.sinks.base import SinkConfigError, shown_url
from infertap.sidecar.redact import Redactor

log = logging.getLogger("infertap.logger.otel")

EXTRA = "otel"
ENV_ENDPOINT = "env"  # the `otel_endpoint` value that takes the URL from the standard variables
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
BASE_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"
DEFAULT_SERVICE_NAME = "infertap-logger"
TRACE_HEADERS = (b"traceparent", b"tracestate")

#: request field -> (attribute, type): the sampling and length settings of a call
_REQUEST_NUMBERS: tuple[tuple[str, str, type], ...] = (
    ("temperature", "gen_ai.request.temperature", float),
    ("top_p", "gen_ai.request.top_p", float),
    ("top_k", "gen_ai.request.top_k", float),
    ("frequency_penalty", "gen_ai.request.frequency_penalty", float),
    ("presence_penalty", "gen_ai.request.presence_penalty", float),
    ("seed", "gen_ai.request.seed", int),
)


class OTelConfigError(SinkConfigError):
    """The span export cannot be set up (no SDK, no URL); the message is one sentence.

    A `SinkConfigError`: the sidecar's start turns it into that sentence and exit code 2."""


def resolve_endpoint(setting: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The OTLP/HTTP traces URL of `otel_endpoint` (None: no export).

    `env` opts in to the standard variables: `$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is,
    else `$OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces` (the SDK's own rule). They are not read
    otherwise: a pod's variables meant for another process's instrumentation do not turn the
    sidecar's export on."""
    value = setting.strip()
    if not value:
        return None
    if value.lower() == ENV_ENDPOINT:
        url = environ.get(TRACES_ENDPOINT_ENV, "").strip()
        if not url:
            base = environ.get(BASE_ENDPOINT_ENV, "").strip()
            url = f"{base.removesuffix('/')}/v1/traces" if base else ""
        if not url:
            raise OTelConfigError(
                f"--otel-endpoint env: neither ${TRACES_ENDPOINT_ENV} nor ${BASE_ENDPOINT_ENV} is set"
            )
    else:
        url = value
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise OTelConfigError(
            f"--otel-endpoint: expected an http:// or https:// OTLP/HTTP traces URL (got {shown_url(url)!r})"
        )
    return url


def trace_carrier(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str] | None:
    """The request's W3C trace context headers (names lower case, as the proxy gives them)."""
    carrier = None
    for name, value in headers:
        if name in TRACE_HEADERS:
            if carrier is None:
                carrier = {}
            carrier[name.decode("latin-1")] = value.decode("latin-1")
    return carrier if carrier and "traceparent" in carrier else None


# --- attributes ----------------------------------------------------------------------------


def span_name(operation: str, model: str | None) -> str:
    """`{gen_ai.operation.name} {gen_ai.request.model}` (the operation alone without a model)."""
    return f"{operation} {model}" if model else operation


def _number(value: Any, kind: type) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind is int:
        return value if isinstance(value, int) else None
    return float(value)


def request_attributes(
    operation: str, request: Mapping[str, Any], provider: str, address: str, port: int
) -> dict[str, Any]:
    """The attributes known when the request arrived (those sampling decisions may use first)."""
    attrs: dict[str, Any] = {"gen_ai.operation.name": operation, "gen_ai.provider.name": provider}
    model = request.get("model")
    if isinstance(model, str) and model:
        attrs["gen_ai.request.model"] = model
    attrs["server.address"] = address
    attrs["server.port"] = port
    if operation == "chat":
        attrs["openai.api.type"] = "chat_completions"
    if operation == "embeddings":
        dims = _number(request.get("dimensions"), int)
        if dims is not None:
            attrs["gen_ai.embeddings.dimension.count"] = dims
        fmt = request.get("encoding_format")
        if isinstance(fmt, str):
            attrs["gen_ai.request.encoding_formats"] = [fmt]
        return attrs
    if request.get("stream") is True:
        attrs["gen_ai.request.stream"] = True
    max_tokens = _number(request.get("max_completion_tokens", request.get("max_tokens")), int)
    if max_tokens is not None:
        attrs["gen_ai.request.max_tokens"] = max_tokens
    for key, name, kind in _REQUEST_NUMBERS:
        value = _number(request.get(key), kind)
        if value is not None:
            attrs[name] = value
    n = _number(request.get("n"), int)
    if n is not None and n != 1:
        attrs["gen_ai.request.choice.count"] = n
    stop = request.get("stop")
    if isinstance(stop, str):
        attrs["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop and all(isinstance(s, str) for s in stop):
        attrs["gen_ai.request.stop_sequences"] = list(stop)
    fmt = request.get("response_format")
    output = fmt.get("type") if isinstance(fmt, dict) else None
    if output in ("json_object", "json_schema"):
        attrs["gen_ai.output.type"] = "json"
    elif output == "text":
        attrs["gen_ai.output.type"] = "text"
    tier = request.get("service_tier")
    if isinstance(tier, str) and tier != "auto":
        attrs["openai.request.service_tier"] = tier
    return attrs


def _usage_details(usage: Any) -> dict[str, Any]:
    """Cached input tokens and reasoning output tokens of an OpenAI `usage`, when it says."""
    attrs: dict[str, Any] = {}
    if not isinstance(usage, dict):
        return attrs
    prompt = usage.get("prompt_tokens_details")
    cached = _number(prompt.get("cached_tokens"), int) if isinstance(prompt, dict) else None
    if cached is not None:
        attrs["gen_ai.usage.cache_read.input_tokens"] = cached
    completion = usage.get("completion_tokens_details")
    reasoning = _number(completion.get("reasoning_tokens"), int) if isinstance(completion, dict) else None
    if reasoning is not None:
        attrs["gen_ai.usage.reasoning.output_tokens"] = reasoning
    return attrs


def error_type(status: int, outcome: Any, answer: Mapping[str, Any] | None) -> str | None:
    """`error.type` of a call: the HTTP status of a failed answer (`"500"`), the reason a stream
    stopped early (`client_disconnected`, `upstream_error`), the `type` (or `code`) of an error
    event inside a stream, `client_disconnected` when the client left before any answer."""
    if status >= 400:
        return str(status)
    interrupted = outcome.capture.interrupted
    if interrupted:
        return str(interrupted)
    if not status:
        return "client_disconnected"
    error = answer.get("error") if answer is not None else None
    if error:
        if isinstance(error, dict):
            kind = error.get("type") or error.get("code")
            return str(kind) if kind else "_OTHER"
        return "_OTHER"
    return None


def response_attributes(outcome: Any, status: int, answer: Mapping[str, Any] | None) -> dict[str, Any]:
    """The attributes known at the end of the call (`outcome`: an `openai_capture.Outcome`)."""
    attrs: dict[str, Any] = {}
    if outcome.response_model:
        attrs["gen_ai.response.model"] = str(outcome.response_model)
    if outcome.response_id:
        attrs["gen_ai.response.id"] = str(outcome.response_id)
    if outcome.finish_reasons:
        attrs["gen_ai.response.finish_reasons"] = [str(r) for r in outcome.finish_reasons]
    if outcome.input_tokens is not None:
        attrs["gen_ai.usage.input_tokens"] = outcome.input_tokens
    if outcome.output_tokens is not None:
        attrs["gen_ai.usage.output_tokens"] = outcome.output_tokens
    if outcome.usage_source:
        attrs["infertap.usage_source"] = outcome.usage_source
    if answer is not None:
        attrs.update(_usage_details(answer.get("usage")))
        for key, name in (
            ("system_fingerprint", "openai.response.system_fingerprint"),
            ("service_tier", "openai.response.service_tier"),
        ):
            value = answer.get(key)
            if isinstance(value, str) and value:
                attrs[name] = value
    ttft = outcome.ttft
    if ttft is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = max(ttft, 0.0)
    reason = outcome.capture.reason
    if reason is not None:
        attrs["infertap.capture_reason"] = reason
    if status:
        attrs["http.response.status_code"] = status
    kind = error_type(status, outcome, answer)
    if kind is not None:
        attrs["error.type"] = kind
    return attrs


# --- content (opt-in) ----------------------------------------------------------------------


def _text(text: Any) -> dict[str, Any]:
    return {"type": "text", "content": text if isinstance(text, str) else json.dumps(text)}


def _arguments(raw: Any) -> Any:
    """Tool-call arguments as the semconv shows them (an object) when they parse, else as sent."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _tool_call(call: Any) -> dict[str, Any] | None:
    if not isinstance(call, dict):
        return None
    fn = call.get("function")
    if not isinstance(fn, dict):
        fn = {}
    part: dict[str, Any] = {"type": "tool_call", "name": fn.get("name") or ""}
    if call.get("id"):
        part["id"] = call["id"]
    if "arguments" in fn:
        part["arguments"] = _arguments(fn["arguments"])
    return part


def _media(modality: str, url: Any) -> dict[str, Any]:
    if isinstance(url, str) and url.startswith("data:") and "," in url:
        head, _, data = url[5:].partition(",")
        return {"type": "blob", "modality": modality, "mime_type": head.split(";", 1)[0] or None, "content": data}
    return {"type": "uri", "modality": modality, "uri": url}


def _parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content (a string or a list of typed parts) as semconv parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text(content)]
    if not isinstance(content, list):
        return [_text(content)]
    parts = []
    for item in content:
        if isinstance(item, str):
            parts.append(_text(item))
            continue
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind in ("text", "input_text", "output_text"):
            parts.append(_text(item.get("text", "")))
        elif kind == "image_url":
            image = item.get("image_url")
            parts.append(_media("image", image.get("url") if isinstance(image, dict) else image))
        elif kind == "input_audio" and isinstance(item.get("input_audio"), dict):
            audio = item["input_audio"]
            fmt = audio.get("format")
            parts.append(
                {
                    "type": "blob",
                    "modality": "audio",
                    "mime_type": f"audio/{fmt}" if fmt else None,
                    "content": audio.get("data", ""),
                }
            )
        else:  # a part the conventions have no shape for: as it came (GenericPart)
            parts.append({**item, "type": str(kind or "unknown")})
    return parts


def input_messages(operation: str, request: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """`gen_ai.input.messages` of a chat or text-completion request (None: nothing to show).

    Chat: the messages in order, system ones included (OpenAI sends them in the history);
    an assistant's tool calls as `tool_call` parts, a tool's answer as `tool_call_response`.
    Text completion: each prompt string as a user message."""
    out: list[dict[str, Any]] = []
    if operation == "chat":
        for m in request.get("messages") or ():
            if not isinstance(m, dict):
                continue
            role = str(m.get("role") or "user")
            if role in ("tool", "function"):
                content = m.get("content")
                parts: list[dict[str, Any]] = [
                    {
                        "type": "tool_call_response",
                        "id": m.get("tool_call_id") or m.get("name"),
                        "response": content,
                    }
                ]
            else:
                parts = _parts(m.get("content"))
                for call in m.get("tool_calls") or ():
                    part = _tool_call(call)
                    if part is not None:
                        parts.append(part)
            message: dict[str, Any] = {"role": role, "parts": parts}
            if isinstance(m.get("name"), str) and role not in ("tool", "function"):
                message["name"] = m["name"]
            out.append(message)
    elif operation == "text_completion":
        prompt = request.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt if isinstance(prompt, list) else []
        out = [{"role": "user", "parts": [_text(p)]} for p in prompts if isinstance(p, str)]
    return out or None


def output_messages(operation: str, answer: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    """`gen_ai.output.messages`: one message per choice, in index order, with its finish reason."""
    if answer is None or operation not in ("chat", "text_completion"):
        return None
    choices = answer.get("choices")
    if not isinstance(choices, list):
        return None
    out = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if operation == "chat":
            message = choice.get("message")
            if not isinstance(message, dict):
                message = {}
            parts = []
            for key in ("reasoning_content", "reasoning"):  # vLLM's reasoning parsers
                if isinstance(message.get(key), str) and message[key]:
                    parts.append({"type": "reasoning", "content": message[key]})
                    break
            parts += _parts(message.get("content"))
            if message.get("refusal"):
                parts.append({"type": "refusal", "content": message["refusal"]})
            for call in message.get("tool_calls") or ():
                part = _tool_call(call)
                if part is not None:
                    parts.append(part)
            role = str(message.get("role") or "assistant")
        else:
            parts = [_text(choice.get("text") or "")]
            role = "assistant"
        out.append({"role": role, "parts": parts, "finish_reason": str(choice.get("finish_reason") or "")})
    return out or None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- the exporter --------------------------------------------------------------------------


class LLMSpans:
    """The sidecar's tracer provider and OTLP/HTTP exporter, private to it (the process's global
    tracer provider is left alone); `export()` one finished exchange, `shutdown()` at the stop."""

    def __init__(
        self,
        endpoint: str,
        server_address: str,
        server_port: int,
        service_name: str = "",
        provider_name: str = "openai",
        capture_content: bool = False,
        redactor: Redactor | None = None,
        inference_service: str = "",
        component: str = "",
    ):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace import SpanKind, Status, StatusCode
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError as exc:
            raise OTelConfigError(
                f"--otel-endpoint is set, but the OpenTelemetry SDK is not installed ({exc.name or exc}): "
                f"install the extra, pip install 'infertap[{EXTRA}]'"
            ) from None
        from infertap import __version__

        self.endpoint = endpoint
        self.address, self.port = server_address, server_port
        self.provider_name = provider_name or "openai"
        self.capture_content = capture_content
        self.redactor = redactor
        self._kind, self._error = SpanKind.CLIENT, Status(StatusCode.ERROR)
        self._propagator = TraceContextTextMapPropagator()
        resource: dict[str, Any] = {}
        name = service_name or os.environ.get(SERVICE_NAME_ENV, "") or inference_service or DEFAULT_SERVICE_NAME
        resource["service.name"] = name
        if inference_service:
            resource["infertap.inference_service"] = inference_service
        if component:
            resource["infertap.component"] = component
        # the exporter reads $OTEL_EXPORTER_OTLP_[TRACES_]HEADERS itself: auth never passes through our settings
        self._exporter = OTLPSpanExporter(endpoint=endpoint)
        self._processor = BatchSpanProcessor(self._exporter)
        self.provider = TracerProvider(resource=Resource.create(resource))
        self.provider.add_span_processor(self._processor)
        self.tracer = self.provider.get_tracer("infertap.sidecar", __version__)
        self._closed = False
        log.info(
            "OpenTelemetry spans of OpenAI calls -> %s (service.name %s, content %s)",
            shown_url(endpoint),
            name,
            ("on, redacted" if redactor is not None else "on, not redacted") if capture_content else "off",
        )

    @classmethod
    def from_settings(cls, settings: Any) -> LLMSpans | None:
        """None when `otel_endpoint` is empty; `OTelConfigError` when it cannot be honoured."""
        endpoint = resolve_endpoint(getattr(settings, "otel_endpoint", "") or "")
        if endpoint is None:
            return None
        capture_content = bool(getattr(settings, "otel_capture_content", False))
        isvc, component = settings.inference_service, settings.component
        redactor = None
        if capture_content and getattr(settings, "redact", "openai") in ("openai", "all"):
            # the rules of the events; not counted again (the events' redaction counts them)
            redactor = Redactor(getattr(settings, "redact_patterns", ()), isvc, component, counted=False)
        return cls(
            endpoint,
            settings.component_host,
            settings.component_port,
            getattr(settings, "otel_service_name", ""),
            getattr(settings, "otel_provider_name", "openai"),
            capture_content,
            redactor,
            isvc,
            component,
        )

    def carrier(self, headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str] | None:
        return trace_carrier(headers)

    def export(self, exchange: Any, outcome: Any) -> None:
        """The span of one finished exchange (`tap.Exchange`, its `openai_capture.Outcome`)."""
        if self._closed:
            return
        capture = outcome.capture
        status = int(exchange.status or 0)
        answer = outcome.object if outcome.object is not None else outcome.parsed
        wall, perf = time.time_ns(), time.perf_counter()
        start = wall - int((perf - capture.started) * 1e9)
        ended: datetime | None = exchange.started
        end = int(ended.timestamp() * 1e9) if ended is not None else wall
        end = max(end, start)
        parent = self._propagator.extract(capture.trace) if capture.trace else None
        span = self.tracer.start_span(
            span_name(capture.operation, capture.request_model),
            context=parent,
            kind=self._kind,
            attributes=request_attributes(
                capture.operation, capture.request, self.provider_name, self.address, self.port
            ),
            start_time=start,
        )
        try:
            if span.is_recording():
                attrs = response_attributes(outcome, status, answer)
                attrs["infertap.event_id"] = exchange.id
                if self.capture_content:
                    attrs.update(self.content(capture.operation, capture.request, answer))
                span.set_attributes(attrs)
                if "error.type" in attrs:
                    span.set_status(self._error)
        finally:
            span.end(end_time=end)

    def content(self, operation: str, request: Mapping[str, Any], answer: Mapping[str, Any] | None) -> dict[str, str]:
        """The message attributes (JSON strings), redacted when redaction is on."""
        out: dict[str, str] = {}
        for name, messages in (
            ("gen_ai.input.messages", input_messages(operation, request)),
            ("gen_ai.output.messages", output_messages(operation, answer)),
        ):
            if messages is None:
                continue
            if self.redactor is not None:
                messages = self.redactor.value(messages)
            out[name] = _json(messages)
        return out

    def shutdown(self) -> None:
        """Flush what is queued and stop the exporter (blocking: call it in a thread)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.provider.shutdown()
        except Exception:  # noqa: BLE001 - the sidecar's stop goes on whatever the exporter does
            log.exception("OpenTelemetry span export did not shut down cleanly")
