"""`make demo`: the whole monitoring path end to end on the embedded defaults.

Starts `infertap up examples/sklearn-iris-monitoring.yaml` (embedded broker, model server,
logger sidecar, KernelSHAP explainer, a drift and an outlier detector worker) and, when
Debian's `prometheus` is on PATH, a Prometheus scraping what `up` started. Then:

1. reference traffic: the training rows, shuffled, with a little noise (one drift window);
2. drifted traffic: the same rows with two features shifted, and a few planted outliers;

and prints what a newcomer wants to see: requests served, events delivered, drift found
(which features, p-values), outliers flagged, one explanation, the report's path, how to
open the dashboards. Stops every process it started. Exits non-zero with a sentence when a
step fails or a detector does not see what was planted.

    python -m examples.demo            # what `make demo` runs
    python -m examples.demo --keep     # leave the stack (and Prometheus) up until Ctrl-C
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from infertap.stack.broker import is_listening

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "sklearn-iris-monitoring.yaml"
ISVC = "sklearn-iris"
EVENTS_TOPIC = f"{ISVC}-events"
DETECTIONS_TOPIC = f"{ISVC}-detections"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
DRIFT_WINDOW = 150  # spec.window.size of iris-drift in the YAML: one window per phase
SHIFT = {"sepal_width": 0.8, "petal_length": 1.5}  # about 1.8 and 0.85 standard deviations
OUTLIERS = np.array(
    [[9.5, 5.5, 1.0, 3.0], [4.0, 1.0, 7.5, 0.1], [8.5, 4.8, 9.0, 3.5], [3.0, 4.5, 6.5, 2.8], [10.0, 2.0, 3.0, 0.5]]
)  # far outside every iris flower
NOISE = 0.02
SEED = 7
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
CLASSES = ["setosa", "versicolor", "virginica"]


class DemoFailed(Exception):
    """A step failed; the message is the sentence the demo exits with."""


# --- processes -----------------------------------------------------------------------------


def free_port(preferred: int) -> int:
    """The documented default port when free, else any free one."""
    if not is_listening("127.0.0.1", preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_up(log_dir: Path, ports: dict[str, int], spec: Path = SPEC) -> subprocess.Popen:
    """`infertap up SPEC` on the demo's ports, its output in log_dir/up.log."""
    with open(log_dir / "up.log", "wb") as fh:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infertap",
                "up",
                str(spec),
                "--log-dir",
                str(log_dir),
                "--predictor-port",
                str(ports["predictor"]),
                "--logger-port",
                str(ports["logger"]),
                "--broker-port",
                str(ports["broker"]),
            ],
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "160"},
        )


def wait_up(up: subprocess.Popen, log_dir: Path, timeout: float = 240) -> list[dict]:
    """Wait until `up` printed its table (every child ready); its processes.json."""
    log = log_dir / "up.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise DemoFailed(
                f"`infertap up` exited {up.returncode} before the stack was ready:\n{log.read_text()[-3000:]}"
            )
        if "\nlogs in " in log.read_text():
            return json.loads((log_dir / "processes.json").read_text())
        time.sleep(0.5)
    raise DemoFailed(f"the stack was not ready within {timeout:.0f}s; see {log}")


def check_up(up: subprocess.Popen, log_dir: Path) -> None:
    """Raise DemoFailed with `up`'s own error when it stopped (a child died: it stops the rest)."""
    if up.poll() is not None:
        text = (log_dir / "up.log").read_text()
        error = text[text.find("error:") :][:1500] if "error:" in text else text[-1500:]
        raise DemoFailed(f"`infertap up` exited {up.returncode} while the demo ran: {error}")


def stop(proc: subprocess.Popen | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


PROM_JOBS = {
    "predictor": "/metrics",
    "logger": "/infertap/metrics",
    "explainer": "/metrics",
    "explain-stream": "/metrics",
    "detector": "/metrics",
}


def start_prometheus(processes: list[dict], log_dir: Path) -> tuple[subprocess.Popen | None, str | None]:
    """Debian's Prometheus scraping the ports `up` chose, or (None, None) when not installed."""
    binary = shutil.which("prometheus")
    if binary is None:
        print(
            "note: `prometheus` is not on PATH; no Prometheus started (Debian: apt-get install prometheus, "
            "or `make promdeps`)"
        )
        return None, None
    jobs = []
    for role, path in PROM_JOBS.items():
        targets = [f"{p['host']}:{p['port']}" for p in processes if p["role"] == role]
        if targets:
            jobs.append(
                {
                    "job_name": f"infertap-{role}",
                    "metrics_path": path,
                    "scrape_interval": "2s",
                    "static_configs": [{"targets": targets, "labels": {"role": role}}],
                }
            )
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": [str(ROOT / "dashboards" / "prometheus" / "alerts.yml")],
        "scrape_configs": jobs,
    }
    config_path = log_dir / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    port = free_port(9090)
    with open(log_dir / "prometheus.log", "wb") as fh:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={log_dir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"note: Prometheus exited {proc.returncode}; see {log_dir / 'prometheus.log'}; going on without it")
            return None, None
        try:
            # ours, not another Prometheus that took the port since free_port looked
            flags = httpx.get(f"{url}/api/v1/status/flags", timeout=1)
            if flags.status_code == 200 and flags.json()["data"].get("config.file") == str(config_path):
                print(
                    f"Prometheus {url} scraping {sum(len(j['static_configs'][0]['targets']) for j in jobs)} "
                    f"targets (config {config_path})"
                )
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    print("note: Prometheus was not ready within 60 s; going on without it")
    stop(proc, signal.SIGTERM, 10)
    return None, None


# --- traffic -------------------------------------------------------------------------------


@dataclass
class Traffic:
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def send(client: httpx.Client, rows: np.ndarray, ids: list[str], traffic: Traffic) -> None:
    """One request per row through the logger sidecar, V1 and V2 alternately."""
    t0 = time.monotonic()
    for i, (row, rid) in enumerate(zip(rows, ids, strict=True)):
        headers = {"x-request-id": rid}
        if i % 2:
            body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": row.tolist()}]}
            r = client.post(f"/v2/models/{ISVC}/infer", json=body, headers=headers)
        else:
            r = client.post(f"/v1/models/{ISVC}:predict", json={"instances": [row.tolist()]}, headers=headers)
        if r.status_code == 200:
            traffic.ok += 1
        else:
            traffic.failed.append(f"{rid}: {r.status_code} {r.text[:120]}")
    traffic.seconds += time.monotonic() - t0


def phases(reference: np.ndarray) -> tuple[tuple[np.ndarray, list[str]], tuple[np.ndarray, list[str]]]:
    """(reference rows, ids), (drifted rows with planted outliers, ids); one drift window each."""
    rng = np.random.default_rng(SEED)
    ref = reference[rng.permutation(len(reference))][:DRIFT_WINDOW] + rng.normal(0, NOISE, (DRIFT_WINDOW, 4))
    n_drift = DRIFT_WINDOW - len(OUTLIERS)
    drifted = reference[rng.permutation(len(reference))][:n_drift] + rng.normal(0, NOISE, (n_drift, 4))
    for name, delta in SHIFT.items():
        drifted[:, FEATURES.index(name)] += delta
    at = sorted(rng.choice(np.arange(10, DRIFT_WINDOW - 10), size=len(OUTLIERS), replace=False))
    rows, ids, k = [], [], 0
    for i in range(DRIFT_WINDOW):
        if at and i == at[0]:
            at.pop(0)
            rows.append(OUTLIERS[len(ids) - k])
            ids.append(f"outlier-{len(ids) - k}")
        else:
            rows.append(drifted[k])
            ids.append(f"drift-{k}")
            k += 1
    return (np.round(ref, 3), [f"ref-{i}" for i in range(DRIFT_WINDOW)]), (np.round(np.array(rows), 3), ids)


# --- reading the topics --------------------------------------------------------------------


def decode(record) -> Any:
    from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event

    return from_binary_event(KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value))


class TopicReader:
    """Every CloudEvent of one topic from the beginning, read incrementally."""

    def __init__(self, bootstrap: str, topic: str):
        from kafka import KafkaConsumer

        # short metadata age: the detections topic appears only with the first detection
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            metadata_max_age_ms=1000,
        )
        self.events: list[Any] = []

    def until(
        self, done: Callable[[list[Any]], bool], timeout: float, alive: Callable[[], None] = lambda: None
    ) -> bool:
        deadline = time.monotonic() + timeout
        while not done(self.events):
            alive()
            if time.monotonic() > deadline:
                return False
            for records in self.consumer.poll(timeout_ms=500).values():
                self.events += [decode(r) for r in records]
        return True

    def close(self) -> None:
        self.consumer.close()


def body(event) -> dict:
    data = event.get_data()
    return json.loads(data) if isinstance(data, (bytes, str)) else data


def of_type(events: list, kind: str) -> list[dict]:
    return [body(e) for e in events if e.get_type() == f"io.infertap.detection.{kind}"]


def rows_covered(detections: list[dict]) -> int:
    return sum(d.get("n", 0) for d in detections)


def request_ids(events: list) -> dict[str, str]:
    """CloudEvent id -> the x-request-id the demo sent (from the `metadata` extension)."""
    out = {}
    for e in events:
        if e.get_type() == REQUEST_TYPE:
            meta = json.loads(e.get_attributes().get("metadata") or "{}")
            out[e.get_id()] = (meta.get("X-Request-Id") or [""])[0]
    return out


# --- printing ------------------------------------------------------------------------------


def print_drift(label: str, d: dict) -> list[str]:
    flagged = [f["name"] for f in d.get("features", []) if f.get("is_drift")]
    verdict = f"DRIFT on {', '.join(flagged)}" if d.get("is_drift") else "no drift"
    print(f"  {label}: {d['n']} rows, {verdict} (threshold p < {d.get('threshold', 0):.4f})")
    for f in d.get("features", []):
        shifted = f"  <- shifted by +{SHIFT[f['name']]}" if f["name"] in SHIFT and label.startswith("drifted") else ""
        print(
            f"    {f['name']:<13} p = {f['p_val']:<9.3g} KS distance {f['distance']:.3f}"
            f"{'  drift' if f.get('is_drift') else ''}{shifted}"
        )
    return flagged


def explain(client: httpx.Client, row: list[float]) -> dict:
    r = client.post(f"/v1/models/{ISVC}:explain", json={"instances": [row]}, timeout=90)
    if r.status_code != 200:
        raise DemoFailed(f":explain through the logger sidecar answered {r.status_code}: {r.text[:300]}")
    return r.json()["explanations"][0]


# --- the demo ------------------------------------------------------------------------------


def run(args: argparse.Namespace, log_dir: Path, children: dict[str, subprocess.Popen]) -> list[str]:
    """Everything between start and stop; returns the failed checks (sentences)."""
    failures: list[str] = []
    # Ports are chosen when free and bound a few seconds later; two demos starting together
    # would pick the same ones. The lock makes a second demo start once the first listens.
    with open(Path(tempfile.gettempdir()) / "infertap-demo-start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ports = {"predictor": free_port(8080), "logger": free_port(9081), "broker": free_port(9092)}
        print(f"infertap demo: `infertap up {SPEC.relative_to(ROOT)}` (logs in {log_dir})")
        children["up"] = start_up(log_dir, ports)
        processes = wait_up(children["up"], log_dir)
        print((log_dir / "up.log").read_text().rstrip())
        prom, prom_url = start_prometheus(processes, log_dir)
        if prom is not None:
            children["prometheus"] = prom
    check_up(children["up"], log_dir)
    bootstrap = f"127.0.0.1:{ports['broker']}"
    base = f"http://127.0.0.1:{ports['logger']}"
    (ref_rows, ref_ids), (drift_rows, drift_ids) = phases(np.load(ROOT / "models" / ISVC / "reference.npy"))
    detections = TopicReader(bootstrap, DETECTIONS_TOPIC)
    alive = lambda: check_up(children["up"], log_dir)  # noqa: E731
    traffic = Traffic()
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            print(
                f"\n1. reference traffic: {len(ref_rows)} training rows, shuffled, noise sd {NOISE}, "
                f"V1 and V2 alternately through the logger sidecar {base}"
            )
            send(client, ref_rows, ref_ids, traffic)
            if not detections.until(lambda ev: len(of_type(ev, "drift")) >= 1, args.timeout, alive):
                raise DemoFailed(
                    f"no drift verdict on the reference window within {args.timeout:.0f}s; "
                    f"see {log_dir}/iris-drift-detector.log"
                )
            print(
                f"2. drifted traffic: {len(drift_rows)} rows, {' and '.join(f'{k} +{v}' for k, v in SHIFT.items())}, "
                f"with {len(OUTLIERS)} planted outliers among them"
            )
            send(client, drift_rows, drift_ids, traffic)
            total = len(ref_rows) + len(drift_rows)
            ready = detections.until(
                lambda ev: len(of_type(ev, "drift")) >= 2 and rows_covered(of_type(ev, "outlier")) >= total,
                args.timeout,
                alive,
            )
            requests = traffic.ok + len(traffic.failed)
            print(
                f"\nrequests served: {traffic.ok} ok, {len(traffic.failed)} failed "
                f"({requests / traffic.seconds:.0f} req/s, one at a time)"
            )
            failures += [f"request {f}" for f in traffic.failed[:3]]

            events = TopicReader(bootstrap, EVENTS_TOPIC)
            events.until(lambda ev: len(ev) >= 2 * requests, 30)
            events.close()
            kinds = {
                t.rsplit(".", 1)[1]: sum(e.get_type() == t for e in events.events)
                for t in (REQUEST_TYPE, REQUEST_TYPE[:-7] + "response")
            }
            print(
                f"events delivered to Kafka topic {EVENTS_TOPIC!r}: {len(events.events)} "
                f"({', '.join(f'{n} {kind}' for kind, n in kinds.items())})"
            )
            if len(events.events) != 2 * traffic.ok:
                failures.append(f"expected {2 * traffic.ok} events on {EVENTS_TOPIC}, read {len(events.events)}")
            if not ready:
                failures.append(
                    f"the detectors did not cover all {total} requests within {args.timeout:.0f}s "
                    f"(see {log_dir}/iris-*-detector.log)"
                )

            drift = of_type(detections.events, "drift")
            print(f"\ndrift (ScipyKS per feature, windows of {DRIFT_WINDOW}, topic {DETECTIONS_TOPIC!r}):")
            # fewer than two verdicts is reported below
            for label, d in zip(("reference window", "drifted window"), drift, strict=False):
                flagged = print_drift(label, d)
                if label.startswith("reference") and d.get("is_drift"):
                    failures.append(f"drift was flagged on reference traffic ({', '.join(flagged)})")
                if label.startswith("drifted"):
                    missed = [f for f in SHIFT if f not in flagged]
                    if missed:
                        failures.append(f"no drift detected on the shifted feature(s) {', '.join(missed)}")
            if len(drift) < 2:
                failures.append(f"expected 2 drift verdicts, got {len(drift)}")

            outliers = of_type(detections.events, "outlier")
            ids = request_ids(events.events)
            flagged = [
                ids.get(eid, "?")
                for d in outliers
                for eid, hit in zip(d["event_ids"], d.get("is_outlier") or [], strict=False)  # no flags: no rows
                if hit
            ]
            planted = [i for i in flagged if i.startswith("outlier-")]
            others = [i for i in flagged if not i.startswith("outlier-")]
            print(
                f"\noutliers (SklearnIForest, 99th percentile of the training rows' scores, {len(outliers)} windows, "
                f"{rows_covered(outliers)} rows): {len(planted)} of {len(OUTLIERS)} planted outliers flagged; "
                f"{len(others)} other rows flagged ({sum(i.startswith('ref-') for i in others)} reference, "
                f"{sum(i.startswith('drift-') for i in others)} drifted)"
            )
            hits = sorted(
                (ids[eid], score, d["threshold"])
                for d in outliers
                for eid, hit, score in zip(
                    d["event_ids"], d.get("is_outlier") or [], d.get("instance_scores") or [], strict=False
                )
                if hit and ids.get(eid, "").startswith("outlier-")
            )
            for rid, score, threshold in hits:
                print(
                    f"    {rid}: {OUTLIERS[int(rid.split('-')[1])].tolist()} score {score:.3f} > threshold {threshold:.3f}"
                )
            if len(planted) < len(OUTLIERS):
                failures.append(f"only {len(planted)} of {len(OUTLIERS)} planted outliers were flagged")

            row = ref_rows[0].tolist()
            t0 = time.monotonic()
            exp = explain(client, row)
            order = np.argsort(-np.abs(np.array(exp["values"], dtype=float).reshape(-1)))
            print(
                f"\none explanation (POST {base}/v1/models/{ISVC}:explain, KernelSHAP, "
                f"{time.monotonic() - t0:.1f} s): row {row}"
            )
            target = exp.get("target")
            label = CLASSES[target] if isinstance(target, int) and 0 <= target < len(CLASSES) else target
            print(
                f"  predicted class {target} ({label}), model output {float(exp.get('prediction', 0)):.3f}, "
                f"base value {float(exp.get('base_value', 0)):.3f}; attributions to it, largest first:"
            )
            names, values = exp.get("feature_names") or FEATURES, np.array(exp["values"], dtype=float).reshape(-1)
            for j in order:
                print(f"    {names[j]:<13} {values[j]:+.3f}")
    finally:
        detections.close()

    report = log_dir / "report.html"
    r = subprocess.run(
        [sys.executable, "-m", "infertap", "report", ISVC, "--bootstrap", bootstrap, "--out", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if r.returncode != 0 or not report.exists():
        failures.append(f"`infertap report` exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")
    else:
        print(f"\nreport: {r.stdout.strip()}")
        print(
            f"  (drift p-values per window, outlier rate, and mean |attribution| per feature from the "
            f"explainer's stream worker, which explains 5 % of the logged requests into {ISVC}-explanations)"
        )

    print("\ndashboards:")
    if prom_url:
        up = httpx.get(f"{prom_url}/api/v1/query", params={"query": "up"}, timeout=10).json()["data"]["result"]
        print(
            f"  Prometheus {prom_url}: {sum(float(s['value'][1]) == 1 for s in up)} of {len(up)} targets up "
            f"(config {log_dir / 'prometheus.yml'}, alert rules dashboards/prometheus/alerts.yml)"
            + ("" if args.keep else "; it stops with the demo: `python -m examples.demo --keep` leaves it running")
        )
    print(
        "  Grafana: import dashboards/grafana/*.json (Serving, Logger, Drift and outliers, Explanations, LLM, Model quality) and pick a "
        "Prometheus datasource in the `datasource` variable;"
    )
    print(
        "  or the whole stack in containers: docker compose -f deploy/docker-compose.yaml up  -> Grafana "
        "http://localhost:3000 (dashboards provisioned), Prometheus http://localhost:9090"
    )
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="Leave the stack running after the summary, until Ctrl-C.")
    parser.add_argument("--timeout", type=float, default=90.0, help="Seconds to wait for each round of detections.")
    args = parser.parse_args()
    if not (ROOT / "models" / ISVC).exists():
        sys.exit("demo: models/ is missing; run `make models` (or `make demo`, which builds them)")
    log_dir = Path(tempfile.mkdtemp(prefix="infertap-demo-"))
    children: dict[str, subprocess.Popen] = {}
    failures: list[str] = []
    started = time.monotonic()
    try:
        failures = run(args, log_dir, children)
        if args.keep and not failures:
            print("\nthe stack keeps running (see the table above); Ctrl-C stops it")
            try:
                while children["up"].poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    except DemoFailed as exc:
        failures = [str(exc)]
    except Exception as exc:  # noqa: BLE001 - a sentence, not a traceback; `up`'s own error first when it stopped
        try:
            check_up(children["up"], log_dir) if "up" in children else None
            failures = [f"{type(exc).__name__}: {exc} (logs in {log_dir})"]
        except DemoFailed as up_failed:
            failures = [str(up_failed)]
    except KeyboardInterrupt:
        failures = ["interrupted"]
    finally:
        stop(children.get("prometheus"), signal.SIGTERM, 30)
        stop(children.get("up"), signal.SIGINT, 90)
    up = children.get("up")
    code = up.returncode if up is not None else None
    print(
        f"\nstopped every process the demo started (`infertap up` exited {code}"
        f"{', Prometheus too' if 'prometheus' in children else ''}); {time.monotonic() - started:.0f} s in all"
    )
    if code not in (0, None) and not failures:
        failures.append(f"`infertap up` exited {code}; see {log_dir / 'up.log'}")
    if failures:
        sys.exit("demo failed: " + "; ".join(failures))
    print("demo done.")


if __name__ == "__main__":
    main()
