"""Faults through the real sidecar process (issue 3): the model server (`python -m infertap.serving`),
`python -m infertap.sidecar` and a broker the test owns, all child processes.

- broker stopped for 30 s under steady load, restarted on the same port: zero lost events,
  zero failed inference requests;
- sidecar SIGKILLed mid-load: every event it had written to its spool is delivered after a
  restart on the same spool folder;
- unreachable HTTP sinks (nothing listening; accepts but never answers) never delay responses.

Events are matched to requests by `ce-id`: the sidecar uses it as the event id and the Kafka key.
"""

from __future__ import annotations

import shutil
import signal
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from delivery_fixtures import read_topic
from kafka import KafkaConsumer, TopicPartition

from infertap.logger.delivery import record
from infertap.logger.delivery.spool import Spool
from infertap.logger.events import REQUEST_TYPE, RESPONSE_TYPE
from infertap.stack.broker import EmbeddedBroker
from tests.conftest import free_port, unique

BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]}'
PAIR = (REQUEST_TYPE, RESPONSE_TYPE)


@pytest.fixture
def model(spawn, models_dir) -> int:
    """Port of a real model server (sklearn iris)."""
    port = free_port()
    child = spawn(
        [
            sys.executable,
            "-m",
            "infertap.serving",
            "--model-name",
            "sklearn-iris",
            "--model-format",
            "sklearn",
            "--storage-uri",
            str(models_dir / "sklearn-iris"),
            "--http-port",
            str(port),
        ],
        name="serving",
    )
    child.wait_http(f"http://127.0.0.1:{port}/v2/health/ready", timeout=120)
    return port


def start_sidecar(spawn, model_port: int, *urls: str, port: int | None = None, extra: tuple[str, ...] = ()):
    """`python -m infertap.sidecar` in front of the model; returns (child, base URL)."""
    port = port or free_port()
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
        "--retry-backoff",
        "0.2",
        "--retry-backoff-max",
        "1",
    ]
    for url in urls:
        args += ["--log-url", url]
    child = spawn(args + list(extra), name="sidecar")
    base = f"http://127.0.0.1:{port}"
    child.wait_http(f"{base}/infertap/metrics", timeout=60)
    return child, base


def metric(base: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples (matching `labels`) scraped from the sidecar."""
    text = httpx.get(f"{base}/infertap/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.2)


class SteadyClient(threading.Thread):
    """V1 predicts through the sidecar at a steady rate, each with its own `ce-id`."""

    def __init__(self, url: str, tag: str, rate: float = 20.0):
        super().__init__(daemon=True)
        self.url, self.tag, self.period = f"{url}/v1/models/sklearn-iris:predict", tag, 1.0 / rate
        self.ok: list[str] = []
        self.failed: list[tuple[str, object]] = []
        self.latencies: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            i = 0
            while not self._halt.is_set():
                ce_id = f"{self.tag}-{i}"
                i += 1
                t0 = time.perf_counter()
                try:
                    r = client.post(
                        self.url, content=BODY, headers={"content-type": "application/json", "ce-id": ce_id}
                    )
                    self.latencies.append(time.perf_counter() - t0)
                    (self.ok.append(ce_id) if r.status_code == 200 else self.failed.append((ce_id, r.status_code)))
                except httpx.HTTPError as exc:
                    self.failed.append((ce_id, repr(exc)))
                self._halt.wait(max(0.0, self.period - (time.perf_counter() - t0)))

    def stop(self) -> None:
        self._halt.set()
        self.join(60)


def drain(bootstrap: str, topic: str, settle: float = 1.0) -> set[tuple[str, str]]:
    """Every (key, ce_type) on the topic right now: read until the end offsets stop moving."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        consumer.topics()
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert parts, f"topic {topic} has no partitions"
        consumer.assign(parts)
        seen: set[tuple[str, str]] = set()
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle:
            for records in consumer.poll(timeout_ms=200).values():
                seen |= {(r.key.decode(), dict(r.headers)["ce_type"].decode()) for r in records}
            ends = consumer.end_offsets(parts)
            if any(consumer.position(tp) < ends[tp] for tp in parts):
                quiet_since = time.monotonic()
        return seen
    finally:
        consumer.close()


def pairs(ids) -> set[tuple[str, str]]:
    return {(i, t) for i in ids for t in PAIR}


def test_broker_stopped_30s_under_steady_load_loses_nothing(spawn, model, tmp_path: Path) -> None:
    """Load runs the whole time. Memory storage: the restarted broker starts empty, so the
    topic is read twice: just before the stop (the sidecar is frozen with SIGSTOP for that
    second, so nothing is acknowledged by the old broker after we read it; requests then
    wait, they do not fail) and after the restart. Their union must hold both events of
    every request that got a 200."""
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log").start()
    topic = unique("outage30")
    try:
        sidecar, base = start_sidecar(
            spawn,
            model,
            f"kafka://{broker.bootstrap}/{topic}?delivery_timeout_ms=3000",
            extra=("--spool-dir", str(tmp_path / "spool")),
        )
        client = SteadyClient(base, "o30", rate=20)
        client.start()
        wait_until(lambda: metric(base, "infertap_logger_events_total", outcome="sent") >= 40, 60, "first events sent")

        sidecar.proc.send_signal(signal.SIGSTOP)
        try:
            before = drain(broker.bootstrap, topic)
            broker.stop()
        finally:
            sidecar.proc.send_signal(signal.SIGCONT)
        stopped_at = len(client.ok)
        time.sleep(30)
        assert len(client.ok) > stopped_at + 300, "load did not go on during the outage"
        assert metric(base, "infertap_logger_events_total", outcome="spooled") > 0  # the outage path ran
        broker.start()  # same port, empty
        time.sleep(5)  # load goes on after the restart too
        client.stop()

        expected = pairs(client.ok)
        wait_until(
            lambda: (
                metric(base, "infertap_logger_events_total", outcome="sent") >= len(expected)
                and metric(base, "infertap_logger_spool_events") == 0
            ),
            180,
            "spool drained after restart",
        )
        after = {
            (r.key.decode(), dict(r.headers)["ce_type"].decode())
            for r in read_topic(broker.bootstrap, topic, len(expected - before))
        }
    finally:
        broker.stop()
    print(
        f"requests ok: {len(client.ok)}, events read before the stop: {len(before)}, after the restart: "
        f"{len(after)}, in both (duplicates): {len(before & after)}"
    )
    assert client.failed == []  # zero failed inference requests
    missing = expected - (before | after)
    assert not missing, f"{len(missing)} of {len(expected)} events lost, e.g. {sorted(missing)[:5]}"
    assert metric(base, "infertap_logger_events_total", outcome="dropped") == 0


def spooled_events(spool_dir: Path, scratch: Path) -> set[tuple[str, str]]:
    """(id, type) of every unacknowledged event in the spool folder(s), read from a copy."""
    out: set[tuple[str, str]] = set()
    for folder in (p for p in spool_dir.iterdir() if p.is_dir()):
        copy = scratch / folder.name
        shutil.copytree(folder, copy)
        spool = Spool(copy, max_bytes=1 << 40)
        while True:
            records, token = spool.read(10_000, 1 << 30)
            if token is None:
                break
            out |= {(e.get_id(), e.get_type()) for e in map(record.decode, records)}
            spool.ack(token)
        spool.close()
    return out


def test_sigkill_mid_load_delivers_everything_spooled(spawn, model, tmp_path: Path) -> None:
    """Guarantee under test: an event acknowledged to the spool (fsync'd) survives SIGKILL.
    Events still in the in-memory queue at the kill are lost by design.

    Broker down, so every event goes to the spool. Phase 1: requests, then wait until the
    spool metric counts both events of each. Phase 2: load goes on and the sidecar is
    SIGKILLed mid-flow. A copy of the spool folder taken after the kill says exactly what
    was spooled; a sidecar restarted on the same folder with the broker up delivers all of it."""
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log")  # not started yet
    topic = unique("sigkill")
    url = f"kafka://{broker.bootstrap}/{topic}?delivery_timeout_ms=1000"
    spool_dir = tmp_path / "spool"
    # a small queue watermark: events spill to the spool soon instead of waiting in memory
    extra = ("--spool-dir", str(spool_dir), "--queue-max-events", "200")
    port = free_port()
    sidecar, base = start_sidecar(spawn, model, url, port=port, extra=extra)
    with httpx.Client(timeout=30.0) as http:
        first = [f"k1-{i}" for i in range(60)]
        for ce_id in first:
            r = http.post(
                f"{base}/v1/models/sklearn-iris:predict",
                content=BODY,
                headers={"content-type": "application/json", "ce-id": ce_id},
            )
            assert r.status_code == 200
    wait_until(lambda: metric(base, "infertap_logger_spool_events") >= 2 * len(first), 90, "phase 1 spooled")

    client = SteadyClient(base, "k2", rate=40)
    client.start()
    wait_until(lambda: len(client.ok) >= 40, 60, "phase 2 load")
    sidecar.kill(signal.SIGKILL)
    assert sidecar.proc.returncode == -signal.SIGKILL
    client.stop()

    on_disk = spooled_events(spool_dir, tmp_path / "copy")
    assert pairs(first) <= on_disk  # phase 1 was spooled, so it is on disk after SIGKILL
    assert len(on_disk - pairs(first)) > 0  # and some of phase 2 too: the kill was mid-flow

    broker.start()
    try:
        _, base = start_sidecar(spawn, model, url, port=port, extra=extra)
        wait_until(
            lambda: (
                metric(base, "infertap_logger_spool_events") == 0
                and metric(base, "infertap_logger_events_total", outcome="sent") >= len(on_disk)
            ),
            180,
            "spool replayed after restart",
        )
        records = read_topic(broker.bootstrap, topic, len(on_disk))
    finally:
        broker.stop()
    got = [(r.key.decode(), dict(r.headers)["ce_type"].decode()) for r in records]
    missing = on_disk - set(got)
    assert not missing, f"{len(missing)} of {len(on_disk)} spooled events not delivered, e.g. {sorted(missing)[:5]}"
    duplicates = len(got) - len(set(got))
    print(f"spooled at SIGKILL: {len(on_disk)}, delivered after restart: {len(set(got))}, duplicates: {duplicates}")


class BlackHole:
    """Accepts TCP connections and never answers (nor reads)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_unreachable_http_sinks_never_delay_responses(spawn, model, tmp_path: Path) -> None:
    """Sidecar A logs to two dead HTTP sinks (a port where nothing listens; a server that
    accepts and never answers) with a 10 s timeout; sidecar B logs to a file. Requests
    alternate between them: all succeed, and each takes far less than the sink timeout,
    which could not hold if logging waited for the sink."""
    hole = BlackHole()
    try:
        dead = f"http://127.0.0.1:{free_port()}/events"
        silent = f"http://127.0.0.1:{hole.port}/events"
        _, a = start_sidecar(
            spawn,
            model,
            dead,
            silent,
            extra=("--http-timeout", "10", "--sink-timeout", "30", "--spool-dir", str(tmp_path / "spool-a")),
        )
        _, b = start_sidecar(
            spawn, model, f"file://{tmp_path / 'events.jsonl'}", extra=("--spool-dir", str(tmp_path / "spool-b"))
        )
        latency: dict[str, list[float]] = {a: [], b: []}
        with httpx.Client(timeout=30.0) as http:
            for _ in range(120):
                for base in (a, b):
                    t0 = time.perf_counter()
                    r = http.post(
                        f"{base}/v1/models/sklearn-iris:predict",
                        content=BODY,
                        headers={"content-type": "application/json"},
                    )
                    latency[base].append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
        # the dead sinks were really tried: refused connections retried, the black hole connected to
        wait_until(
            lambda: metric(a, "infertap_logger_events_total", sink=f"http:127.0.0.1:{hole.port}") > 0 or hole.conns,
            30,
            "the silent sink to be tried",
        )
        assert hole.conns, "the sidecar never connected to the silent sink"
        dead_sink = "http:" + dead.split("/")[2]
        wait_until(
            lambda: metric(a, "infertap_logger_events_total", sink=dead_sink, outcome="retried") > 0,
            30,
            "the refused sink to be retried",
        )
        worst = max(latency[a])
        p50_a, p50_b = statistics.median(latency[a]), statistics.median(latency[b])
        print(f"p50 dead sinks {p50_a * 1e3:.1f} ms, file sink {p50_b * 1e3:.1f} ms, worst dead {worst * 1e3:.0f} ms")
        assert worst < 2.0, f"a request took {worst:.1f}s behind dead sinks (timeout 10s): logging blocked it"
    finally:
        hole.close()
