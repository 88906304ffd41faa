"""InferenceService annotations that tune the logger sidecar's LLM capture, privacy and
sampling (docs/llm-capture.md); read by `infertap.stack.plan` into `LoggerSettings`.

- `infertap.io/redact: "true" | "false"`: redact every logged body (`redact=all`) or none
  (`none`); without it, the OpenAI endpoints are redacted and tensor payloads are not.
- `infertap.io/log-sample-rate: "0.1"`: the share of exchanges logged (`log_sample_rate`),
  chosen by event id; failures are always logged.

They are KServe-compatible: a real KServe cluster ignores annotations it does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infertap.stack.processes import PlanError

REDACT_ANNOTATION = "infertap.io/redact"
SAMPLE_ANNOTATION = "infertap.io/log-sample-rate"


def logger_overrides(annotations: Mapping[str, str], where: str) -> dict[str, Any]:
    """`LoggerSettings` fields set by the annotations (empty when none is there)."""
    out: dict[str, Any] = {}
    raw = annotations.get(REDACT_ANNOTATION)
    if raw is not None:
        value = str(raw).strip().lower()
        if value not in ("true", "false"):
            raise PlanError(f'{where}: metadata.annotations["{REDACT_ANNOTATION}"]: "true" or "false" (got {raw!r})')
        out["redact"] = "all" if value == "true" else "none"
    raw = annotations.get(SAMPLE_ANNOTATION)
    if raw is not None:
        try:
            rate = float(raw)
        except ValueError:
            rate = float("nan")
        if not 0.0 <= rate <= 1.0:
            raise PlanError(
                f'{where}: metadata.annotations["{SAMPLE_ANNOTATION}"]: a share of traffic in [0, 1], e.g. "0.1" (got {raw!r})'
            )
        out["log_sample_rate"] = rate
    return out
