"""What the explainer benchmarks share: child servers that are always stopped, timing, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path

from benchmarks.processes import free_port, start, stop, wait_http

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ROOT / "models"


class Child:
    """A server child process (own process group), waited on until its ready URL answers 200."""

    def __init__(self, args: list[str], ready_url: str, log: Path, timeout: float = 300.0):
        self.log = log
        self.proc = start(args, log)
        try:
            wait_http(ready_url, self.proc, timeout, log)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop(self.proc, grace=10)


def model_server(tmp: Path, name: str, fmt: str) -> tuple[Child, str]:
    port = free_port()
    child = Child(
        [
            sys.executable,
            "-m",
            "infertap.serving",
            "--model-name",
            name,
            "--model-format",
            fmt,
            "--storage-uri",
            str(MODELS / name),
            "--http-port",
            str(port),
        ],
        f"http://127.0.0.1:{port}/v2/health/ready",
        tmp / f"serving-{name}.log",
    )
    return child, f"http://127.0.0.1:{port}"


def summary(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {
        "n": len(ordered),
        "median_ms": 1000 * statistics.median(ordered),
        "p90_ms": 1000 * ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "min_ms": 1000 * ordered[0],
    }


def environment() -> dict:
    import numpy

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "numpy": numpy.__version__,
    }


def write(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return path
