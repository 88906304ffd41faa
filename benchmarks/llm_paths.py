"""The paths a streamed chat completion takes in the LLM benchmarks (a tool module, not a benchmark).

One scripted upstream (`benchmarks.sse_upstream`) and, in front of it:

- `direct`: nothing (the client talks to the upstream);
- `nginx`: Debian's nginx-light, one worker, configured as `benchmarks.logger_latency` does
  (keep-alive upstream pool, `proxy_buffering off`, which is how nginx is set up for SSE: each
  read from the upstream is written to the client at once);
- `sidecar`: `python -m infertap.sidecar` with its defaults (so redaction of the OpenAI paths is
  on, `--redact openai`), logging every request and response event to the sink chosen:
  `kafka` (the embedded broker, as `logger_latency`; the default), `file` or `none`;
- `sidecar_no_log`: the same sidecar without `--log-url` (no capture, no event): what the hop
  alone costs, so the figures separate proxying from capturing (only when a sink is set);
- variants, on request: more logging sidecars differing in one flag (`sidecar_redact_none`:
  `--redact none`), so that what that setting costs is measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from benchmarks.logger_latency import NGINX_CONF, ensure_nginx
from benchmarks.processes import free_port, start, stop, wait_http

if TYPE_CHECKING:
    from infertap.stack.broker import EmbeddedBroker

T = TypeVar("T")

__all__ = ["CHAT_PATH", "INFERENCE_SERVICE", "LLMPaths", "cpu_seconds", "finite", "machine", "run_loop"]

CHAT_PATH = "/v1/chat/completions"  # vLLM's; `/openai/v1/...` (KServe's) is the same to every path
INFERENCE_SERVICE = "llm-bench"


def add_path_arguments(p: argparse.ArgumentParser) -> None:
    """The flags both LLM benchmarks take for the paths they start (sink, bare sidecar, variants)."""
    p.add_argument("--sink", choices=["kafka", "file", "none"], default="kafka")
    p.add_argument("--no-bare-sidecar", action="store_true", help="leave out sidecar_no_log")
    p.add_argument(
        "--with-redact-none",
        action="store_true",
        help="also a logging sidecar with --redact none (path sidecar_redact_none): what redaction costs",
    )
    p.add_argument(
        "--sidecar-arg",
        action="append",
        default=[],
        help="an extra flag for the logging sidecar, repeatable: --sidecar-arg=--redact --sidecar-arg=none",
    )


def paths_from(a: argparse.Namespace) -> LLMPaths:
    """The paths `add_path_arguments`' flags (and the upstream's --first-token-ms, --interval-ms) ask for."""
    variants = {"sidecar_redact_none": ["--redact", "none"]} if a.with_redact_none else {}
    return LLMPaths(a.sink, a.first_token_ms, a.interval_ms, not a.no_bare_sidecar, a.sidecar_arg, variants)


class LLMPaths:
    """Starts the upstream, nginx and the sidecars; `with LLMPaths(...) as paths:` stops them all."""

    def __init__(
        self,
        sink: str = "kafka",
        first_token_ms: float = 5.0,
        interval_ms: float = 1.0,
        with_bare_sidecar: bool = True,
        sidecar_args: list[str] | None = None,
        variants: dict[str, list[str]] | None = None,
    ):
        if sink not in ("kafka", "file", "none"):
            raise ValueError(f"sink must be kafka, file or none, not {sink!r}")
        self.sink, self.first_token_ms, self.interval_ms = sink, first_token_ms, interval_ms
        self.with_bare_sidecar = with_bare_sidecar and sink != "none"
        self.sidecar_args = list(sidecar_args or [])  # extra flags of the logging sidecar (`--redact none`...)
        # more logging sidecars, name -> their extra flags (`{"sidecar_redact_none": ["--redact", "none"]}`),
        # with the same sink: an A/B of one setting in the same run
        self.variants = dict(variants or {})
        self.work = Path(tempfile.mkdtemp(prefix="infertap-llm-bench-"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.broker: EmbeddedBroker | None = None

    # --- what the benchmarks use ------------------------------------------------------------

    @property
    def targets(self) -> dict[str, str]:
        """path name -> URL of the chat endpoint through it."""
        return {name: f"http://127.0.0.1:{port}{CHAT_PATH}" for name, port in self.ports.items()}

    @property
    def pids(self) -> dict[str, int]:
        """proxy name -> pid (nginx: its master; `cpu_seconds` adds the worker)."""
        return {name: proc.pid for name, proc in self.procs.items() if name != "upstream"}

    def sidecar_metrics(self, name: str = "sidecar") -> dict[str, float]:
        """The sidecar's counters of interest, summed over their labels."""
        text = httpx.get(f"http://127.0.0.1:{self.ports[name]}/infertap/metrics", timeout=10).text
        wanted = {
            "events_sent": ("infertap_logger_events_total{", 'outcome="sent"'),
            "events_dropped": ("infertap_logger_events_total{", 'outcome="dropped"'),
            "events_spooled": ("infertap_logger_events_total{", 'outcome="spooled"'),
            "output_tokens": ("infertap_gen_ai_client_token_usage_total{", 'gen_ai_token_type="output"'),
            "redactions": ("infertap_tap_redactions_total{", ""),
            "upstream_errors": ("infertap_proxy_upstream_errors_total{", ""),
        }
        out = dict.fromkeys(wanted, 0.0)
        for line in text.splitlines():
            for key, (prefix, label) in wanted.items():
                if line.startswith(prefix) and label in line:
                    out[key] += float(line.rsplit(" ", 1)[1])
        return out

    def settled_sidecar_metrics(self, name: str = "sidecar", timeout_s: float = 15.0) -> dict[str, float]:
        """`sidecar_metrics` once the delivery is done: the events sent stopped changing for
        half a second (a busy machine can hold the last batch for a while), or `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        last = self.sidecar_metrics(name)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.sidecar_metrics(name)
            if now["events_sent"] == last["events_sent"]:
                return now
            last = now
        return last

    def log_lines(self, name: str, needle: str = "", limit: int = 20) -> list[str]:
        path = self.work / f"{name}.log"
        if not path.exists():
            return []
        return [line for line in path.read_text(errors="replace").splitlines() if needle in line][:limit]

    # --- starting and stopping --------------------------------------------------------------

    def __enter__(self) -> LLMPaths:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _start(self) -> None:
        work = self.work
        up = self.ports["direct"] = free_port()
        self.procs["upstream"] = start(
            [
                sys.executable,
                "-m",
                "benchmarks.sse_upstream",
                "--port",
                str(up),
                "--first-token-ms",
                str(self.first_token_ms),
                "--interval-ms",
                str(self.interval_ms),
            ],
            work / "upstream.log",
        )
        log_urls: list[str] = []
        if self.sink == "kafka":
            from infertap.stack.broker import EmbeddedBroker

            broker = self.broker = EmbeddedBroker(port=free_port(), log_path=work / "broker.log").start()
            log_urls = [f"kafka://{broker.bootstrap}/{INFERENCE_SERVICE}-events"]
        elif self.sink == "file":
            log_urls = [f"file://{work}/events.jsonl?max_bytes=1073741824&backups=1"]
        user = "user root;" if os.geteuid() == 0 else ""
        nginx_port = self.ports["nginx"] = free_port()
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, dir=work, upstream=up, port=nginx_port))
        self.procs["nginx"] = start(
            [ensure_nginx(), "-p", str(work), "-c", str(conf), "-g", "daemon off;"], work / "nginx.log"
        )
        self._sidecar("sidecar", up, log_urls, self.sidecar_args)
        for name, extra in self.variants.items():
            self._sidecar(name, up, log_urls, self.sidecar_args + extra)
        if self.with_bare_sidecar:
            self._sidecar("sidecar_no_log", up, [], [])
        wait_http(f"http://127.0.0.1:{up}/v2/health/ready", self.procs["upstream"], log=work / "upstream.log")
        wait_http(f"http://127.0.0.1:{nginx_port}/v2/health/ready", self.procs["nginx"], log=work / "nginx.log")
        for name in ("sidecar", *self.variants, "sidecar_no_log"):
            if name in self.procs:
                wait_http(
                    f"http://127.0.0.1:{self.ports[name]}/infertap/metrics", self.procs[name], log=work / f"{name}.log"
                )

    def _sidecar(self, name: str, upstream: int, log_urls: list[str], extra: list[str]) -> None:
        port = self.ports[name] = free_port()
        args = [
            sys.executable,
            "-m",
            "infertap.sidecar",
            "--port",
            str(port),
            "--component-port",
            str(upstream),
            "--inference-service",
            INFERENCE_SERVICE,
            "--spool-dir",
            str(self.work / f"spool-{name}"),
        ]
        for url in log_urls:
            args += ["--log-url", url]
        args += extra
        self.procs[name] = start(args, self.work / f"{name}.log")

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            stop(proc)
        self.procs.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        shutil.rmtree(self.work, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, its threads and its children (nginx's worker), in seconds.

    From `/proc/<pid>/task/<tid>/schedstat` (time on CPU, in nanoseconds, as the scheduler
    counts it) where the kernel has it: `/proc/<pid>/stat`'s utime and stime (what
    `benchmarks.logger_latency.cpu_seconds` reads) come in clock ticks of 10 ms, too coarse for
    a batch of streams that costs nginx a few hundred milliseconds. A thread that exits
    between two readings takes its time with it; the proxies' threads live as long as they do."""
    total, todo, found = 0, [pid], False
    while todo:
        p = todo.pop()
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                try:
                    total += int((task / "schedstat").read_text().split()[0])
                    found = True
                    todo += [int(c) for c in (task / "children").read_text().split()]
                except (FileNotFoundError, ProcessLookupError):
                    continue
        except (FileNotFoundError, ProcessLookupError):
            continue
    if not found:
        from benchmarks.logger_latency import cpu_seconds as from_stat

        return from_stat(pid)
    return total / 1e9


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop (as the sidecar does: the client's cost per chunk stays low), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coro)
    return uvloop.run(coro)


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float (a percentile of no samples, a ratio to 0) as
    None, so that the JSON written is standard JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def machine() -> dict:
    import platform

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }
