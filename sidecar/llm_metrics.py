"""GenAI metrics of the OpenAI traffic through the sidecar, on the sidecar's registry.

Names are the OpenTelemetry GenAI semantic-convention metrics in Prometheus form, prefixed
`infertap_` (docs/llm-capture.md maps them to vLLM's `vllm:*`):

- `infertap_gen_ai_server_time_to_first_token_seconds` (histogram; streamed calls)
- `infertap_gen_ai_server_time_per_output_token_seconds` (histogram; streamed calls)
- `infertap_gen_ai_server_request_duration_seconds` (histogram)
- `infertap_gen_ai_client_token_usage_total{gen_ai_token_type="input"|"output"}` (counter)
- `infertap_gen_ai_server_requests_total{gen_ai_response_finish_reason, code}` (counter)
- `infertap_gen_ai_client_cost_usd_total{gen_ai_token_type}` (counter; only for models in
  the price table `--llm-prices MODEL=INPUT:OUTPUT`, USD per 1M tokens)

Labels are bounded: `model` by a `ModelNames` of its own (a name the model server answered
for, at most 32), the finish reason by a fixed set (anything else is `other`), the
operation by `openai_capture.OPERATIONS`, the code by HTTP itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Histogram

from infertap.logger.metrics import REGISTRY

_LABELS = ("inference_service", "component", "model", "gen_ai_operation_name")
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 1, 2.5)

TTFT = Histogram(
    "infertap_gen_ai_server_time_to_first_token_seconds",
    "Time from the request's arrival at the sidecar to the first content chunk of a streamed answer.",
    _LABELS,
    buckets=_TTFT_BUCKETS,
    registry=REGISTRY,
)
TPOT = Histogram(
    "infertap_gen_ai_server_time_per_output_token_seconds",
    "Time per output token after the first, of a streamed answer, measured at the sidecar.",
    _LABELS,
    buckets=_TPOT_BUCKETS,
    registry=REGISTRY,
)
DURATION = Histogram(
    "infertap_gen_ai_server_request_duration_seconds",
    "Time from the request's arrival at the sidecar to the end of the answer, OpenAI calls.",
    _LABELS,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320),
    registry=REGISTRY,
)
TOKENS = Counter(
    "infertap_gen_ai_client_token_usage",
    "Tokens of OpenAI calls through the sidecar, by type (input, output); estimates included.",
    (*_LABELS, "gen_ai_token_type"),
    registry=REGISTRY,
)
REQUESTS = Counter(
    "infertap_gen_ai_server_requests",
    "OpenAI calls through the sidecar, by finish reason (first choice) and status code.",
    (*_LABELS, "gen_ai_response_finish_reason", "code"),
    registry=REGISTRY,
)
COST = Counter(
    "infertap_gen_ai_client_cost_usd",
    "Cost of the tokens of OpenAI calls, from the price table (--llm-prices), in US dollars.",
    (*_LABELS, "gen_ai_token_type"),
    registry=REGISTRY,
)

FINISH_REASONS = frozenset(
    {"stop", "length", "tool_calls", "content_filter", "function_call", "client_disconnected", "upstream_error"}
)


def parse_prices(table: Mapping[str, str]) -> dict[str, tuple[float, float]]:
    """`{"model": "0.15:0.60"}` (USD per 1M input:output tokens) -> per-token prices."""
    prices = {}
    for model, value in table.items():
        inp, _, out = str(value).partition(":")
        try:
            prices[model] = (float(inp) / 1e6, float(out or inp) / 1e6)
        except ValueError:
            raise ValueError(f"llm_prices: {model}={value!r} is not INPUT:OUTPUT dollars per 1M tokens") from None
    return prices


class GenAIMetrics:
    """Observes one finished OpenAI exchange (`observe`)."""

    def __init__(self, inference_service: str, component: str, models: Any, prices: Mapping[str, str] | None = None):
        """`models`: a `infertap.sidecar.tap.ModelNames` (passed in: the tap imports this module)."""
        self.isvc, self.component = inference_service, component
        self.models = models
        self.prices = parse_prices(prices or {})

    def observe(self, outcome: Any, status: int) -> None:
        capture = outcome.capture
        name = outcome.response_model or capture.request_model or ""
        model, _ = self.models.label(str(name), status)
        labels = (self.isvc, self.component, model, capture.operation)
        reasons = outcome.finish_reasons
        reason = reasons[0] if reasons else "none"
        if reason not in FINISH_REASONS and reason != "none":
            reason = "other"
        REQUESTS.labels(*labels, reason, str(status)).inc()
        DURATION.labels(*labels).observe(outcome.duration)
        ttft, tpot = outcome.ttft, outcome.tpot
        if ttft is not None:
            TTFT.labels(*labels).observe(ttft)
        if tpot is not None:
            TPOT.labels(*labels).observe(tpot)
        price = self.prices.get(str(name))
        for kind, count in (("input", outcome.input_tokens), ("output", outcome.output_tokens)):
            if count:
                TOKENS.labels(*labels, kind).inc(count)
                if price is not None:
                    COST.labels(*labels, kind).inc(count * price[0 if kind == "input" else 1])
