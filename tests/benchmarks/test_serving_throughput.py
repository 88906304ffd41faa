"""How the serving benchmark combines rounds, forms ratios and judges the goal (no servers)."""

from __future__ import annotations

import pytest

from benchmarks.serving_throughput import _combine, _ratios, _summary, markdown_table

pytestmark = pytest.mark.fast  # starts no process (make test-fast)


def _round(rps: float, p50: float | None, p99: float | None, cpu: float, errors: int = 0) -> dict:
    return {
        "requests": int(rps * 4),
        "errors": errors,
        "duration_s": 4.0,
        "throughput_rps": rps,
        "latency_ms": {"p50": p50, "p99": p99, "mean": p50},
        "cpu_us_per_request": cpu,
    }


def test_combine_takes_medians_so_one_disturbed_round_does_not_decide() -> None:
    got = _combine([_round(400, 2.0, 9.0, 1000), _round(100, 9.0, 90.0, 3000), _round(380, 2.2, 10.0, 1100)])
    assert got["throughput_rps"] == 380 and got["latency_ms"]["p50"] == 2.2 and got["latency_ms"]["p99"] == 10.0
    assert got["cpu_us_per_request"] == 1100 and got["requests"] == 3520


def test_combine_skips_rounds_without_successes() -> None:
    got = _combine([_round(0, None, None, 50, errors=7), _round(200, 3.0, 8.0, 900)])
    assert got["latency_ms"]["p50"] == 3.0 and got["errors"] == 7


def test_ratios_and_goal() -> None:
    ours, ref = _combine([_round(300, 2.0, 8.0, 800)]), _combine([_round(200, 3.0, 12.0, 1600)])
    r = _ratios(ours, ref)
    assert r == {"throughput": 1.5, "p50": 0.667, "p99": 0.667, "cpu_per_request": 0.5}
    slow_tail = {**r, "p99": 1.1}
    summary = _summary([{"ratio_infertap_over_kserve": r}, {"ratio_infertap_over_kserve": slow_tail}])
    assert summary["kserve"]["cells_meeting_goal"] == 1 and summary["cells"] == 2
    assert _ratios(ours, _combine([_round(0, None, None, 0)]))["p50"] is None  # no division by nothing


def test_markdown_table_has_a_row_per_cell_and_a_table_per_reference() -> None:
    ours, ref = _combine([_round(300, 2.0, 8.0, 800)]), _combine([_round(200, 3.0, 12.0, 1600)])
    cell = {
        "protocol": "v2",
        "concurrency": 8,
        "infertap": ours,
        "kserve": ref,
        "kserve_quiet": ref,
        "ratio_infertap_over_kserve": _ratios(ours, ref),
        "ratio_infertap_over_kserve_quiet": _ratios(ours, ref),
    }
    text = markdown_table({"cells": [cell, {**cell, "concurrency": 32}]})
    tables = text.split("\n\n")
    assert len(tables) == 2 and "kserve_quiet rps" in tables[1]
    assert "| V2 | 8 | 300 / 2.00 / 8.0 / 800 | 200 / 3.00 / 12.0 / 1600 | 1.50 | 0.67 | 0.67 | 0.50 |" in tables[0]
