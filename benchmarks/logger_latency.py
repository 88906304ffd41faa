"""Benchmark 1: latency the logger sidecar adds, beside nginx as a plain reverse proxy.

Three paths to the same upstream (the real model server with the iris model), measured in
one run, interleaved round by round so machine noise hits all three alike:

- direct: client -> model server
- sidecar: client -> `python -m infertap.sidecar` (logging every request/response to Kafka on the
  embedded broker, or to a file with --sink file) -> model server
- nginx: client -> nginx (Debian `nginx-light`, one worker process as the sidecar has one,
  keep-alive upstream pool expiring idle connections after 4 s as the sidecar does) -> model server

A failed request does not abort the run: it is counted per path with its status and body
(the sidecar answers JSON `{"error"}`, nginx an HTML page), and the proxies' log lines about
the upstream go into the JSON.

Load: an aiohttp client (one pooled session per path), closed loop at concurrency 1 and
16, per-request latency with `perf_counter`, path by path in rounds; concurrency 1 once more
with the paths taking turns request by request (`concurrency_1_interleaved`: noise on this
shared 2-core VM drifts faster than a round of a few hundred requests, so these figures are
steadier, but every process idles a few ms between its requests and wakes up colder). Added latency = p50 (p99) of a path minus the
direct p50 (p99), over all rounds pooled; also per round (a path's p50 minus direct's p50 in
the same round) with the median over rounds, which drifting machine noise moves less.
Goal: sidecar added p50 within 1.5x of nginx's added p50.

    python -m benchmarks.logger_latency [--requests 2000] [--rounds 5] [--sink kafka|file|none]

Writes benchmarks/results/logger_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from benchmarks.processes import free_port, start, stop, wait_http

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "logger_latency.json"
BODY = json.dumps({"instances": [[6.8, 2.8, 4.8, 1.4]]}).encode()
NGINX_CONF = """
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  # keepalive_timeout below uvicorn's 5 s, as the sidecar's --upstream-keepalive: nginx does
  # not resend a POST whose cached connection the model server closed (502 otherwise)
  upstream model {{ server 127.0.0.1:{upstream}; keepalive 64; keepalive_timeout 4s; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://model;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # as the sidecar (and KServe's agent, Go's ReverseProxy) do: the same request reaches
      # the model server through both proxies (uvicorn reads the header: ~10 us there)
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
    }}
  }}
}}
"""


def ensure_nginx() -> str:
    found = shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx")
    if not found:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "nginx-light"], check=True)
        found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found


async def one_round(
    session: aiohttp.ClientSession, url: str, n: int, concurrency: int, errors: list[str] | None = None
) -> list[float]:
    """n requests, `concurrency` in flight; per-request latencies in seconds. A failed request
    is recorded in `errors` (status and body: which proxy answered it) and not timed."""
    latencies: list[float] = []
    errors = [] if errors is None else errors
    remaining = n
    headers = {"content-type": "application/json"}

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=BODY, headers=headers) as r:
                    body = await r.read()
                    status = r.status
            except aiohttp.ClientError as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            if status != 200:
                errors.append(f"HTTP {status}: {body[:200]!r}")
                continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def interleaved_round(
    sessions: dict[str, aiohttp.ClientSession], targets: dict[str, str], n: int, errors: dict[str, list[str]]
) -> dict[str, list[float]]:
    """Concurrency 1, paths interleaved request by request (the starting path rotating), so
    that every path meets the same moment-to-moment machine noise; n requests per path."""
    names = list(targets)
    out: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            out[name] += await one_round(sessions[name], targets[name], 1, 1, errors[name])
    return out


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (all threads), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def ratio_ci(sidecar: list[float], nginx: list[float], draws: int = 2000, seed: int = 0) -> list[float] | None:
    """95 % bootstrap interval of median(sidecar) / median(nginx) over the rounds (rounds
    resampled in pairs, as they were measured in the same minute): how far the ratio would
    move if the run were repeated with the same noise."""
    pairs = [(a, b) for a, b in zip(sidecar, nginx, strict=True) if a == a and b == b]  # NaN: a round without answers
    if len(pairs) < 3:
        return None
    rng = random.Random(seed)
    ratios = []
    for _ in range(draws):
        sample = [rng.choice(pairs) for _ in pairs]
        denominator = statistics.median(b for _, b in sample)
        if denominator > 0:
            ratios.append(statistics.median(a for a, _ in sample) / denominator)
    if len(ratios) < draws // 2:
        return None
    ratios.sort()
    return [ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios)) - 1]]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def measure(
    targets: dict[str, str], concurrency: int, n: int, rounds: int, pids: dict[str, int], interleave: bool = False
) -> dict[str, dict]:
    conn = {"limit": concurrency * 2, "keepalive_timeout": 60}
    sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(**conn)) for name in targets}
    try:
        for name, url in targets.items():  # warm-up: connections, JIT-free but caches and pools
            await one_round(sessions[name], url, max(200, n // 10), concurrency)
        samples: dict[str, list[float]] = {name: [] for name in targets}
        round_p50: dict[str, list[float]] = {name: [] for name in targets}
        errors: dict[str, list[str]] = {name: [] for name in targets}
        cpu = dict.fromkeys(targets, 0.0)
        for r in range(rounds):
            if interleave:
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                got_all = await interleaved_round(sessions, targets, n, errors)
                for name, got in got_all.items():
                    samples[name] += got
                    round_p50[name].append(pct(got, 0.50) if got else float("nan"))
                for name, pid in pids.items():
                    cpu[name] += cpu_seconds(pid) - before[name]
                continue
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for name in order:
                before = cpu_seconds(pids[name]) if name in pids else 0.0
                got = await one_round(sessions[name], targets[name], n, concurrency, errors[name])
                samples[name] += got
                round_p50[name].append(pct(got, 0.50) if got else float("nan"))
                if name in pids:
                    cpu[name] += cpu_seconds(pids[name]) - before
    finally:
        for s in sessions.values():
            await s.close()
    out = {}
    for name, lat in samples.items():
        out[name] = {
            "requests": len(lat),
            "p50_ms": pct(lat, 0.50) * 1e3,
            "p99_ms": pct(lat, 0.99) * 1e3,
            "mean_ms": statistics.fmean(lat) * 1e3,
            "errors": len(errors[name]),
            "error_samples": errors[name][:5],
        }
        if name in pids:  # CPU the proxy process itself spent per request: robust to a busy machine
            out[name]["proxy_cpu_ms_per_request"] = cpu[name] / len(lat) * 1e3
    for name in targets:
        if name == "direct":
            continue
        for q in ("p50", "p99"):
            out[name][f"added_{q}_ms"] = out[name][f"{q}_ms"] - out["direct"][f"{q}_ms"]
        # paired by round (the same minute of machine noise), then the median over rounds:
        # steadier than one difference of pooled p50s when the noise drifts between rounds
        per_round = [(a - b) * 1e3 for a, b in zip(round_p50[name], round_p50["direct"], strict=True)]
        out[name]["added_p50_ms_by_round"] = per_round
        out[name]["added_p50_ms_median_of_rounds"] = statistics.median(per_round)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=300, help="per path, per round")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    p.add_argument("--sink", choices=["kafka", "file", "none"], default="kafka")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="infertap-bench-"))
    procs: list[subprocess.Popen] = []
    broker = None
    try:
        model_port, sidecar_port, nginx_port = free_port(), free_port(), free_port()
        model = start(
            [
                sys.executable,
                "-m",
                "infertap.serving",
                "--model-name",
                "iris",
                "--model-format",
                "sklearn",
                "--storage-uri",
                str(ROOT / "models" / "sklearn-iris"),
                "--http-port",
                str(model_port),
                "--max-batch-wait-ms",
                "0",
                "--log-level",
                "warning",
            ],
            work / "model.log",
        )
        procs.append(model)
        log_urls: list[str] = []
        if a.sink == "kafka":
            from infertap.stack.broker import EmbeddedBroker

            broker = EmbeddedBroker(port=free_port(), log_path=work / "broker.log").start()
            log_urls = [f"kafka://{broker.bootstrap}/iris-bench-events"]
        elif a.sink == "file":
            log_urls = [f"file://{work}/events.jsonl?max_bytes=104857600&backups=1"]
        sidecar_args = [
            sys.executable,
            "-m",
            "infertap.sidecar",
            "--port",
            str(sidecar_port),
            "--component-port",
            str(model_port),
            "--inference-service",
            "iris",
            "--spool-dir",
            str(work / "spool"),
        ]
        for u in log_urls:
            sidecar_args += ["--log-url", u]
        sidecar = start(sidecar_args, work / "sidecar.log")
        procs.append(sidecar)
        # the same sidecar without --log-url: what the proxy hop alone costs, so the JSON
        # separates proxying from logging
        bare_port = free_port()
        bare_args = [
            sys.executable,
            "-m",
            "infertap.sidecar",
            "--port",
            str(bare_port),
            "--component-port",
            str(model_port),
            "--inference-service",
            "iris",
        ]
        bare = start(bare_args, work / "sidecar-no-log.log") if log_urls else None
        if bare is not None:
            procs.append(bare)
        user = "user root;" if os.geteuid() == 0 else ""
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, dir=work, upstream=model_port, port=nginx_port))
        nginx = start([ensure_nginx(), "-p", str(work), "-c", str(conf), "-g", "daemon off;"], work / "nginx.out")
        procs.append(nginx)
        wait_http(f"http://127.0.0.1:{model_port}/v2/health/ready", model)
        wait_http(f"http://127.0.0.1:{sidecar_port}/infertap/metrics", sidecar)
        wait_http(f"http://127.0.0.1:{nginx_port}/v2/health/ready", nginx)
        if bare is not None:
            wait_http(f"http://127.0.0.1:{bare_port}/infertap/metrics", bare)

        path = "/v1/models/iris:predict"
        targets = {
            "direct": f"http://127.0.0.1:{model_port}{path}",
            "sidecar": f"http://127.0.0.1:{sidecar_port}{path}",
            "nginx": f"http://127.0.0.1:{nginx_port}{path}",
        }
        pids = {"sidecar": sidecar.pid, "nginx": nginx.pid}
        if bare is not None:
            targets["sidecar_no_log"] = f"http://127.0.0.1:{bare_port}{path}"
            pids["sidecar_no_log"] = bare.pid
        results = {}
        # concurrency 1 twice: back to back (each path's requests in a block per round: the
        # processes stay hot) and interleaved (paths take turns request by request: steady
        # figures, but each process idles ~3 ms between its requests and wakes up colder)
        runs = [(c, False) for c in a.concurrency] + ([(1, True)] if 1 in a.concurrency else [])
        for c, interleave in runs:
            r = asyncio.run(measure(targets, c, a.requests, a.rounds, pids, interleave))
            nginx_added = r["nginx"]["added_p50_ms"]
            r["ratio_sidecar_to_nginx_added_p50"] = (
                r["sidecar"]["added_p50_ms"] / nginx_added if nginx_added > 0 else None
            )
            nginx_rounds = r["nginx"]["added_p50_ms_median_of_rounds"]
            r["ratio_sidecar_to_nginx_added_p50_median_of_rounds"] = (
                r["sidecar"]["added_p50_ms_median_of_rounds"] / nginx_rounds if nginx_rounds > 0 else None
            )
            r["ratio_median_of_rounds_ci95"] = ratio_ci(
                r["sidecar"]["added_p50_ms_by_round"], r["nginx"]["added_p50_ms_by_round"]
            )
            r["ratio_sidecar_to_nginx_cpu_per_request"] = r["sidecar"]["proxy_cpu_ms_per_request"] / max(
                r["nginx"]["proxy_cpu_ms_per_request"], 1e-9
            )
            if "sidecar_no_log" in r:
                r["ratio_sidecar_no_log_to_nginx_added_p50"] = (
                    r["sidecar_no_log"]["added_p50_ms"] / nginx_added if nginx_added > 0 else None
                )
                r["logging_cpu_ms_per_request"] = (
                    r["sidecar"]["proxy_cpu_ms_per_request"] - r["sidecar_no_log"]["proxy_cpu_ms_per_request"]
                )
            key = f"concurrency_{c}" + ("_interleaved" if interleave else "")
            results[key] = r
            print(
                f"{key}: "
                + "  ".join(
                    f"{k} p50 {v['p50_ms']:.3f} ms p99 {v['p99_ms']:.3f} ms"
                    for k, v in r.items()
                    if isinstance(v, dict)
                )
                + f"  ratio {r['ratio_sidecar_to_nginx_added_p50']}"
                + f" (median of rounds {r['ratio_sidecar_to_nginx_added_p50_median_of_rounds']},"
                + f" 95 % interval {r['ratio_median_of_rounds_ci95']})"
                + f"  cpu/req sidecar {r['sidecar']['proxy_cpu_ms_per_request']:.3f} ms"
                + f" nginx {r['nginx']['proxy_cpu_ms_per_request']:.3f} ms",
                flush=True,
            )
        metrics = httpx.get(f"http://127.0.0.1:{sidecar_port}/infertap/metrics").text
        sent = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("infertap_logger_events_total{") and 'outcome="sent"' in line
        )
        doc = {
            "benchmark": "logger_latency",
            "what": "added latency of the logger sidecar vs nginx as a plain reverse proxy, same upstream",
            "upstream": "serving sklearn iris, POST /v1/models/iris:predict, 1 row",
            "sink": a.sink,
            "log_mode": "all",
            "events_sent_by_sidecar": sent,
            "requests_per_path_per_round": a.requests,
            "rounds": a.rounds,
            "goal": "sidecar added p50 <= 1.5 x nginx added p50",
            "load_average_at_end": os.getloadavg(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "results": results,
        }
        doc["proxy_upstream_log_lines"] = {
            "sidecar": [
                line for line in (work / "sidecar.log").read_text(errors="replace").splitlines() if "upstream" in line
            ][:20],
            "nginx": [
                line for line in (work / "error.log").read_text(errors="replace").splitlines() if "upstream" in line
            ][:20]
            if (work / "error.log").exists()
            else [],
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {a.out}")
    finally:
        for proc in reversed(procs):
            stop(proc)
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
