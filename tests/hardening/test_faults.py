"""Faults not covered by tests/logger/test_faults.py (which has the 30 s broker outage, the
sidecar SIGKILL with spool replay and dead HTTP sinks) nor tests/detectors/test_worker.py
(worker SIGKILL mid-window): lean versions of benchmarks/faults.py's scenarios."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.faults import http_sinks, model_server_kill


def test_model_server_killed_behind_the_sidecar_gives_502_json_and_recovers(tmp_path: Path, models_dir) -> None:
    result = model_server_kill(tmp_path, down_s=3.0, rate=10.0)
    assert result["sidecar_alive"]
    down = result["while_down"]
    assert down["requests"] > 0 and set(down["errors"]) <= {"502", "503"} and down["errors"]
    for body in result["error_bodies"].values():
        assert json.loads(body)["error"]  # a clear {"error": ...}
    after = result["after_restart"]
    assert after["requests"] > 0 and after["ok"] == after["requests"], after


def test_failing_http_sinks_do_not_slow_inference_and_memory_stays_bounded(tmp_path: Path, models_dir) -> None:
    """Hanging, 500 and 2 s-per-event sinks against a file sink, same load: every request
    answered 200, none anywhere near the sink timeout (10 s), RSS growth bounded."""
    result = http_sinks(tmp_path, seconds=15.0, rate=15.0)["sidecars"]
    for name, r in result.items():
        assert r["alive"], name
        assert r["errors"] == {} and r["ok"] == r["requests"] > 100, (name, r)
        assert r["max_ms"] < 2000, (name, r)  # logging never waits for a sink (timeout 10 s, slow sink 2 s)
        assert r["rss_mb_max"] < r["rss_mb_first"] + 60, (name, r)
    assert result["returns_500"]["events"]["retried"] > 0  # the failing sink was really tried
    assert result["file_reference"]["events"]["sent"] > 0
