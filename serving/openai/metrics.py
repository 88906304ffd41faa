"""LLM metrics of the OpenAI endpoints, in the server's registry (vLLM's names in the docstrings).

- `infertap_llm_prompt_tokens_total` (vllm:prompt_tokens_total)
- `infertap_llm_generation_tokens_total` (vllm:generation_tokens_total): counted in the model
  thread as tokens are produced, so it stops growing the moment a generation stops
- `infertap_llm_time_to_first_token_seconds` (vllm:time_to_first_token_seconds)
- `infertap_llm_request_duration_seconds` (vllm:e2e_request_latency_seconds)
- `infertap_llm_requests_finished_total{finished_reason}` (vllm:request_success_total): stop,
  length, cancelled (the client went away), error
- `infertap_llm_requests_running` (vllm:num_requests_running)
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from infertap.serving.metrics import ServerMetrics

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
E2E_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BASE = ("inference_service", "component", "model")


class LLMMetrics:
    def __init__(self, server: ServerMetrics):
        self._base = server._base
        r = server.registry
        self.prompt_tokens = Counter("infertap_llm_prompt_tokens", "Prompt tokens processed.", _BASE, registry=r)
        self.generation_tokens = Counter(
            "infertap_llm_generation_tokens", "Tokens generated, counted as they are produced.", _BASE, registry=r
        )
        self.ttft = Histogram(
            "infertap_llm_time_to_first_token_seconds",
            "Seconds from request to the first generated text.",
            _BASE,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "infertap_llm_request_duration_seconds",
            "Seconds from request to the last generated token.",
            _BASE,
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.finished = Counter(
            "infertap_llm_requests_finished",
            "Generations by how they ended: stop, length, cancelled, error.",
            (*_BASE, "finished_reason"),
            registry=r,
        )
        self.running = Gauge("infertap_llm_requests_running", "Generations in progress.", _BASE, registry=r)

    def labels(self, model: str) -> tuple[str, str, str]:
        return (*self._base, model)

    def token_counter(self, model: str) -> Callable[[int], None]:
        """What the runtime calls from its model thread with each step's new token count."""
        return self.generation_tokens.labels(*self.labels(model)).inc
