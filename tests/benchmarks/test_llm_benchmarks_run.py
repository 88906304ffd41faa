"""The LLM benchmarks run end to end at a small size (real upstream, nginx, sidecars, broker):
the JSON has its fields, and the values say that every stream went through every path and
was logged. Nothing here judges speed (benchmarks/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import llm_capture_cpu, llm_ttft


def test_llm_ttft_small_run_writes_every_path_and_the_goal_check(tmp_path: Path) -> None:
    out = tmp_path / "llm_ttft.json"
    args = ["--requests", "6", "--rounds", "2", "--warmup", "2", "--tokens", "4", "--first-token-ms", "3"]
    args += ["--background-streams", "2", "--background-tokens", "30", "--background-interval-ms", "2"]
    assert llm_ttft.main([*args, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "llm_ttft" and doc["sink"] == "kafka"
    assert doc["parameters"]["tokens"] == 4 and doc["parameters"]["rounds"] == 2
    assert set(doc["scenarios"]) == {"idle", "loaded"}
    for name, scenario in doc["scenarios"].items():
        paths = scenario["paths"]
        assert set(paths) == {"direct", "nginx", "sidecar", "sidecar_no_log"}
        for path in paths.values():
            assert path["probes"] == 12 and path["errors"] == 0, path["error_samples"]
            assert 3.0 <= path["ttft_p50_ms"] <= path["ttft_p99_ms"]  # the prefill comes first
            assert path["reads_per_stream_median"] >= 1
            assert 0 < path["request_leg_p50_ms"] < path["ttft_p50_ms"] and 0 < path["token_leg_p50_ms"]
        for proxy in ("nginx", "sidecar", "sidecar_no_log"):
            assert isinstance(paths[proxy]["added_ttft_p50_ms"], float)
            assert len(paths[proxy]["added_ttft_p50_ms_by_round"]) == 2
            assert isinstance(paths[proxy]["added_request_leg_p50_ms"], float)
            assert isinstance(paths[proxy]["added_token_leg_p50_ms"], float)
        assert isinstance(scenario["sidecar_minus_nginx_added_p99_ms"], float)
        assert set(scenario["goal"]) == {"p50_within_nginx_plus_0_1_ms", "p99_under_1_ms", "met"}
        assert doc["goal_met"][name] is scenario["goal"]["met"]
    assert doc["scenarios"]["loaded"]["background_streams_per_path"] == 2
    # every probe through the logging sidecar was logged, request and response; their tokens counted
    probes = 2 * (2 + 12)
    metrics = doc["sidecar_metrics"]
    assert metrics["events_sent"] >= 2 * probes and metrics["events_dropped"] == 0
    assert metrics["output_tokens"] >= 4 * probes


def test_llm_capture_cpu_small_run_has_cpu_per_completion_and_the_ratio(tmp_path: Path) -> None:
    out = tmp_path / "llm_capture_cpu.json"
    args = ["--completions", "3", "--concurrency", "3", "--rounds", "2", "--tokens", "60", "--interval-ms", "1"]
    args += ["--idle-s", "0.2", "--sink", "file", "--with-redact-none"]
    assert llm_capture_cpu.main([*args, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "llm_capture_cpu" and doc["sink"] == "file"
    assert doc["parameters"]["tokens"] == 60 and len(doc["rounds"]) == 2
    assert set(doc["paths"]) == {"nginx", "sidecar", "sidecar_redact_none", "sidecar_no_log"}
    for path in doc["paths"].values():
        assert path["completions"] == 6 and path["errors"] == 0, path["error_samples"]
        assert path["cpu_ms_per_completion_pooled"] > 0 and path["cpu_us_per_token_pooled"] > 0
        assert len(path["cpu_ms_per_completion_by_round"]) == 2 and path["reads_per_stream_median"] >= 1
    ratio = doc["ratio_sidecar_to_nginx"]
    assert ratio["pooled"] > 0 and len(ratio["by_round"]) == 2
    assert doc["goal"]["ratio_limit"] == 3.0 and doc["goal_met"] is doc["goal"]["met"]
    assert isinstance(doc["capture_cpu_us_per_token"], float) and isinstance(doc["redaction_cpu_us_per_token"], float)
    # every completion (warm-up included) was reassembled and logged: usage counted, two events each
    completions = 3 + 2 * 3
    assert doc["sidecar_metrics"]["output_tokens"] == 60 * completions
    assert doc["sidecar_metrics"]["events_sent"] == 2 * completions
