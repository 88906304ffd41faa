"""`make demo`: the logging path end to end on the embedded defaults.

Starts `infertap up examples/sklearn-iris-logger.yaml` (model server, logger sidecar,
embedded broker), sends V1 and V2 requests through the sidecar, reads the CloudEvents
back from Kafka, prints what a newcomer wants to see, and stops everything it started.
Exits non-zero with a sentence if any step fails.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from sidecar.broker import is_listening

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "sklearn-iris-logger.yaml"
TOPIC = "sklearn-iris-events"
REQUESTS = 200


def _port(preferred: int) -> int:
    """The documented default port when free, else any free one."""
    if not is_listening("127.0.0.1", preferred):
        return preferred
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(up: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.poll() is not None:
            sys.exit(f"demo: `infertap up` exited {up.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    sys.exit(f"demo: the stack was not ready within {timeout:.0f}s; see {log}")


def _send_traffic(base: str) -> tuple[int, int]:
    """V1 and V2 predicts through the logger sidecar; returns (ok, failed)."""
    rows = np.load(ROOT / "models" / "sklearn-iris" / "reference.npy")[:REQUESTS]
    ok = failed = 0
    with httpx.Client(base_url=base, timeout=10) as client:
        for i, row in enumerate(rows):
            if i % 2:
                body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": row.tolist()}]}
                r = client.post("/v2/models/sklearn-iris/infer", json=body, headers={"x-request-id": f"demo-{i}"})
            else:
                r = client.post("/v1/models/sklearn-iris:predict", json={"instances": [row.tolist()]},
                                headers={"x-request-id": f"demo-{i}"})
            ok, failed = (ok + 1, failed) if r.status_code == 200 else (ok, failed + 1)
    return ok, failed


def _read_events(bootstrap: str, expected: int, timeout: float = 60) -> list:
    """Every record on the topic, decoded with the cloudevents SDK's Kafka binding."""
    from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=2000)
    events, deadline = [], time.monotonic() + timeout
    try:
        while len(events) < expected and time.monotonic() < deadline:
            for rec in consumer:
                msg = KafkaMessage(headers={k: v for k, v in rec.headers}, key=rec.key, value=rec.value)
                events.append(from_binary_event(msg))
    finally:
        consumer.close()
    return events


def main() -> None:
    if not (ROOT / "models" / "sklearn-iris").exists():
        sys.exit("demo: models/ is missing; run `make models` (or `make demo`, which builds them)")
    ports = {"predictor": _port(8080), "logger": _port(9081), "broker": _port(9092)}
    log_dir = Path(tempfile.mkdtemp(prefix="infertap-demo-"))
    up_log = log_dir / "up.log"
    print(f"infertap demo: starting the stack from {SPEC.relative_to(ROOT)} (logs in {log_dir})")
    with open(up_log, "wb") as fh:
        up = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "up", str(SPEC), "--log-dir", str(log_dir),
             "--predictor-port", str(ports["predictor"]), "--logger-port", str(ports["logger"]),
             "--broker-port", str(ports["broker"])],
            cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "120"})
    try:
        base = f"http://127.0.0.1:{ports['logger']}"
        _wait_ready(up, f"{base}/v2/health/ready", up_log)
        print(up_log.read_text().rstrip())
        t0 = time.monotonic()
        ok, failed = _send_traffic(base)
        print(f"\nrequests served through the logger sidecar: {ok} ok, {failed} failed "
              f"({(ok + failed) / (time.monotonic() - t0):.0f} req/s, one at a time)")
        events = _read_events(f"127.0.0.1:{ports['broker']}", expected=2 * (ok + failed))
        kinds = {t: sum(e.get_type() == t for e in events) for t in
                 ("org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response")}
        print(f"events delivered to Kafka topic {TOPIC!r}: {len(events)}")
        for t, n in kinds.items():
            print(f"  {t}: {n}")
        if events:
            first = events[0]
            attrs = {k: v for k, v in first.get_attributes().items() if k != "time"}
            print("one event, as the cloudevents SDK decodes it:")
            print(json.dumps(attrs, indent=2, default=str))
            data = first.get_data()
            preview = data if isinstance(data, (bytes, str)) else json.dumps(data)
            print(f"  data: {preview[:160]!r}")
        if failed or len(events) != 2 * ok:
            sys.exit(f"demo: expected {2 * ok} events and no failed requests; got {len(events)} events")
        print(f"\nwatch live: infertap tail {TOPIC} --bootstrap 127.0.0.1:{ports['broker']} --from-beginning")
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
    print(f"stopped every process (`infertap up` exited {up.returncode}). Demo done.")
    if up.returncode not in (0, None):
        sys.exit(f"demo: `infertap up` exited {up.returncode}; see {up_log}")


if __name__ == "__main__":
    main()
