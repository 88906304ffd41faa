"""The CBPE benchmark, ours only (no NannyML needed): it runs, says the reference was skipped and why,
and its comparison forms the ratio and the largest difference as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cbpe_vs_nannyml import METRICS, compare, main

pytestmark = pytest.mark.fast  # starts no process: the reference side is skipped (make test-fast)


def test_ours_only_run_writes_json_saying_the_reference_was_skipped(tmp_path: Path) -> None:
    out = tmp_path / "cbpe.json"
    argv = ["--windows", "3", "--window", "500", "--reference-rows", "3000", "--rounds", "1", "--skip-reference"]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["reference"] == {"nannyml": "0.13.1", "skipped": "--skip-reference"}
    for problem in ("binary", "multiclass"):
        entry = report["problems"][problem]
        assert "nannyml" not in entry and "comparison" not in entry
        windows = entry["infertap"]["windows"]
        assert len(windows) == 3 and entry["seconds_per_window"]["infertap"] > 0
        for w in windows:
            assert set(w["estimates"]) == set(METRICS)
            assert all(0 <= v <= 1 for v in w["estimates"].values())
        # the windows drift further each time: the model's accuracy (and its estimate) falls
        assert windows[0]["realised"]["accuracy"] > windows[-1]["realised"]["accuracy"]
        assert windows[0]["estimates"]["accuracy"] > windows[-1]["estimates"]["accuracy"]


def test_comparison_is_median_time_ratio_and_largest_difference() -> None:
    def side(seconds: list[float], accuracy: list[float]) -> dict:
        return {
            "windows": [
                {"seconds": s, "estimates": {m: a if m == "accuracy" else 0.5 for m in METRICS}}
                for s, a in zip(seconds, accuracy, strict=True)
            ]
        }

    got = compare(side([1.0, 2.0, 9.0], [0.9, 0.8, 0.7]), side([4.0, 4.0, 1.0], [0.9, 0.82, 0.695]))
    assert got["seconds_per_window"] == {"infertap": 2.0, "nannyml": 4.0} and got["time_ratio"] == 0.5
    assert got["max_abs_difference"] == pytest.approx(0.02)
    assert got["max_abs_difference_per_metric"]["f1"] == 0
    assert got["goal_no_slower"] is True and got["goal_within_0.01"] is False
