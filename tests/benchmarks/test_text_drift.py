"""The text drift benchmark, small: its direct path embeds as our embedder does, and a tiny run of the
whole script (embedded broker, the worker's detector process) writes the figures the README quotes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import text_drift


@pytest.mark.fast  # starts no process
def test_the_direct_path_embeds_as_the_detector_does():
    from infertap.detectors.text.embed import Embedder

    texts = text_drift.prompts(40, seed=3) + text_drift.prompts(10, seed=4, shifted=True)
    direct = text_drift.Direct(text_drift.MODEL, "cpu", batch_size=16)
    ours, _ = Embedder(text_drift.MODEL, "cpu", batch_size=16).embed(texts)
    np.testing.assert_allclose(direct.encode(texts), ours, atol=1e-5)
    windows = text_drift.make_windows(2, 30)
    assert windows[0] != windows[1] and sum("guide" in t or "compare" in t for t in windows[1]) == 10


def test_a_small_run_writes_the_ratio_and_says_where_the_gpu_figures_are(tmp_path: Path):
    out = tmp_path / "text_drift.json"
    argv = ["--windows", "3", "--window-size", "60", "--reference-size", "60", "--permutations", "20"]
    assert text_drift.main([*argv, "--rounds", "1", "--no-st", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["benchmark"] == "text_drift" and result["window_size"] == 60 and result["rounds"] == 1
    assert result["throughput_ratio_worker_to_direct"] > 0 and isinstance(result["meets_goal"], bool)
    assert result["cpu_ratio_worker_to_direct_median"] > 0
    run = result["per_round"][0]
    assert len(run["worker"]["drift"]) == 3 and result["same_verdicts_as_direct"] is True
    if result["device"] == "cpu":
        assert "needs a lent GPU" in result["gpu"]
