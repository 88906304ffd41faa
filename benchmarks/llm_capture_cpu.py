"""Benchmark: CPU the logger sidecar spends capturing streamed chat completions, against nginx.

Streamed completions of `--tokens` tokens (default 1,000; one SSE chunk per token, one every
`--interval-ms`, from `benchmarks.sse_upstream`) go through the proxies of
`benchmarks.llm_paths`, `--completions` per proxy per round, `--concurrency` at a time each,
all proxies at once: the machine's noise (CPU steal, caches shared with other jobs) then hits
them in the same seconds (`--sequential`: one after the other, the first rotating).

- `nginx`: one worker, `proxy_buffering off` (each chunk passed on as read), no logging;
- `sidecar`: defaults (redaction of the OpenAI paths on): every chunk passed on, then parsed
  and reassembled into one `chat.completion`, redacted, and the request and response events
  built and delivered to the embedded Kafka broker (`--sink file|none` otherwise);
- `sidecar_no_log`: the same sidecar without a sink: the hop alone, so the JSON separates
  proxying from capturing; `--with-redact-none` adds `sidecar_redact_none` (what redaction costs).

The figure is each proxy process's CPU time (all its threads and children: the Kafka
client's threads count, and nginx's worker; /proc schedstat, nanoseconds) over the batch and
a settling pause after it (the sidecar builds a response event up to 5 ms after its stream
ended, and the delivery sends in batches), divided by the completions. Ratio sidecar /
nginx: per round, median over rounds, and pooled (total over total). Each process's idle CPU
rate is measured before the rounds and reported, not subtracted (it is in the figures).
The client counts its reads per stream: about one per chunk means no proxy was handed
chunks in bulk (which would lower its cost per chunk).

Goal (issue 16): sidecar CPU per completion at most 3x nginx's.

    python -m benchmarks.llm_capture_cpu [--completions 16] [--rounds 5] [--tokens 1000]

Writes benchmarks/results/llm_capture_cpu.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks.llm_paths import LLMPaths, add_path_arguments, cpu_seconds, finite, machine, paths_from, run_loop
from benchmarks.sse_client import StreamResult, chat_request, run_streams

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "llm_capture_cpu.json"
GOAL_RATIO = 3.0
GOAL = "sidecar CPU per streamed completion <= 3 x nginx's"
SETTLE_S = 0.3  # after a batch: deferred events (5 ms), delivery batches (linger), then read the CPU


# --- figures (pure: tests/benchmarks/test_llm_benchmarks.py) ---------------------------------


def summarise(rounds: list[dict[str, dict]], tokens: int, idle: dict[str, float]) -> dict:
    """Per proxy the CPU per completion (median of rounds, pooled), the ratios to nginx and the goal."""
    names = list(rounds[0]) if rounds else []
    paths: dict[str, dict] = {}
    for name in names:
        cells = [r[name] for r in rounds]
        completions = sum(c["completions"] for c in cells)
        cpu = sum(c["cpu_s"] for c in cells)
        per_round = [c["cpu_s"] / c["completions"] * 1e3 if c["completions"] else float("nan") for c in cells]
        paths[name] = {
            "completions": completions,
            "errors": sum(c["errors"] for c in cells),
            "error_samples": [s for c in cells for s in c["error_samples"]][:5],
            "cpu_ms_per_completion_by_round": per_round,
            "cpu_ms_per_completion_median_of_rounds": statistics.median(per_round) if per_round else float("nan"),
            "cpu_ms_per_completion_pooled": cpu / completions * 1e3 if completions else float("nan"),
            "cpu_us_per_token_pooled": cpu / (completions * tokens) * 1e6 if completions else float("nan"),
            "wall_s_per_round": [c["wall_s"] for c in cells],
            "reads_per_stream_median": statistics.median(r for c in cells for r in c["reads"])
            if any(c["reads"] for c in cells)
            else None,
            "idle_cpu_ms_per_s": idle.get(name, float("nan")) * 1e3,
        }
    out: dict = {"paths": paths}
    if "nginx" in paths:
        for name in names:
            if name == "nginx":
                continue
            by_round = [
                a / b if b > 0 else float("nan")
                for a, b in zip(
                    paths[name]["cpu_ms_per_completion_by_round"],
                    paths["nginx"]["cpu_ms_per_completion_by_round"],
                    strict=True,
                )
            ]
            ref = paths["nginx"]["cpu_ms_per_completion_pooled"]
            out[f"ratio_{name}_to_nginx"] = {
                "by_round": by_round,
                "median_of_rounds": statistics.median(by_round) if by_round else float("nan"),
                "pooled": paths[name]["cpu_ms_per_completion_pooled"] / ref if ref > 0 else float("nan"),
            }
        if "sidecar" in paths:
            ratio = out["ratio_sidecar_to_nginx"]
            out["goal"] = {
                "ratio_limit": GOAL_RATIO,
                "met": bool(ratio["median_of_rounds"] <= GOAL_RATIO and ratio["pooled"] <= GOAL_RATIO),
            }
        if "sidecar" in paths and "sidecar_no_log" in paths:
            side, bare = paths["sidecar"], paths["sidecar_no_log"]
            out["capture_cpu_ms_per_completion"] = (
                side["cpu_ms_per_completion_pooled"] - bare["cpu_ms_per_completion_pooled"]
            )
            out["capture_cpu_us_per_token"] = side["cpu_us_per_token_pooled"] - bare["cpu_us_per_token_pooled"]
        if "sidecar" in paths and "sidecar_redact_none" in paths:
            out["redaction_cpu_us_per_token"] = (
                paths["sidecar"]["cpu_us_per_token_pooled"] - paths["sidecar_redact_none"]["cpu_us_per_token_pooled"]
            )
    return out


# --- load ------------------------------------------------------------------------------------


def _cell(results: list[StreamResult], tokens: int, cpu_s: float, wall_s: float) -> dict:
    good = [r for r in results if r.ok and r.content_chunks == tokens]
    bad = [r for r in results if not (r.ok and r.content_chunks == tokens)]
    return {
        "completions": len(good),
        "errors": len(bad),
        "error_samples": [
            (r.error or f"status {r.status}, chunks {r.content_chunks}, done {r.done}")[:300] for r in bad
        ][:5],
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "reads": [r.reads for r in good],
    }


async def batch(targets: dict[str, str], pids: dict[str, int], names: list[str], a: argparse.Namespace) -> dict:
    """`a.completions` streams through each proxy of `names` at once (`a.concurrency` each), and
    every proxy's CPU over that same window: machine noise (steal, caches) hits them alike."""
    requests = {name: chat_request(targets[name], a.tokens) for name in names}
    before, t0 = {name: cpu_seconds(pids[name]) for name in names}, time.perf_counter()
    results = await asyncio.gather(
        *(run_streams(targets[name], requests[name], a.completions, a.concurrency) for name in names)
    )
    wall = time.perf_counter() - t0
    await asyncio.sleep(SETTLE_S)
    cpu = {name: cpu_seconds(pids[name]) - before[name] for name in names}
    return {name: _cell(got, a.tokens, cpu[name], wall) for name, got in zip(names, results, strict=True)}


async def measure(paths: LLMPaths, names: list[str], a: argparse.Namespace) -> tuple[list[dict[str, dict]], dict]:
    targets, pids = paths.targets, paths.pids
    for name in names:  # warm-up: connections, the sidecars' first events, nginx's pool
        await run_streams(targets[name], chat_request(targets[name], a.tokens), a.concurrency, a.concurrency)
    await asyncio.sleep(1.0)
    idle_before = {name: cpu_seconds(pids[name]) for name in names}
    await asyncio.sleep(a.idle_s)
    idle = {name: (cpu_seconds(pids[name]) - idle_before[name]) / a.idle_s for name in names}
    rounds = []
    for r in range(a.rounds):
        if a.sequential:  # one proxy after the other, the first rotating
            k = r % len(names)
            cells = {}
            for name in names[k:] + names[:k]:
                cells.update(await batch(targets, pids, [name], a))
        else:
            cells = await batch(targets, pids, names, a)
        rounds.append({name: cells[name] for name in names})
        print(
            f"round {r + 1}: "
            + "  ".join(
                f"{name} {c['cpu_s'] / max(c['completions'], 1) * 1e3:.1f} ms/completion"
                + (f" ({c['errors']} errors)" if c["errors"] else "")
                for name, c in rounds[-1].items()
            ),
            flush=True,
        )
    return rounds, idle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--completions", type=int, default=16, help="per proxy per round")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tokens", type=int, default=1000, help="tokens (SSE chunks) per completion")
    p.add_argument("--interval-ms", type=float, default=5.0, help="upstream time between tokens")
    p.add_argument("--first-token-ms", type=float, default=5.0)
    p.add_argument("--idle-s", type=float, default=2.0, help="how long the idle CPU rate is measured")
    p.add_argument("--sequential", action="store_true", help="proxies one after the other (default: all at once)")
    add_path_arguments(p)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    with paths_from(a) as paths:
        names: list[str] = [n for n in ("nginx", "sidecar", "sidecar_redact_none", "sidecar_no_log") if n in paths.pids]
        rounds, idle = run_loop(measure(paths, names, a))
        summary = summarise(rounds, a.tokens, idle)
        doc = {
            "benchmark": "llm_capture_cpu",
            "what": "CPU of the logger sidecar process per streamed chat completion vs nginx passing the same stream",
            "upstream": "benchmarks.sse_upstream: one SSE chunk per token, one write each, chunked encoding",
            "cpu": "time on CPU of the proxy process, its threads and children (/proc schedstat), each batch + settle",
            "sink": a.sink,
            "sidecar_extra_args": a.sidecar_arg,
            "sidecar": "defaults: --redact openai (on for these paths), log mode all, stream reassembled per event",
            "parameters": {
                "completions_per_proxy_per_round": a.completions,
                "concurrency": a.concurrency,
                "rounds": a.rounds,
                "tokens": a.tokens,
                "interval_ms": a.interval_ms,
                "first_token_ms": a.first_token_ms,
                "settle_s": SETTLE_S,
                "idle_s": a.idle_s,
                "order": "proxies one after another per round, the first rotating"
                if a.sequential
                else "all proxies at once, each its own streams, CPU read over the same window",
            },
            "goal": GOAL,
            "goal_met": summary.get("goal", {}).get("met"),
            "sidecar_metrics": paths.settled_sidecar_metrics() if "sidecar" in paths.pids else {},
            "proxy_upstream_log_lines": {
                "sidecar": paths.log_lines("sidecar", "upstream"),
                "nginx": paths.log_lines("error", "upstream"),
            },
            "machine": machine(),
            **summary,
            "rounds": rounds,
        }
    for cell in doc["rounds"]:
        for c in cell.values():
            c.pop("reads", None)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(finite(doc), indent=2, allow_nan=False) + "\n")
    ratio = summary.get("ratio_sidecar_to_nginx", {})
    print(f"ratio sidecar/nginx CPU per completion: {ratio} goal met: {doc['goal_met']}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
