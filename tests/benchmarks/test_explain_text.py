"""Smoke test of benchmarks/explain_text.py: prompts of the asked size, and one real served-vs-captum case."""

from __future__ import annotations

import json

import pytest

from benchmarks.explain_text import WORDS, main, sized_text
from tests.conftest import MODELS


@pytest.mark.fast
def test_prompts_are_cut_to_the_asked_token_count():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODELS / "tiny-llm", local_files_only=True)
    for n in (16, 64):
        text = sized_text(tok, WORDS, n)
        length = len(tok(text)["input_ids"])
        assert n <= length <= n + 3  # the first whole word past n tokens
        assert len(tok(" ".join(text.split(" ")[:-1]))["input_ids"]) < n


def test_the_feature_ablation_case_runs_and_agrees_with_captum(tmp_path, models_dir):
    out = tmp_path / "explain_text.json"
    assert main(["--requests", "1", "--cases", "llm-fa", "--prompt-tokens", "16", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    case = result["cases"]["llm-fa"]
    assert case["prompt_tokens"] >= 16 and case["completion_tokens"] >= 16 and case["segments"] > 5
    assert case["served"]["n"] == case["in_process"]["n"] == 1 and case["served_over_in_process"] > 0
    # the served explainer computes what captum computes in-process, segment by segment
    assert case["max_abs_diff_served_vs_in_process"] < 1e-4
    assert result["goal"].startswith("served within 1.2x") and ("gpu" in result or result["environment"]["cuda"])
