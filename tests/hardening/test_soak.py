"""The soak of benchmarks/soak.py, 2 minutes: whole stack (broker, model server, logger
sidecar, two detector workers in one group, explainer stream sampling), steady load, RSS of
every process sampled every 10 s within the bound, events produced = events consumed."""

from __future__ import annotations

from pathlib import Path

from benchmarks.soak import soak


def test_two_minute_soak_holds_memory_and_loses_no_event(tmp_path: Path, models_dir) -> None:
    report = soak(minutes=2.0, rate=10.0, every=10.0, work=tmp_path)
    summary = {k: v for k, v in report.items() if k != "samples"}
    assert report["errors"] == 0, summary
    assert report["events_produced"] == 2 * report["ok"], summary  # the sidecar delivered every event
    assert report["produced_equals_consumed"], summary  # the workers consumed all but what sits in open windows
    print({name: (r["first_quarter_mean_mb"], r["last_quarter_mean_mb"]) for name, r in report["rss"].items()})
    assert report["all_within_bound"], summary["rss"]
