"""Run every benchmark script in benchmarks/, each in its own process; `make bench` calls this.

A benchmark is a module `benchmarks/<name>.py` that defines `main()` and writes its JSON
to benchmarks/results/. Modules that are tools of the benchmarks rather than benchmarks
(the load generator, the reference server that runs in KServe's venv, the scripted SSE
upstream of the LLM benchmarks, this runner) are
listed in HELPERS and skipped. Each benchmark runs as `python -m benchmarks.<name>` so that
one that fails or hangs cannot take the others down; the runner reports all and exits
non-zero when any failed.

    python -m benchmarks.run_all                  # all of them
    python -m benchmarks.run_all serving_throughput
    python -m benchmarks.run_all --list
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HELPERS = {"__init__", "run_all", "loadgen", "kserve_server", "sse_upstream"}
DEFINES_MAIN = re.compile(r"^def main\(", re.MULTILINE)


def discover() -> list[str]:
    """Names of the benchmark modules, sorted."""
    return sorted(
        p.stem
        for p in HERE.glob("*.py")
        if p.stem not in HELPERS and DEFINES_MAIN.search(p.read_text(errors="replace"))
    )


def run_one(name: str, timeout_s: float) -> tuple[int, float]:
    """(exit status, seconds) of one benchmark; 124 when it ran past timeout_s."""
    start = time.monotonic()
    print(f"=== {name}", flush=True)
    try:
        rc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], cwd=ROOT, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        rc = 124
    return rc, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--list", action="store_true", help="print the benchmarks and exit")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    a = p.parse_args(argv)
    found = discover()
    if a.list:
        print("\n".join(found))
        return 0
    unknown = [n for n in a.names if n not in found]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {found}", file=sys.stderr)
        return 2
    outcomes = {name: run_one(name, a.timeout) for name in (a.names or found)}
    print("=== summary")
    for name, (rc, secs) in outcomes.items():
        print(f"{name:30s} {'ok' if rc == 0 else f'FAILED (exit {rc})':18s} {secs:7.1f}s")
    return 0 if all(rc == 0 for rc, _ in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
