"""LLM response signals per window, against the reference's and against thresholds.

Reads the LLM response layout of the text frame (`infertap.detectors.text.frame.LLM_COLUMNS`):
each answer's text, finish reason, refusal, tool calls, output tokens (the sidecar's
`genaiusageoutputtokens`, else the body's usage) and status. Per window:

| signal | what | test against the reference |
| --- | --- | --- |
| `output_tokens` | output tokens of the answers | KS (two-sided: longer or shorter) |
| `output_chars` | characters of the answers | KS |
| `finish_length_share` | answers cut by the token limit (`finish_reason: length`) | Fisher's exact, one-sided (more) |
| `empty_share` | answers with no text, no tool call and no refusal | Fisher's exact, one-sided |
| `refusal_share` | refusals: the message's `refusal`, or a text matching `refusal_patterns` | Fisher's exact, one-sided |
| `error_share` | calls answered with a status >= 400 (share of all calls; the others: of answered ones) | Fisher's exact, one-sided |

A signal moved when its test is below the Bonferroni-corrected `p_val`, or a share is above its
`max_<signal>` threshold (unset by default). The detection gives each signal's window and
reference values (`value`, `reference`; also the metric `infertap_detector_feature_value`,
which the alert rules read) and a few answers behind each moved share (as logged: redacted).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.backends.folder import read_manifest, write_manifest
from infertap.detectors.backends.text_base import parse_params, shown
from infertap.detectors.result import DetectionKind, DetectionResult, FeatureScore
from infertap.detectors.settings import FeatureSettings

STATE = "state.npz"
SHARES = ("finish_length_share", "empty_share", "refusal_share", "error_share")
#: refusal-like openings and phrases (case-insensitive, on an answer's first 500 characters)
REFUSAL_PATTERNS = (
    r"^\W*(?:i['’]?m|i am)\s+(?:very\s+|so\s+|really\s+)?sorry\b",
    r"\bi\s+(?:can(?:no|['’])t|cannot|won['’]?t|am\s+(?:not\s+able|unable)\s+to)\s+"
    r"(?:help|assist|provide|answer|do|comply|share|support|fulfil)",
    r"\bi['’]?m\s+(?:not\s+able|unable)\s+to\s+(?:help|assist|provide|answer|comply)",
    r"\bas\s+an\s+ai(?:\s+language\s+model)?\b",
    r"\b(?:against|violates?)\s+(?:my|our|the)\s+(?:guidelines|polic(?:y|ies)|content\s+policy|usage\s+policies)",
)


class SignalParams(BaseModel):
    """Parameters of LLMResponseSignals."""

    model_config = ConfigDict(extra="forbid")

    p_val: float = Field(default=0.05, gt=0, lt=1, description="Level of the tests, Bonferroni-corrected.")
    refusal_patterns: list[str] | None = Field(
        default=None, description="Regular expressions of refusals (case-insensitive); default REFUSAL_PATTERNS."
    )
    max_finish_length_share: float | None = Field(default=None, ge=0, le=1, description="Alert above this share.")
    max_empty_share: float | None = Field(default=None, ge=0, le=1, description="Alert above this share.")
    max_refusal_share: float | None = Field(default=None, ge=0, le=1, description="Alert above this share.")
    max_error_share: float | None = Field(default=None, ge=0, le=1, description="Alert above this share.")
    examples: int = Field(default=3, ge=0, le=20, description="Answers shown per moved share.")


class LLMResponseSignals(DetectorBackend):
    """Output length, truncation, empty answers, refusals and errors of an LLM; params: `SignalParams`."""

    kind: ClassVar[DetectionKind] = "drift"
    frame: ClassVar[str] = "llm_response"

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(list(feature_names), dict(params))
        self.p = parse_params("LLMResponseSignals", SignalParams, self.params)
        patterns = self.p.refusal_patterns if self.p.refusal_patterns is not None else list(REFUSAL_PATTERNS)
        self.patterns = []
        for i, pattern in enumerate(patterns):
            try:
                self.patterns.append(re.compile(pattern, re.IGNORECASE))
            except re.error as exc:
                raise ValueError(f"LLMResponseSignals: parameter 'refusal_patterns.{i}': {exc}") from None
        self.ref: dict[str, np.ndarray] = {}

    def reference_from(self, path: Path, features: Sequence[FeatureSettings]) -> np.ndarray:
        """Answers of the reference corpus, in the frame's layout (`evaluator.read_reference` calls it)."""
        from infertap.detectors.text.corpus import read_answers

        return _frame(read_answers(path))

    # --- signals ------------------------------------------------------------------------

    def signals(self, x: Any) -> dict[str, np.ndarray]:
        """Per answer: tokens, chars, and the flags behind each share (errors over all rows)."""
        rows = _frame(x) if not isinstance(x, np.ndarray) else x
        status = np.array([200 if s is None else int(s) for s in rows[:, 5]], dtype=np.int64)
        error = status >= 400
        texts = ["" if t is None else str(t) for t in rows[:, 0]]
        refusal = np.array(
            [bool(r) or any(p.search(t[:500]) for p in self.patterns) for t, r in zip(texts, rows[:, 2], strict=True)]
        )
        tools = np.array([int(t or 0) for t in rows[:, 3]])
        empty = np.array([not t.strip() for t in texts]) & (tools == 0) & ~refusal
        answered = ~error
        return {
            "output_tokens": np.array([_number(v) for v in rows[:, 4]], dtype=np.float64)[answered],
            "output_chars": np.array([len(t) for t in texts], dtype=np.float64)[answered],
            "finish_length_share": np.array([f == "length" for f in rows[:, 1]])[answered],
            "empty_share": empty[answered],
            "refusal_share": refusal[answered],
            "error_share": error,
            "_answered": np.nonzero(answered)[0],
        }

    def fit(self, x_ref: Any) -> None:
        found = self.signals(x_ref)
        if len(found["error_share"]) < 10:
            raise ValueError(f"a reference of {len(found['error_share'])} answers is too small (10 at least)")
        self.ref = {k: v for k, v in found.items() if not k.startswith("_")}

    def predict(self, x: Any) -> DetectionResult:
        from scipy.stats import fisher_exact, ks_2samp

        if not self.ref:
            raise RuntimeError("LLMResponseSignals is not fitted: call fit(answers) or load(path) first")
        rows = _frame(x) if not isinstance(x, np.ndarray) else x
        cur = self.signals(rows)
        tested: list[tuple[str, float, float, float | None, float | None]] = []  # name, p, stat, value, reference
        for name in ("output_tokens", "output_chars"):
            a, b = self.ref[name], cur[name]
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            if len(a) < 2 or len(b) < 2:
                continue
            test = ks_2samp(a, b, method="asymp")
            tested.append((name, float(test.pvalue), float(test.statistic), float(b.mean()), float(a.mean())))
        for name in SHARES:
            a, b = self.ref[name], cur[name]
            if len(b) == 0:
                continue
            ka, kb = int(a.sum()), int(b.sum())
            _, p = fisher_exact([[kb, len(b) - kb], [ka, len(a) - ka]], alternative="greater")
            value, reference = kb / len(b), ka / max(1, len(a))
            tested.append((name, float(p), value - reference, value, reference))
        cut = self.p.p_val / max(1, len(tested))
        features = []
        for name, p_test, stat, win, ref in tested:
            limit = getattr(self.p, f"max_{name}", None)
            over = limit is not None and win is not None and win > limit
            drift = bool(p_test < cut or over)
            features.append(
                FeatureScore(name=name, p_val=p_test, distance=stat, is_drift=drift, value=win, reference=ref)
            )
        moved = [f.name for f in features if f.is_drift]
        return DetectionResult(
            kind="drift",
            detector="LLMResponseSignals",
            n=int(len(rows)),
            is_drift=bool(moved),
            p_val=min((f.p_val for f in features if f.p_val is not None), default=None),
            threshold=cut,
            features=features,
            raw={"moved": moved, "examples": self._examples(rows, cur, moved)},
        )

    def _examples(self, rows: np.ndarray, cur: dict[str, np.ndarray], moved: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        answered = cur["_answered"]
        for name in moved:
            if name not in SHARES or name == "error_share":
                continue
            hits = answered[np.nonzero(cur[name])[0]][: self.p.examples]
            out[name] = [shown("" if rows[i, 0] is None else str(rows[i, 0])) for i in hits.tolist()]
        return out

    def save(self, path: Path) -> None:
        if not self.ref:
            raise RuntimeError("LLMResponseSignals is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / STATE, **self.ref)
        write_manifest(path, "LLMResponseSignals", self.feature_names, self.params)

    def load(self, path: Path) -> None:
        read_manifest(path)
        with np.load(Path(path) / STATE, allow_pickle=False) as state:
            self.ref = {k: state[k] for k in state.files}


def _frame(rows: Any) -> np.ndarray:
    """Rows of the LLM layout as an object array (the worker's frames already are one)."""
    x = np.empty((len(rows), 6), dtype=object)
    for i, row in enumerate(rows):
        x[i, :] = list(row)[:6]
    return x


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan
