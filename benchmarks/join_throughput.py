"""Join throughput: labelled predictions per second of one realised-performance worker, against
the raw consumer's read rate on the same two topics, in the same run.

Setup, once: the embedded broker, `<bench>-events` and `<bench>-feedback` with `--partitions`
each, `--pairs` request and response events as the logger writes them in its default mode
(V1, the response with class probabilities, keyed by id) and then as many labels (`io.infertap.feedback`, keyed by the same ids: co-partitioned),
written with the stream contract's producer. Labels come after their predictions, as they do
in production: the worker holds every prediction in its durable state (SQLite) until its
label comes.

Each of `--rounds` rounds (default 3):
- `raw`: a confluent-kafka consumer from the stream contract's factory, subscribed to both
  topics, reads every record (`consume` batches of 5,000, nothing done with them): records/s,
  and pairs/s (a pair is its request, response and label records: three records);
- `worker`: `PerformanceWorker` (what `infertap detect` runs), a fresh consumer group and state
  folder, window of `--window` labelled predictions; timed between the poll that gave its first
  records and its last published window (the group join left out): every record decoded,
  every prediction held in the state until its label came, the state made durable each poll,
  each window's figures computed and published (acked), the offsets committed. CPU seconds
  of this process over the same span, per 1,000 pairs, beside it.

Result: the median round's joined pairs/s (goal: at least 20,000/s) and its ratio to the raw
pairs/s; beside it, pairs per CPU second of the worker's process (what a core of its own
gives: on a shared machine the wall clock moves with the load). Writes
benchmarks/results/join_throughput.json.

    python -m benchmarks.join_throughput [--pairs 100000] [--rounds 3] [--window 1000] [--partitions 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_PAIRS_PER_S = 20_000
CLASSES = ["setosa", "versicolor", "virginica"]


def produce(bootstrap: str, events: str, feedback: str, pairs: int, requests: bool = True, seed: int = 0) -> float:
    """`pairs` responses (each after its request, when `requests`), then their labels; seconds it took."""
    import numpy as np

    from infertap.logger.events import EventBuilder
    from infertap.logger.sinks.kafka_records import to_record
    from infertap.stream import clients
    from infertap.stream.feedback import Feedback, feedback_event

    rng = np.random.default_rng(seed)
    proba = rng.dirichlet([1, 1, 1], pairs)
    truth = rng.integers(0, 3, pairs)
    builder = EventBuilder(source="http://bench/", inference_service="bench", component="predictor")
    producer = clients.producer(
        bootstrap,
        client_id="bench",
        log_name="benchmarks.join.librdkafka",
        linger_ms=20,
        properties={"queue.buffering.max.messages": 1_000_000},
    )
    now = datetime.now(UTC)
    started = time.perf_counter()
    ids = [f"b-{i}" for i in range(pairs)]
    request = orjson.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]})
    for i, ident in enumerate(ids):
        if requests:  # the logger's default mode logs both: the worker reads past every request
            key, value, headers = to_record(builder.request(ident, request, "application/json", "{}", now))
            _produce(producer, events, key, value, headers)
        body = orjson.dumps({"predictions": [proba[i].round(4).tolist()]})
        key, value, headers = to_record(builder.response(ident, body, "application/json", "{}", 200, now))
        _produce(producer, events, key, value, headers)
    for i, ident in enumerate(ids):
        key, value, headers = to_record(feedback_event(Feedback(ident, CLASSES[truth[i]]), "bench", "bench", now))
        _produce(producer, feedback, key, value, headers)
    producer.flush(120)
    return time.perf_counter() - started


def _produce(producer, topic: str, key: str, value: bytes, headers: list) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, headers=headers)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.1)


def raw_read(bootstrap: str, topics: list[str], total: int, pairs: int) -> dict:
    """The stream contract's consumer on both topics, doing nothing with what it reads."""
    from infertap.stream import clients

    consumer = clients.consumer(
        bootstrap, f"bench-raw-{uuid.uuid4().hex[:6]}", client_id="bench-raw", log_name="benchmarks.join.librdkafka"
    )
    consumer.subscribe(topics)
    n, started = 0, None
    deadline = time.monotonic() + 300
    while n < total and time.monotonic() < deadline:
        batch = consumer.consume(5000, 1.0)
        if batch and started is None:
            started = time.perf_counter()
        n += sum(1 for m in batch if m.error() is None)
    seconds = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return {"records": n, "seconds": seconds, "records_per_s": n / seconds, "pairs_per_s": pairs / seconds}


def run_worker(bootstrap: str, isvc: str, pairs: int, window: int, partitions: int) -> dict:
    """The worker in this process, timed between its first and last window."""
    from prometheus_client import CollectorRegistry

    from infertap.detectors.performance.metrics import PerformanceMetrics
    from infertap.detectors.performance.settings import PerformanceSettings
    from infertap.detectors.performance.worker import PerformanceWorker

    windows = pairs // window
    with tempfile.TemporaryDirectory() as state:
        settings = PerformanceSettings(
            name=f"bench-{uuid.uuid4().hex[:6]}",
            inference_service=isvc,
            bootstrap=bootstrap,
            params={"task": "classification", "classes": CLASSES},
            window={"size": window},
            state_dir=Path(state),
        )
        worker = PerformanceWorker(settings, PerformanceMetrics(isvc, settings.name, CLASSES, CollectorRegistry()))
        stamps: list[float] = []
        cpu: list[float] = []
        done = threading.Event()
        publish, step = worker.publish, worker.step
        first: list[float] = []

        def stepped(records):
            if records and not first:  # the first records read: the group has joined, the clock starts
                first.append(time.perf_counter())
                cpu.append(time.process_time())
            step(records)

        def published(pairs_of_window):
            publish(pairs_of_window)
            stamps.append(time.perf_counter())
            if len(stamps) == windows:
                cpu.append(time.process_time())
                done.set()

        def run():
            try:
                worker.run()
            finally:
                done.set()

        worker.publish, worker.step = published, stepped  # type: ignore[method-assign]
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        done.wait(600)
        worker.stop()
        thread.join(60)
        state_bytes = sum(p.stat().st_size for p in Path(state).glob("*.sqlite*"))
    if len(stamps) < windows:
        raise RuntimeError(f"the worker published {len(stamps)} of {windows} windows")
    seconds = stamps[-1] - first[0]  # every record read, every prediction held, every pair joined and published
    joined = window * windows
    return {
        "windows": len(stamps),
        "pairs_per_s": joined / seconds,
        "seconds": seconds,
        "cpu_seconds_per_1000_pairs": (cpu[-1] - cpu[0]) / joined * 1000,
        # what one core of its own would give: this machine is shared, the wall clock moves with its load
        "pairs_per_cpu_s": joined / (cpu[-1] - cpu[0]),
        "state_bytes_after": state_bytes,
        "partitions": partitions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument(
        "--no-requests", action="store_true", help="Leave the request events out of the events topic (responses only)."
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "join_throughput.json")
    args = parser.parse_args(argv)
    if args.pairs < 2 * args.window:
        parser.error("--pairs must be at least two windows")

    from kafka.admin import KafkaAdminClient, NewTopic

    from benchmarks.processes import free_port
    from infertap.stack.broker import EmbeddedBroker
    from infertap.stream.topics import topics

    isvc = f"bench-{uuid.uuid4().hex[:6]}"
    names = topics(isvc)
    with EmbeddedBroker(port=free_port()) as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(t, args.partitions, 1) for t in (names.events, names.feedback)])
        admin.close()
        produce_s = produce(broker.bootstrap, names.events, names.feedback, args.pairs, not args.no_requests)
        records_in_all = (3 if not args.no_requests else 2) * args.pairs
        rounds = []
        for r in range(args.rounds):
            load = os.getloadavg()
            raw = raw_read(broker.bootstrap, [names.events, names.feedback], records_in_all, args.pairs)
            worker = run_worker(broker.bootstrap, isvc, args.pairs, args.window, args.partitions)
            rounds.append(
                {
                    "raw": raw,
                    "worker": worker,
                    "ratio_worker_to_raw": worker["pairs_per_s"] / raw["pairs_per_s"],
                    "load_average_before": load,
                    "load_average_after": os.getloadavg(),
                }
            )
            print(
                f"round {r + 1}: worker {worker['pairs_per_s']:,.0f} pairs/s, raw {raw['pairs_per_s']:,.0f} pairs/s, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    median = statistics.median(r["worker"]["pairs_per_s"] for r in rounds)
    result = {
        "benchmark": "join_throughput",
        "pairs": args.pairs,
        "window": args.window,
        "partitions": args.partitions,
        "payload": "V1 response with 3 class probabilities per prediction (after its V1 request event unless "
        "--no-requests); an io.infertap.feedback label per id",
        "records": records_in_all,
        "order": "every prediction first, then every label (each prediction waits in the durable state)",
        "rounds": len(rounds),
        "worker_pairs_per_s_median": median,
        "worker_pairs_per_cpu_s_median": statistics.median(r["worker"]["pairs_per_cpu_s"] for r in rounds),
        "raw_pairs_per_s_median": statistics.median(r["raw"]["pairs_per_s"] for r in rounds),
        "raw_records_per_s_median": statistics.median(r["raw"]["records_per_s"] for r in rounds),
        "ratio_worker_to_raw_median": statistics.median(r["ratio_worker_to_raw"] for r in rounds),
        "goal_pairs_per_s": GOAL_PAIRS_PER_S,
        "meets_goal": median >= GOAL_PAIRS_PER_S,
        "meets_goal_on_cpu": statistics.median(r["worker"]["pairs_per_cpu_s"] for r in rounds) >= GOAL_PAIRS_PER_S,
        "produce_records_per_s": records_in_all / produce_s,
        "per_round": rounds,
        "load_average": os.getloadavg(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "per_round"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
