"""The join-throughput benchmark, small: it runs against the embedded broker, every pair is
joined and published, and the JSON holds the figures and ratios the README promises."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.join_throughput import GOAL_PAIRS_PER_S, main


def test_a_small_run_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "join.json"
    assert main(["--pairs", "3000", "--window", "500", "--rounds", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["records"] == 9000  # request, response and label per pair
    (run,) = report["per_round"]
    assert run["worker"]["windows"] == 6, "every pair joined and in a published window"
    assert run["raw"]["records"] == 9000
    assert run["worker"]["pairs_per_s"] > 0 and run["raw"]["pairs_per_s"] > 0
    assert report["ratio_worker_to_raw_median"] == run["worker"]["pairs_per_s"] / run["raw"]["pairs_per_s"]
    assert report["meets_goal"] == (report["worker_pairs_per_s_median"] >= GOAL_PAIRS_PER_S)
    assert run["worker"]["cpu_seconds_per_1000_pairs"] > 0 and run["worker"]["state_bytes_after"] > 0
