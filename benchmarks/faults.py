"""Fault figures (issue 7): real processes, real broker, steady load; JSON in benchmarks/results/faults.json.

Scenarios (each a function returning a dict; the tests in tests/hardening call the lean ones):

- `broker_down`: the broker stopped for `--outage` s (60) under steady load through the
  sidecar; inference errors, events lost (requests answered 200 whose request or response
  event is on neither the topic read just before the stop nor the one after the restart:
  memory storage restarts empty), duplicates, p50/p99 latency before / during / after.
- `model_server_kill`: the model server SIGKILLed behind the sidecar: what clients get
  (status, JSON `error`), whether the sidecar lives, and that it serves again once the
  model server is back on its port.
- `http_sinks`: sidecars logging to an HTTP sink that hangs (accepts, never answers), one
  that answers 500, one that takes 2 s per event, and a file sink as the reference, all
  under the same load: latency p50/p99 and the sidecar's max RSS for each.

The logger SIGKILL and detector SIGKILL figures come from their tests
(tests/logger/test_faults.py, tests/detectors/test_worker.py), which print them.

    python -m benchmarks.faults [--only broker_down,http_sinks] [--outage 60] [--rate 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from benchmarks.logger_broker_down_rss import RssSampler, metric, read_back, rss_mb
from benchmarks.processes import free_port, start, stop, wait_http
from infertap.stack.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "faults.json"
BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]}'
PAIR = ("org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response")


# ---------------------------------------------------------------- processes and load


def start_model(work: Path, port: int | None = None) -> tuple[object, int]:
    port = port or free_port()
    proc = start(
        [
            sys.executable,
            "-m",
            "infertap.serving",
            "--model-name",
            "sklearn-iris",
            "--model-format",
            "sklearn",
            "--storage-uri",
            str(ROOT / "models" / "sklearn-iris"),
            "--http-port",
            str(port),
        ],
        work / f"serving-{port}.log",
    )
    wait_http(f"http://127.0.0.1:{port}/v2/health/ready", proc)
    return proc, port


def start_sidecar(work: Path, model_port: int, urls: list[str], extra: list[str] = ()) -> tuple[object, str]:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "infertap.sidecar",
        "--port",
        str(port),
        "--component-port",
        str(model_port),
        "--inference-service",
        "sklearn-iris",
        "--spool-dir",
        str(work / f"spool-{port}"),
        *extra,
    ]
    for url in urls:
        args += ["--log-url", url]
    proc = start(args, work / f"sidecar-{port}.log")
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/infertap/metrics", proc)
    return proc, base


class Load(threading.Thread):
    """Open-loop V1 predicts at `rate`/s, each with its own `ce-id`; records (t, seconds, status)."""

    def __init__(self, base: str, tag: str, rate: float = 50.0, timeout: float = 30.0):
        super().__init__(daemon=True)
        self.url, self.tag, self.period, self.timeout = (
            f"{base}/v1/models/sklearn-iris:predict",
            tag,
            1.0 / rate,
            timeout,
        )
        self.samples: list[tuple[float, float, int | str]] = []
        self.ok: list[str] = []
        self.bodies: dict[int | str, str] = {}
        self._halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            i = 0
            while not self._halt.is_set():
                ce_id, i = f"{self.tag}-{i}", i + 1
                t = time.monotonic()
                try:
                    r = client.post(
                        self.url, content=BODY, headers={"content-type": "application/json", "ce-id": ce_id}
                    )
                    status = r.status_code
                    if status == 200:
                        self.ok.append(ce_id)
                    else:
                        self.bodies.setdefault(status, r.text[:200])
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.samples.append((t - self.t0, time.monotonic() - t, status))
                self._halt.wait(max(0.0, self.period - (time.monotonic() - t)))

    def stop(self) -> None:
        self._halt.set()
        self.join(60)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def window(self, start: float, end: float) -> dict:
        """Counts and latency percentiles (ms) of the requests sent in [start, end)."""
        part = [s for s in self.samples if start <= s[0] < end]
        lat = sorted(s[1] for s in part if s[2] == 200)
        errors: dict[str, int] = {}
        for s in part:
            if s[2] != 200:
                errors[str(s[2])] = errors.get(str(s[2]), 0) + 1
        pick = (lambda q: round(lat[min(len(lat) - 1, int(len(lat) * q))] * 1e3, 2)) if lat else (lambda q: None)
        return {
            "requests": len(part),
            "ok": len(lat),
            "errors": errors,
            "p50_ms": pick(0.5),
            "p99_ms": pick(0.99),
            "max_ms": round(lat[-1] * 1e3, 2) if lat else None,
        }


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---------------------------------------------------------------- scenarios


def broker_down(
    work: Path, outage_s: float = 60.0, rate: float = 50.0, before_s: float = 20.0, after_s: float = 15.0
) -> dict:
    broker = EmbeddedBroker(port=free_port(), log_path=work / "broker-outage.log").start()
    topic = f"outage-{os.getpid()}-{int(time.time())}"
    procs = []
    try:
        model, model_port = start_model(work)
        procs.append(model)
        sidecar, base = start_sidecar(
            work,
            model_port,
            [f"kafka://{broker.bootstrap}/{topic}?delivery_timeout_ms=3000"],
            ["--retry-backoff", "0.2", "--retry-backoff-max", "1"],
        )
        procs.append(sidecar)
        load = Load(base, "bd", rate)
        load.start()
        time.sleep(before_s)
        # freeze the sidecar while the topic is read, so nothing is acknowledged by the old broker after it
        os.kill(sidecar.pid, signal.SIGSTOP)
        try:
            before = set(read_back(broker.bootstrap, topic, 0, timeout=60))
            broker.stop()
        finally:
            os.kill(sidecar.pid, signal.SIGCONT)
        t_stop = load.now()
        time.sleep(outage_s)
        t_start = load.now()
        broker.start()
        time.sleep(after_s)
        load.stop()
        expected = {(i, t) for i in load.ok for t in PAIR}
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            text = httpx.get(f"{base}/infertap/metrics").text
            if (
                metric(text, "infertap_logger_spool_events") == 0
                and metric(text, "infertap_logger_queue_depth") == 0
                and metric(text, "infertap_logger_events_total", outcome="sent") >= len(expected) - len(before)
            ):
                break
            time.sleep(1)
        after = read_back(broker.bootstrap, topic, len(expected - before))
        got = before | set(after)
        outcomes = {
            o: metric(text, "infertap_logger_events_total", outcome=o)
            for o in ("sent", "retried", "spooled", "dropped")
        }
        return {
            "outage_s": outage_s,
            "rate_rps": rate,
            "requests": len(load.samples),
            "ok": len(load.ok),
            "inference_errors": len(load.samples) - len(load.ok),
            "events_expected": len(expected),
            "events_lost": len(expected - got),
            "duplicates": len(after) - len(set(after)) + len(before & set(after)),
            "latency": {
                "before": load.window(0, t_stop),
                "during": load.window(t_stop, t_start),
                "after": load.window(t_start, 1e9),
            },
            "sidecar_outcomes": outcomes,
            "sidecar_rss_mb": round(rss_mb(sidecar.pid), 1),
        }
    finally:
        for proc in reversed(procs):
            stop(proc)
        broker.stop()


def model_server_kill(work: Path, down_s: float = 5.0, rate: float = 20.0) -> dict:
    model, model_port = start_model(work)
    sidecar, base = start_sidecar(work, model_port, [f"file://{work / 'kill-events.jsonl'}"])
    procs = [sidecar]
    try:
        load = Load(base, "mk", rate)
        load.start()
        time.sleep(3)
        os.killpg(model.pid, signal.SIGKILL)
        model.wait()
        t_kill = load.now()
        time.sleep(down_s)
        sidecar_alive_while_down = sidecar.poll() is None
        model, _ = start_model(work, model_port)
        procs.append(model)
        t_back = load.now()
        time.sleep(3)
        load.stop()
        down = load.window(t_kill, t_back)
        return {
            "sidecar_alive": sidecar_alive_while_down and sidecar.poll() is None,
            "before": load.window(0, t_kill),
            "while_down": down,
            "after_restart": load.window(t_back + 0.5, 1e9),
            "error_bodies": {str(k): v for k, v in load.bodies.items()},
        }
    finally:
        for proc in reversed(procs):
            stop(proc)


class _Sink(BaseHTTPRequestHandler):
    """HTTP sink behaviours: `fail` answers 500, `slow` takes 2 s per event."""

    mode = "fail"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.mode == "slow":
            time.sleep(2.0)
            self.send_response(202)
        else:
            self.send_response(500)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def sink_server(mode: str) -> ThreadingHTTPServer:
    handler = type(f"Sink_{mode}", (_Sink,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def hanging_sink() -> socket.socket:
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    conns: list = []

    def accept() -> None:
        while True:
            try:
                conns.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return sock


def http_sinks(work: Path, seconds: float = 60.0, rate: float = 40.0) -> dict:
    hang, fail, slow = hanging_sink(), sink_server("fail"), sink_server("slow")
    model, model_port = start_model(work)
    procs = [model]
    urls = {
        "hangs": f"http://127.0.0.1:{hang.getsockname()[1]}/e",
        "returns_500": f"http://127.0.0.1:{fail.server_port}/e",
        "slow_2s": f"http://127.0.0.1:{slow.server_port}/e",
        "file_reference": f"file://{work / 'ref-events.jsonl'}",
    }
    try:
        sidecars = {}
        for name, url in urls.items():
            proc, base = start_sidecar(work, model_port, [url], ["--http-timeout", "10", "--sink-timeout", "30"])
            procs.append(proc)
            sidecars[name] = (proc, base)
        samplers = {n: RssSampler(p.pid, 2.0) for n, (p, _) in sidecars.items()}
        loads = {n: Load(base, n, rate) for n, (_, base) in sidecars.items()}
        for x in (*samplers.values(), *loads.values()):
            x.start()
        time.sleep(seconds)
        for load in loads.values():
            load.stop()
        out = {}
        for name, (proc, base) in sidecars.items():
            samplers[name].stop()
            text = httpx.get(f"{base}/infertap/metrics").text
            rss = [s[2] for s in samplers[name].samples]
            out[name] = {
                **loads[name].window(0, 1e9),
                "rss_mb_first": rss[0] if rss else None,
                "rss_mb_max": max(rss, default=None),
                "alive": proc.poll() is None,
                "events": {
                    o: metric(text, "infertap_logger_events_total", outcome=o)
                    for o in ("sent", "retried", "spooled", "dropped")
                },
            }
        return {"seconds": seconds, "rate_rps_each": rate, "sidecars": out}
    finally:
        for proc in reversed(procs):
            stop(proc)
        hang.close()
        fail.shutdown()
        slow.shutdown()


SCENARIOS = {"broker_down": broker_down, "model_server_kill": model_server_kill, "http_sinks": http_sinks}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma list of scenarios")
    p.add_argument("--outage", type=float, default=60.0, help="broker_down: seconds the broker is stopped")
    p.add_argument("--rate", type=float, default=50.0, help="broker_down: requests/s")
    p.add_argument("--sink-seconds", type=float, default=60.0, help="http_sinks: seconds of load")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="infertap-faults-"))
    report = json.loads(a.out.read_text()) if a.out.exists() else {}
    for name in a.only.split(","):
        kwargs = {"broker_down": {"outage_s": a.outage, "rate": a.rate}, "http_sinks": {"seconds": a.sink_seconds}}.get(
            name, {}
        )
        print(f"{name} ...", flush=True)
        report[name] = {**SCENARIOS[name](work, **kwargs), "machine": machine()}
        print(json.dumps(report[name], indent=1), flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {a.out} (logs in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
