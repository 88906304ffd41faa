"""Serving throughput and latency: infertap's model server against KServe's Python ModelServer.

Both servers run the same iris joblib model (examples/build_models.py) on loopback, one
worker process each, at the same time; the load generator (benchmarks/loadgen.py) runs as
a third process and drives one of them at a time. For V1 (`{"instances": [[4 floats]]}`) and
V2 (one FP32 [1, 4] tensor) at concurrency 1, 8 and 32 it measures throughput and p50/p99
latency, alternating which server goes first from round to round so that drift in the
machine's load falls on both. Results, per round and combined, with the ratios
infertap / kserve, go to benchmarks/results/serving_throughput.json.

KServe needs its own virtual environment (its pins conflict with ours). `ensure_kserve_venv`
creates `.venv-kserve` once, with a pinned kserve and the scikit-learn, joblib and numpy
versions of this interpreter so that the same model file loads in both.

    python -m benchmarks.serving_throughput [--duration 4] [--rounds 3] [--concurrency 1 8 32] [--kserve-quiet]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.processes import free_port as _free_port
from benchmarks.processes import stop as stop_child
from benchmarks.processes import wait_http

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "serving_throughput.json"
KSERVE_VENV = ROOT / ".venv-kserve"
KSERVE_VERSION = "0.21.0"  # newest on PyPI when this was written (2026-11)
MODEL_NAME = "sklearn-iris"
ROW = [6.8, 2.8, 4.8, 1.4]  # an iris versicolor: class 1
PAYLOADS = {
    "v1": (f"/v1/models/{MODEL_NAME}:predict", {"instances": [ROW]}),
    "v2": (
        f"/v2/models/{MODEL_NAME}/infer",
        {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": ROW}]},
    ),
}
SERVERS = ("infertap", "kserve")
# KServe with its per-request log lines off (uvicorn access log, latency log): optional third server.
KSERVE_QUIET_FLAGS = ["--enable_latency_logging", "false", "--configure_logging", "false"]


# ---------------------------------------------------------------------------- environment


def _pins() -> list[str]:
    """kserve plus the model's libraries at exactly this interpreter's versions."""
    from importlib.metadata import version

    return [
        f"kserve=={KSERVE_VERSION}",
        f"scikit-learn=={version('scikit-learn')}",
        f"joblib=={version('joblib')}",
        f"numpy=={version('numpy')}",
    ]


def ensure_kserve_venv(venv: Path = KSERVE_VENV) -> Path:
    """Create (once) the reference server's virtual environment; returns its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    pins = "\n".join(_pins())
    if stamp.exists() and stamp.read_text() == pins and python.exists():
        return python
    print(f"installing the reference server into {venv} ({', '.join(_pins())}) ...", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *_pins()], check=True)
    stamp.write_text(pins)
    return python


def _machine() -> dict:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": list(os.getloadavg()),
    }


def _versions(python: Path, packages: list[str]) -> dict:
    code = f"import json, importlib.metadata as m; print(json.dumps({{p: m.version(p) for p in {packages!r}}}))"
    try:
        return json.loads(
            subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
        )
    except (subprocess.SubprocessError, ValueError) as exc:
        return {"error": str(exc)}


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# ---------------------------------------------------------------------------- processes


def _pin_to(cpus: set[int] | None):
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


class Server:
    """One model server child process, its log in a file, always stopped."""

    def __init__(self, name: str, args: list[str], port: int, log: Path, cpus: set[int] | None):
        self.name, self.args, self.port, self.log = name, args, port, log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_pin_to(cpus),
            )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def wait_ready(self, timeout: float = 120.0) -> None:
        wait_http(f"{self.base}/v2/models/{MODEL_NAME}/ready", self.proc, timeout, self.log)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all its threads), from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def post(self, path: str, payload: dict) -> dict:
        req = urllib.request.Request(
            self.base + path, data=json.dumps(payload).encode(), headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        stop_child(self.proc, grace=10)


def start_servers(
    model_dir: Path, logs: Path, server_cpus: set[int] | None, kserve_quiet: bool = False
) -> dict[str, Server]:
    """infertap's server from this interpreter, KServe's from its venv (twice with kserve_quiet:
    as shipped and with per-request logging off); all ready on return."""
    kserve_python = ensure_kserve_venv()
    servers: dict[str, Server] = {}
    try:
        port = _free_port()
        servers["infertap"] = Server(
            "infertap",
            [
                sys.executable,
                "-m",
                "infertap.serving",
                "--model-name",
                MODEL_NAME,
                "--model-format",
                "sklearn",
                "--storage-uri",
                str(model_dir),
                "--http-port",
                str(port),
            ],
            port,
            logs / "infertap.log",
            server_cpus,
        )
        for name, extra in [("kserve", []), *([("kserve_quiet", KSERVE_QUIET_FLAGS)] if kserve_quiet else [])]:
            port = _free_port()
            servers[name] = Server(
                name,
                [
                    str(kserve_python),
                    str(ROOT / "benchmarks" / "kserve_server.py"),
                    "--model_name",
                    MODEL_NAME,
                    "--model_dir",
                    str(model_dir),
                    "--http_port",
                    str(port),
                    "--workers",
                    "1",
                    "--enable_grpc",
                    "false",
                    *extra,
                ],
                port,
                logs / f"{name}.log",
                server_cpus,
            )
        for s in servers.values():
            s.wait_ready()
    except BaseException:
        for s in servers.values():
            s.stop()
        raise
    return servers


def check_answers(servers: dict[str, Server]) -> dict:
    """Both servers must give the same, right answer before their speed means anything."""
    answers = {}
    for proto, (path, payload) in PAYLOADS.items():
        for name, s in servers.items():
            reply = s.post(path, payload)
            label = reply["predictions"][0] if proto == "v1" else reply["outputs"][0]["data"][0]
            if label != 1:
                raise RuntimeError(f"{name} {proto} answered {reply!r}, expected class 1")
            answers[f"{name}/{proto}"] = reply
    return answers


def run_loadgen(url: str, body: dict, concurrency: int, duration: float, warmup: float, cpus: set[int] | None) -> dict:
    """One load run in its own process (never in a server's interpreter)."""
    args = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        "--url",
        url,
        "--body",
        json.dumps(body),
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    out = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=duration + warmup + 60, preexec_fn=_pin_to(cpus)
    )
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout)


# ---------------------------------------------------------------------------- the benchmark


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def _combine(runs: list[dict]) -> dict:
    """One figure per server and cell: the median over rounds (robust to one disturbed round)."""
    return {
        "throughput_rps": _median(r["throughput_rps"] for r in runs),
        "latency_ms": {q: _median(r["latency_ms"][q] for r in runs) for q in ("p50", "p99", "mean")},
        "cpu_us_per_request": _median(r["cpu_us_per_request"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }


def _ratios(a: dict, b: dict) -> dict:
    def div(x, y):
        return round(x / y, 3) if x is not None and y else None

    return {
        "throughput": div(a["throughput_rps"], b["throughput_rps"]),
        "p50": div(a["latency_ms"]["p50"], b["latency_ms"]["p50"]),
        "p99": div(a["latency_ms"]["p99"], b["latency_ms"]["p99"]),
        "cpu_per_request": div(a["cpu_us_per_request"], b["cpu_us_per_request"]),
    }


def run(
    duration: float = 4.0,
    warmup: float = 1.0,
    rounds: int = 3,
    concurrency: tuple[int, ...] = (1, 8, 32),
    protocols: tuple[str, ...] = ("v1", "v2"),
    pin: bool = True,
    model_dir: Path | None = None,
    out: Path = RESULTS,
    kserve_quiet: bool = False,
) -> dict:
    """Run every cell, write the JSON, return it."""
    model_dir = model_dir or ROOT / "models" / MODEL_NAME
    if not (model_dir / "model.joblib").exists():
        raise SystemExit(f"{model_dir}/model.joblib missing: run `make models` first")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    # Servers on one core, the load generator on another: each server gets the same whole core.
    server_cpus, client_cpus = ({cpus[0]}, set(cpus[1:])) if pin and len(cpus) >= 2 else (None, None)
    result = {
        "benchmark": "serving_throughput",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": _git_commit(),
        "machine": _machine(),
        "setup": {
            "model": f"{MODEL_NAME} (scikit-learn LogisticRegression, joblib)",
            "row": ROW,
            "payloads": {k: v[1] for k, v in PAYLOADS.items()},
            "duration_s": duration,
            "warmup_s": warmup,
            "rounds": rounds,
            "workers": 1,
            "server_cpus": sorted(server_cpus or []),
            "loadgen_cpus": sorted(client_cpus or []),
            "loadgen": "benchmarks/loadgen.py: closed loop, one keep-alive HTTP/1.1 connection per worker",
            "combined": "per server and cell, the median over rounds of throughput, p50, p99 and server CPU "
            "time per request (CPU time of the server process / replies, warm-up included)",
            "kserve_flags": "--workers 1 --enable_grpc false, other flags KServe defaults "
            "(access log and latency log lines on)",
            "kserve_quiet_flags": " ".join(KSERVE_QUIET_FLAGS) if kserve_quiet else None,
        },
        "cells": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        servers = start_servers(model_dir, Path(tmp), server_cpus, kserve_quiet)
        names = tuple(servers)
        try:
            result["versions"] = {
                "infertap": _versions(Path(sys.executable), ["fastapi", "uvicorn", "scikit-learn", "numpy"]),
                "kserve": _versions(
                    Path(servers["kserve"].args[0]), ["kserve", "fastapi", "uvicorn", "scikit-learn", "numpy"]
                ),
            }
            result["answers"] = check_answers(servers)
            n = 0
            for proto in protocols:
                path, body = PAYLOADS[proto]
                for c in concurrency:
                    runs = {name: [] for name in names}
                    for r in range(rounds):
                        shift = (r + n) % len(names)  # each server leads in turn
                        order = names[shift:] + names[:shift]
                        for name in order:
                            cpu0 = servers[name].cpu_seconds()
                            got = run_loadgen(servers[name].base + path, body, c, duration, warmup, client_cpus)
                            # CPU per reply: the server's cost, whatever else the machine is doing.
                            got["server_cpu_s"] = round(servers[name].cpu_seconds() - cpu0, 3)
                            got["cpu_us_per_request"] = round(
                                got["server_cpu_s"] / max(1, got["replies_total"]) * 1e6, 1
                            )
                            runs[name].append(got)
                            for s in servers.values():
                                if s.proc.poll() is not None:
                                    raise RuntimeError(f"{s.name} died:\n{s.tail()}")
                    n += 1
                    combined = {name: _combine(runs[name]) for name in names}
                    cell = {
                        "protocol": proto,
                        "concurrency": c,
                        **combined,
                        **{
                            f"ratio_infertap_over_{ref}": _ratios(combined["infertap"], combined[ref])
                            for ref in names[1:]
                        },
                        "rounds": {
                            name: [
                                {
                                    k: r[k]
                                    for k in (
                                        "requests",
                                        "errors",
                                        "duration_s",
                                        "throughput_rps",
                                        "latency_ms",
                                        "cpu_us_per_request",
                                        "error_samples",
                                    )
                                }
                                for r in runs[name]
                            ]
                            for name in names
                        },
                    }
                    result["cells"].append(cell)
                    _print_cell(cell)
        finally:
            for s in servers.values():
                s.stop()
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["summary"] = _summary(result["cells"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    tmp_out.replace(out)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return result


def _summary(cells: list[dict]) -> dict:
    """Goal from the issue: infertap at least equal to KServe in throughput and latency."""
    out = {"goal": "throughput ratio >= 1 and p50, p99 ratios <= 1 in every cell", "cells": len(cells)}
    for key in [k for k in cells[0] if k.startswith("ratio_infertap_over_")] if cells else []:
        ratios = [c[key] for c in cells]
        met = [
            r["throughput"] is not None and r["throughput"] >= 1.0 and r["p50"] <= 1.0 and r["p99"] <= 1.0
            for r in ratios
        ]
        thr = [r["throughput"] for r in ratios if r["throughput"] is not None]
        ref = key.removeprefix("ratio_infertap_over_")
        out[ref] = {
            "cells_meeting_goal": sum(met),
            "throughput_ratio_min": min(thr, default=None),
            "throughput_ratio_max": max(thr, default=None),
        }
    return out


def _print_cell(c: dict) -> None:
    def num(v, width: int = 6, digits: int = 1) -> str:
        return f"{v:{width}.{digits}f}" if v is not None else " " * (width - 1) + "-"

    def fig(name: str) -> str:
        x = c[name]
        err = f" ERRORS {x['errors']}" if x["errors"] else ""
        return (
            f"{name} {num(x['throughput_rps'], 7)} rps p50 {num(x['latency_ms']['p50'], 6, 2)} "
            f"p99 {num(x['latency_ms']['p99'], 6, 2)} ms cpu {num(x['cpu_us_per_request'], 5, 0)} us/req{err}"
        )

    refs = [k.removeprefix("ratio_infertap_over_") for k in c if k.startswith("ratio_infertap_over_")]
    ratios = " ".join(
        f"[/{ref}: " + " ".join(f"{k} {v}" for k, v in c["ratio_infertap_over_" + ref].items()) + "]" for ref in refs
    )
    print(
        f"{c['protocol']} c={c['concurrency']:<3} {fig('infertap')} | "
        + " | ".join(fig(ref) for ref in refs)
        + f"\n        {ratios}",
        flush=True,
    )


def markdown_table(result: dict) -> str:
    """README tables of a result: one per reference server, one row per protocol and concurrency."""
    refs = [k.removeprefix("ratio_infertap_over_") for k in result["cells"][0] if k.startswith("ratio_infertap_over_")]

    def fig(x: dict) -> str:
        return (
            f"{x['throughput_rps']:.0f} / {x['latency_ms']['p50']:.2f} / {x['latency_ms']['p99']:.1f} / "
            f"{x['cpu_us_per_request']:.0f}"
        )

    tables = []
    for ref in refs:
        rows = [
            f"| protocol | c | infertap rps / p50 ms / p99 ms / CPU us | {ref} rps / p50 ms / p99 ms / CPU us "
            "| throughput ratio | p50 ratio | p99 ratio | CPU ratio |",
            "|" + " --- |" * 8,
        ]
        for c in result["cells"]:
            r = c["ratio_infertap_over_" + ref]
            rows.append(
                f"| {c['protocol'].upper()} | {c['concurrency']} | {fig(c['infertap'])} | {fig(c[ref])} | "
                + " | ".join(f"{r[k]:.2f}" for k in ("throughput", "p50", "p99", "cpu_per_request"))
                + " |"
            )
        tables.append("\n".join(rows))
    return "\n\n".join(tables)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per server, cell and round")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=3, help="rounds per cell; the servers lead in turn")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--protocol", choices=sorted(PAYLOADS), nargs="+", default=["v1", "v2"])
    p.add_argument("--no-pin", action="store_true", help="do not pin servers and load generator to separate cores")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--kserve-quiet",
        action="store_true",
        help="also run KServe with its per-request log lines off, as a third server",
    )
    p.add_argument("--install-reference-only", action="store_true", help="create .venv-kserve and exit")
    p.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    a = p.parse_args(argv)
    if a.table:
        print(markdown_table(json.loads(a.out.read_text())))
        return 0
    if a.install_reference_only:
        ensure_kserve_venv()
        return 0
    run(
        a.duration,
        a.warmup,
        a.rounds,
        tuple(a.concurrency),
        tuple(a.protocol),
        not a.no_pin,
        out=a.out,
        kserve_quiet=a.kserve_quiet,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
