"""Benchmark 3: the sidecar's memory during a long broker outage, then nothing lost.

One run, real processes: the model server (`python -m infertap.serving`, sklearn iris), the sidecar
(`python -m infertap.sidecar`, `kafka://` to a port where the broker is *down*, default settings), and
a steady client sending V1 predicts with ~1 KB bodies and a unique `ce-id` each at `--rate`
requests/s for `--minutes` minutes. The sidecar's RSS (VmRSS of its process, every thread
incl. librdkafka's) is sampled every second. Then the broker (embedded Tansu) starts on that
port, the sidecar drains its spool, and the topic is read back with kafka-python: every
request that got a 200 must have its request and its response event there.

Goal (issue 3): max RSS under 200 MB, nothing lost.

    python -m benchmarks.logger_broker_down_rss [--minutes 5] [--rate 100]

Writes benchmarks/results/logger_broker_down_rss.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import httpx

from benchmarks.processes import free_port, start, stop, wait_http
from infertap.stack.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "logger_broker_down_rss.json"
GOAL_MB = 200
# 44 rows of 4 features: a ~1 KB V1 body
BODY = json.dumps({"instances": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]] * 22}).encode()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    """VmRSS of one process every `every` seconds, tagged with the phase."""

    def __init__(self, pid: int, every: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.every, self.phase = pid, every, "load"
        self.samples: list[tuple[float, str, float]] = []
        self._halt = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((round(time.monotonic() - self._t0, 1), self.phase, round(rss_mb(self.pid), 1)))
            except FileNotFoundError:
                return
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def steady_load(url: str, rate: float, seconds: float, tag: str) -> dict:
    """Requests at a fixed rate (open loop, at most 32 in flight); ids of those answered 200."""
    ok: list[str] = []
    failed: dict[str, int] = {}
    gate = asyncio.Semaphore(32)
    latencies: list[float] = []

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        ce_id = f"{tag}-{i}"
        try:
            t0 = time.perf_counter()
            async with session.post(
                url,
                data=BODY,
                headers={"content-type": "application/json", "ce-id": ce_id},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as r:
                await r.read()
                latencies.append(time.perf_counter() - t0)
                if r.status == 200:
                    ok.append(ce_id)
                else:
                    failed[str(r.status)] = failed.get(str(r.status), 0) + 1
        except (TimeoutError, aiohttp.ClientError) as exc:
            failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
        finally:
            gate.release()

    tasks = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
        start = time.monotonic()
        i = 0
        while (now := time.monotonic()) - start < seconds:
            due = start + i / rate
            if due > now:
                await asyncio.sleep(due - now)
            await gate.acquire()
            tasks.append(asyncio.create_task(one(session, i)))
            i += 1
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    latencies.sort()
    return {
        "sent": i,
        "ok": ok,
        "failed": failed,
        "seconds": elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1e3 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else None,
    }


def read_back(bootstrap: str, topic: str, expected: int, timeout: float = 300.0) -> list[tuple[str, str]]:
    """(key, ce_type) of every record on the topic, read with plain kafka-python."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        deadline = time.monotonic() + timeout
        parts = None
        while not parts and time.monotonic() < deadline:
            consumer.topics()
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.5)
        assert parts, f"topic {topic} never appeared"
        consumer.assign([TopicPartition(topic, p) for p in parts])
        out: list[tuple[str, str]] = []
        idle = 0
        while time.monotonic() < deadline and (len(out) < expected or idle < 2):
            got = 0
            for records in consumer.poll(timeout_ms=1000, max_records=10_000).values():
                for r in records:
                    ce_type = dict(r.headers).get("ce_type", b"").decode()
                    out.append((r.key.decode(), ce_type))
                got += len(records)
            idle = idle + 1 if got == 0 else 0
        return out
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="load with the broker down")
    p.add_argument("--rate", type=float, default=100.0, help="requests/s (each logs 2 events)")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="infertap-rss-"))
    model_port, side_port, broker_port = free_port(), free_port(), free_port()
    topic = f"rss-{os.getpid()}"
    broker = EmbeddedBroker(port=broker_port, log_path=work / "broker.log")
    procs: list[subprocess.Popen] = []
    try:
        model = start(
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
                str(model_port),
            ],
            work / "serving.log",
        )
        procs.append(model)
        wait_http(f"http://127.0.0.1:{model_port}/v2/health/ready", model)
        sidecar = start(
            [
                sys.executable,
                "-m",
                "infertap.sidecar",
                "--port",
                str(side_port),
                "--component-port",
                str(model_port),
                "--inference-service",
                "sklearn-iris",
                "--log-url",
                f"kafka://{broker.bootstrap}/{topic}",
                "--spool-dir",
                str(work / "spool"),
            ],
            work / "sidecar.log",
        )
        procs.append(sidecar)
        metrics_url = f"http://127.0.0.1:{side_port}/infertap/metrics"
        wait_http(metrics_url, sidecar)
        rss_start = rss_mb(sidecar.pid)
        sampler = RssSampler(sidecar.pid)
        sampler.start()
        url = f"http://127.0.0.1:{side_port}/v1/models/sklearn-iris:predict"
        print(f"load: {a.rate:g} req/s for {a.minutes:g} min through the sidecar, broker down", flush=True)
        load = asyncio.run(steady_load(url, a.rate, a.minutes * 60, "rss"))
        text = httpx.get(metrics_url).text
        at_end_of_load = {
            o: metric(text, "infertap_logger_events_total", outcome=o)
            for o in ("sent", "retried", "spooled", "dropped")
        }
        spool_bytes_peak = metric(text, "infertap_logger_spool_bytes")
        expected = 2 * len(load["ok"])
        print(
            f"load done: {len(load['ok'])} ok of {load['sent']}, failed {load['failed']}; "
            f"spooled {at_end_of_load['spooled']:.0f}, spool {spool_bytes_peak / 1e6:.1f} MB; broker starting",
            flush=True,
        )
        sampler.phase = "drain"
        broker.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 600:
            text = httpx.get(metrics_url).text
            sent = metric(text, "infertap_logger_events_total", outcome="sent")
            if (
                sent >= expected
                and metric(text, "infertap_logger_spool_events") == 0
                and metric(text, "infertap_logger_queue_depth") == 0
            ):
                break
            time.sleep(1)
        drain_s = time.monotonic() - t0
        sampler.stop()
        final = {
            o: metric(text, "infertap_logger_events_total", outcome=o)
            for o in ("sent", "retried", "spooled", "dropped")
        }
        records = read_back(broker.bootstrap, topic, expected)
        delivered = set(records)
        want = {
            (i, t)
            for i in load["ok"]
            for t in ("org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response")
        }
        missing = want - delivered
        load_rss = [s[2] for s in sampler.samples if s[1] == "load"]
        drain_rss = [s[2] for s in sampler.samples if s[1] == "drain"]
        report = {
            "benchmark": "logger_broker_down_rss",
            "what": "RSS of the logger sidecar process during steady load with the Kafka broker down, "
            "then everything delivered once the broker is back",
            "goal": f"max RSS < {GOAL_MB} MB, nothing lost",
            "load": {
                "minutes": a.minutes,
                "rate_rps": a.rate,
                "body_bytes": len(BODY),
                "requests": load["sent"],
                "ok": len(load["ok"]),
                "failed": load["failed"],
                "p50_ms": load["p50_ms"],
                "p99_ms": load["p99_ms"],
            },
            "rss_mb": {
                "at_start": round(rss_start, 1),
                "max_during_outage": max(load_rss, default=None),
                "max_during_drain": max(drain_rss, default=None),
                "last_during_outage": load_rss[-1] if load_rss else None,
            },
            "spool_bytes_at_end_of_outage": spool_bytes_peak,
            "events": {
                "sent_by_clients_ok_x2": expected,
                "delivered_distinct": len(delivered & want),
                "records_on_topic": len(records),
                "duplicates": len(records) - len(set(records)),
                "missing": len(missing),
                "missing_sample": sorted(missing)[:5],
            },
            "sidecar_outcomes_at_end_of_outage": at_end_of_load,
            "sidecar_outcomes_final": final,
            "drain_seconds": round(drain_s, 1),
            "goal_met": (max(load_rss + drain_rss) < GOAL_MB) and not missing and not load["failed"],
            "samples": sampler.samples,
            "machine": {
                "cpus": os.cpu_count(),
                "load_avg": [round(x, 2) for x in os.getloadavg()],
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))
        print(f"wrote {a.out}")
        return 0 if report["goal_met"] else 1
    finally:
        for proc in reversed(procs):
            stop(proc)
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
