"""The tap's LLM-aware and privacy steps, kept beside `infertap.sidecar.tap` so that the
common (tensor) exchange never passes through them: building the events of OpenAI
exchanges (`openai_capture`), redaction (`redact`), the GenAI metrics (`llm_metrics`), and
the OpenTelemetry spans (`llm_otel`, when `otel_endpoint` is set).

The tap calls in here only for an exchange with a `Capture` (an OpenAI path) or when
redaction is on for all traffic; every other event is built as before.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cloudevents.core.v1.event import CloudEvent

from infertap.logger.events import EventBuilder, now
from infertap.sidecar.llm_metrics import GenAIMetrics
from infertap.sidecar.openai_capture import Capture, request_extensions
from infertap.sidecar.redact import Redactor

if TYPE_CHECKING:
    from infertap.sidecar.llm_otel import LLMSpans

log = logging.getLogger("infertap.logger.tap")

#: extension with the raw SSE inside the reassembled object, when `keep_raw_sse` is on
RAW_SSE_FIELD = "x_infertap_sse"

EXTENSION_NAMES = (
    "genaioperationname",
    "genairequestmodel",
    "genairequeststream",
    "genairesponsemodel",
    "genairesponseid",
    "genairesponsefinishreasons",
    "genaiusageinputtokens",
    "genaiusageoutputtokens",
    "genaiusagesource",
    "genaiservertimetofirsttoken",
    "genaiservertimeperoutputtoken",
    "genaiserverrequestduration",
    "capturereason",
)


def _check_names() -> None:
    """The extension names, validated once by the SDK's validating constructor."""
    CloudEvent({"type": "t", "source": "s", "id": "1", **dict.fromkeys(EXTENSION_NAMES, "x")}, b"")


_check_names()


class LLMTap:
    """What `Tap` delegates for OpenAI exchanges and redacted traffic."""

    def __init__(
        self,
        builder: EventBuilder,
        max_body: int,
        inference_service: str = "",
        component: str = "",
        redact: str = "openai",
        redact_patterns: Iterable[str] = (),
        keep_raw_sse: bool = False,
        llm_prices: Mapping[str, str] | None = None,
        models: Any = None,
        otel: LLMSpans | None = None,
    ):
        self.builder, self.max_body = builder, max_body
        self.redact_openai = redact in ("openai", "all")
        self.redact_all = redact == "all"
        self.redactor = Redactor(redact_patterns, inference_service, component)
        self.keep_raw_sse = keep_raw_sse
        self.metrics = GenAIMetrics(inference_service, component, models, llm_prices)
        self.otel = otel  # the span exporter (`llm_otel.LLMSpans`), None: no spans

    def capture(self, operation: str, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> Capture:
        capture = Capture(operation, body, self.max_body)
        if self.otel is not None:  # the span becomes the child of the request's trace context
            capture.trace = self.otel.carrier(headers)
        return capture

    # --- events ---------------------------------------------------------------------------

    def request_event(self, exchange: Any, body: bytes) -> CloudEvent:
        capture: Capture | None = exchange.capture
        if capture is not None:
            if self.redact_openai:
                body = self.redactor.body(body, capture.request or None)
            return self.builder.request(
                exchange.id,
                body,
                exchange.content_type,
                exchange.metadata,
                exchange.requested,  # None: now
                extensions=request_extensions(capture),
            )
        return self.builder.request(
            exchange.id, self.redactor.body(body), exchange.content_type, exchange.metadata, exchange.requested
        )

    def response_event(self, exchange: Any, body: bytes) -> CloudEvent | None:
        """The response event of a finished exchange (None: not logged); observes the GenAI metrics."""
        capture: Capture | None = exchange.capture
        if capture is None:  # redaction of all traffic, a tensor exchange
            if not exchange.log_response or not exchange.status:
                return None
            return self.builder.response(
                exchange.id,
                self.redactor.body(body),
                exchange.content_type,
                exchange.metadata,
                exchange.status,
                exchange.started,
                exchange.truncated,
            )
        outcome = capture.finish()
        if exchange.status:
            try:
                self.metrics.observe(outcome, exchange.status)
            except Exception:  # noqa: BLE001 - metrics never fail the tap
                log.exception("GenAI metrics of event %s not observed", exchange.id)
        if self.otel is not None:  # before the object is redacted for the event: the spans redact their own copy
            try:
                self.otel.export(exchange, outcome)
            except Exception:  # noqa: BLE001 - span export never fails the tap
                log.exception("OpenTelemetry span of event %s not exported", exchange.id)
        if not exchange.log_response or not exchange.status:
            return None
        redact = self.redact_openai
        truncated = exchange.truncated
        content_type = exchange.content_type
        if outcome.object is not None:  # a reassembled stream
            obj: dict[str, Any] = outcome.object
            if self.keep_raw_sse:
                obj[RAW_SSE_FIELD] = body.decode("utf-8", "replace")
            if redact:
                obj = self.redactor.value(obj)
            body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
            content_type, truncated = "application/json", outcome.truncated or truncated
        elif capture.stream:  # a stream that could not be reassembled: the raw SSE
            content_type = "text/event-stream"
            if redact:
                body = self.redactor.body(body)
        else:
            if outcome.parsed is not None:
                content_type = "application/json"
            if redact:
                body = self.redactor.body(body, outcome.parsed)
        return self.builder.response(
            exchange.id,
            body,
            content_type,
            exchange.metadata,
            exchange.status,
            exchange.started or now(),
            truncated,
            extensions=outcome.extensions(),
        )
