"""Prometheus metrics of an explainer server or stream worker, in their own registry.

Prefix `infertap_explainer_`; labels `inference_service`, `model`, `explainer` (backend):

- `infertap_explainer_explain_seconds` (histogram): explain latency per backend;
- `infertap_explainer_requests_total{code}`: explain requests by HTTP status;
- `infertap_explainer_errors_total{reason}`: failed explanations (bad_input, deadline, predictor, internal);
- `infertap_explainer_instances_total`: instances explained;
- `infertap_explainer_mean_abs_attribution{feature}` (gauge): running mean of |attribution| per feature,
  the series dashboards and detectors watch for attribution drift;
- `infertap_explainer_predictor_requests_total` / `_predictor_rows_total` / `_predictor_seconds`:
  the black-box explainers' own predictor traffic;
- text explainers: `infertap_explainer_token_mean_abs_attribution{token}` (gauge), the running mean
  |attribution| of the `token_top_k` tokens with the highest one (lower-cased, at most 32
  characters; a token that falls out of the top k loses its series, so there are never more than
  k; k = 0 exports none), and, for LLM completions, `infertap_explainer_role_attribution_share{role}`
  (gauge): the running mean share of |attribution| that prompt segments of each message role
  (system, user, assistant, ...: a closed set) got.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BASE = ("inference_service", "model", "explainer")
#: Distinct tokens whose running means are kept (the least seen are forgotten past it): bounded memory.
MAX_TRACKED_TOKENS = 5000
MAX_TOKEN_CHARS = 32
ROLES = ("system", "developer", "user", "assistant", "tool", "prompt")


class ExplainerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, inference_service: str, model: str, explainer: str, token_top_k: int = 20):
        self._base = (inference_service, model, explainer)
        self.token_top_k = token_top_k
        r = self.registry = CollectorRegistry()
        self.latency = Histogram(
            "infertap_explainer_explain_seconds", "Explain latency by backend.", _BASE, buckets=BUCKETS, registry=r
        ).labels(*self._base)
        self.requests = Counter(
            "infertap_explainer_requests", "Explain requests by HTTP status.", (*_BASE, "code"), registry=r
        )
        self.errors = Counter(
            "infertap_explainer_errors", "Failed explanations by reason.", (*_BASE, "reason"), registry=r
        )
        self.instances = Counter("infertap_explainer_instances", "Instances explained.", _BASE, registry=r).labels(
            *self._base
        )
        self.attribution = Gauge(
            "infertap_explainer_mean_abs_attribution",
            "Running mean of |attribution| per feature over the instances explained.",
            (*_BASE, "feature"),
            registry=r,
        )
        self.predictor_requests = Counter(
            "infertap_explainer_predictor_requests", "Requests the explainer sent to the predictor.", _BASE, registry=r
        ).labels(*self._base)
        self.predictor_rows = Counter(
            "infertap_explainer_predictor_rows", "Rows the explainer sent to the predictor.", _BASE, registry=r
        ).labels(*self._base)
        self.predictor_seconds = Histogram(
            "infertap_explainer_predictor_seconds", "Predictor request latency.", _BASE, buckets=BUCKETS, registry=r
        ).labels(*self._base)
        # KServe's Python server's name for it (python/kserve/kserve/metrics.py), default buckets, so
        # KServe's dashboards keep working
        self.kserve_explain = Histogram(
            "request_explain_seconds", "explain request latency", ("model_name",), registry=r
        ).labels(model)
        self.token_attribution = Gauge(
            "infertap_explainer_token_mean_abs_attribution",
            "Running mean of |attribution| of the text explainers' top tokens (token_top_k series at most).",
            (*_BASE, "token"),
            registry=r,
        )
        self.role_share = Gauge(
            "infertap_explainer_role_attribution_share",
            "Running mean share of |attribution| that prompt segments of each message role got (LLM explainers).",
            (*_BASE, "role"),
            registry=r,
        )
        self._sums: np.ndarray | None = None
        self._count = 0
        self._names: list[str] = []
        self._tokens: dict[str, list[float]] = {}  # token -> [sum |attribution|, count]
        self._exported: set[str] = set()
        self._roles: dict[str, float] = {}  # role -> sum of shares
        self._completions = 0
        self._lock = threading.Lock()

    def on_predictor_request(self, rows: int, seconds: float) -> None:
        self.predictor_requests.inc()
        self.predictor_rows.inc(rows)
        self.predictor_seconds.observe(seconds)

    def observe_request(self, code: int) -> None:
        self.requests.labels(*self._base, str(code)).inc()

    def observe_error(self, reason: str) -> None:
        self.errors.labels(*self._base, reason).inc()

    def observe_attributions(self, names: list[str], values: list[list[float] | None]) -> None:
        """Fold explained instances into the running mean |attribution| per feature (None: not attributed)."""
        rows = [v for v in values if v is not None]
        if not rows:
            return
        block = np.abs(np.asarray(rows, dtype=np.float64))
        with self._lock:
            if self._sums is None or self._sums.shape[0] != block.shape[1]:
                self._sums, self._count, self._names = np.zeros(block.shape[1]), 0, list(names)
            self._sums += block.sum(0)
            self._count += len(block)
            means = self._sums / self._count
            for name, mean in zip(self._names, means, strict=True):
                self.attribution.labels(*self._base, name).set(float(mean))

    def observe_explanations(self, explanations: Sequence[Any]) -> None:
        """Fold one answer's explanations into the attribution series their kind has (features, tokens, roles)."""
        tabular = [e for e in explanations if getattr(e, "kind", None) is None and e.values is not None]
        if tabular:
            self.observe_attributions(tabular[0].feature_names, [e.values for e in tabular])
        for e in explanations:
            kind = getattr(e, "kind", None)
            if kind == "text":
                self.observe_tokens(e.tokens, e.attributions)
            elif kind == "llm":
                self.observe_roles([s.role for s in e.segments], [s.attribution for s in e.segments])

    def observe_tokens(self, tokens: Sequence[str], values: Sequence[float]) -> None:
        """Running mean |attribution| per token; only the top `token_top_k` are exported."""
        if self.token_top_k <= 0:
            return
        with self._lock:
            for token, value in zip(tokens, values, strict=False):
                key = token.strip().lower()[:MAX_TOKEN_CHARS]
                if not key:
                    continue
                entry = self._tokens.setdefault(key, [0.0, 0])
                entry[0] += abs(float(value))
                entry[1] += 1
            if len(self._tokens) > MAX_TRACKED_TOKENS:  # forget the least seen tenth
                keep = sorted(self._tokens.items(), key=lambda kv: kv[1][1], reverse=True)
                self._tokens = dict(keep[: int(MAX_TRACKED_TOKENS * 0.9)])
            means = {k: s / n for k, (s, n) in self._tokens.items()}
            top = set(sorted(means, key=means.__getitem__, reverse=True)[: self.token_top_k])
            for gone in self._exported - top:
                self.token_attribution.remove(*self._base, gone)
            for token in top:
                self.token_attribution.labels(*self._base, token).set(means[token])
            self._exported = top

    def observe_roles(self, roles: Sequence[str], values: Sequence[float]) -> None:
        """Running mean share of |attribution| per message role over the completions explained."""
        total = sum(abs(float(v)) for v in values)
        if total <= 0 or not np.isfinite(total):
            return
        shares: dict[str, float] = {}
        for role, value in zip(roles, values, strict=False):
            if role in ROLES:
                shares[role] = shares.get(role, 0.0) + abs(float(value)) / total
        with self._lock:
            self._completions += 1
            for role, share in shares.items():
                self._roles[role] = self._roles.get(role, 0.0) + share
            for role, summed in self._roles.items():
                self.role_share.labels(*self._base, role).set(summed / self._completions)

    def token_means(self) -> dict[str, float]:
        """The exported tokens' running mean |attribution| (tests and the report read it)."""
        with self._lock:
            return {k: self._tokens[k][0] / self._tokens[k][1] for k in self._exported}

    def mean_abs_attribution(self) -> dict[str, float]:
        with self._lock:
            if self._sums is None or not self._count:
                return {}
            return dict(zip(self._names, (self._sums / self._count).tolist(), strict=True))

    def render(self) -> bytes:
        return generate_latest(self.registry)
