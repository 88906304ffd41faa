"""The data-quality benchmark runs, writes its JSON, and its counts agree with pandas' on the same windows."""

from __future__ import annotations

import json

import pytest

from benchmarks.data_quality import main

pytestmark = pytest.mark.fast  # starts no process (make test-fast)


def test_benchmark_writes_ratios_and_agrees_with_pandas(tmp_path) -> None:
    out = tmp_path / "data_quality.json"
    assert main(["--rows", "300", "--repeats", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == 300
    for part in report["decode"].values():
        assert part["ratio"] == pytest.approx(part["quality_decoder_s"] / part["numeric_decoder_s"])
    clean, dirty = report["checks"]["clean"], report["checks"]["dirty"]
    assert clean["counts_agree"] and dirty["counts_agree"]
    assert clean["violations"] == []
    assert dirty["violations"] == ["_all:duplicate", "c0:unseen", "x1:missing", "x2:type", "x3:range"]
