"""Embedding drift per window of prompts: the TextMMDDrift worker end to end from Kafka vs the same work done directly.

Same run, same texts, `--rounds` times (3), each round:
- `direct`: what a user would write without infertap, on each window's prompts: the same
  all-MiniLM-L6-v2 folder loaded directly with transformers (`AutoModel`, `AutoTokenizer`),
  encoded sentence-transformers style (sorted by length, batches of 64 (CPU) or 256 (CUDA),
  truncation at 256 tokens, mean pooling over the attention mask, L2 normalisation), then the
  same MMD permutation test (`infertap.detectors.text.mmd.mmd_test`, same reference
  embeddings, same σ, same permutations) called directly; timed before and after the worker
  (the machine may be shared, so load drifts);
- `worker`: `infertap detect` as it runs: confluent-kafka consumer group on the embedded
  broker, reader thread turning each window of logged chat requests (OpenAI bodies, as the
  sidecar logs them) into a text frame, TextMMDDrift (loaded from the folder `infertap fit`
  wrote) in the worker's detector process embedding the window and testing it, detection
  published and acked, offsets committed; timed in steady state between its first and last
  published window (the group join and the model load are left out); a new consumer group
  each round.
Besides: sentence-transformers' own `encode` on the same windows (`sentence_transformers`),
showing the direct path is what that library does.

Goal (issue 17): worker throughput at least 0.8x the direct throughput (prompts per second,
means over windows, median round). CUDA is used when torch sees it; GPU figures need a lent
device (this machine has none: `device` in the JSON says which ran). Writes
benchmarks/results/text_drift.json.

    python -m benchmarks.text_drift [--rounds 3] [--windows 6] [--window-size 1000] [--reference-size 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import threading
import time
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MODEL = ROOT / "models" / "all-minilm-l6-v2"
GOAL = 0.8

TOPICS = ("password", "billing", "refund", "shipping", "account", "invoice", "subscription", "delivery", "order")
HOBBIES = ("sourdough baking", "alpine hiking", "jazz guitar", "chess openings", "watercolour painting")
SHORT = (
    "How do I change my {t} settings?",
    "I have a question about the {t} for order {n}, can you check what happened with it?",
    "Can you help me with my {t}? It has not worked since {n} days and I need it fixed today.",
    "What is your policy on {t} for an order placed more than {n} days ago?",
)
LONG = (
    "Could you write me a detailed, step-by-step beginner's guide to {h}, including the equipment I would need "
    "and a practice schedule for {n} weeks?",
    "Please compare three approaches to {h} for someone with {n} hours a week, with advantages and drawbacks.",
)


def prompts(n: int, seed: int, shifted: bool = False) -> list[str]:
    """Templated support questions (or, shifted, hobby requests), of varied lengths."""
    rng = random.Random(seed)
    if shifted:
        return [rng.choice(LONG).format(h=rng.choice(HOBBIES), n=rng.randint(2, 99)) for _ in range(n)]
    return [rng.choice(SHORT).format(t=rng.choice(TOPICS), n=rng.randint(2, 99_999)) for _ in range(n)]


def make_windows(windows: int, size: int) -> list[list[str]]:
    """Every other window drifts (a third of its prompts shifted)."""
    out = []
    for w in range(windows):
        texts = prompts(size, seed=100 + w)
        if w % 2:
            third = size // 3
            texts[:third] = prompts(third, seed=200 + w, shifted=True)
        out.append(texts)
    return out


def produce(bootstrap: str, topic: str, windows: list[list[str]]) -> float:
    """One chat request CloudEvent per prompt, as the sidecar logs them (confluent producer)."""
    from cloudevents.core.bindings import kafka as ce_kafka
    from confluent_kafka import Producer

    from infertap.logger.events import EventBuilder

    builder = EventBuilder(source="http://bench/", inference_service="bench", component="predictor")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    started = time.perf_counter()
    for texts in windows:
        for text in texts:
            body = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": text}]})
            event = builder.request(str(uuid.uuid4()), body, "application/json", "{}")
            message = ce_kafka.to_binary_event(event, key_mapper=lambda e: e.get_id())
            producer.produce(topic, key=message.key, value=message.value, headers=list(message.headers.items()))
            producer.poll(0)
    producer.flush(60)
    return time.perf_counter() - started


class Direct:
    """The reference: the model loaded directly with transformers, encoded as sentence-transformers does."""

    def __init__(self, model: Path, device: str, batch_size: int, max_tokens: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch, self.device = torch, torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
        dtype = torch.float16 if device == "cuda" else torch.float32
        self.model = AutoModel.from_pretrained(model, dtype=dtype, local_files_only=True).to(self.device).eval()
        self.batch_size, self.max_tokens = batch_size, max_tokens

    def encode(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                picked = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in picked],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[picked] = torch.nn.functional.normalize(pooled, p=2, dim=1).cpu().numpy()
        return out


def direct_run(direct: Direct, backend: Any, windows: list[list[str]], permutations: int) -> dict:
    """Encode and test each window directly (the first window once before, as a warm-up)."""
    from infertap.detectors.text.mmd import mmd_test

    ref = backend._ref_on_device
    if ref is None:
        import torch

        ref = torch.as_tensor(backend.x_ref, device=direct.device)

    def one(texts: list[str]) -> tuple[float, bool]:
        emb = direct.encode(texts)
        result = mmd_test(ref, emb, backend.sigma, permutations, 0.05, direct.device, seed=0)
        if direct.device.type == "cuda":
            direct.torch.cuda.synchronize()
        return result.p_val, result.p_val < 0.05

    one(windows[0])
    times, verdicts = [], []
    cpu = time.process_time()
    for texts in windows:
        started = time.perf_counter()
        verdicts.append(one(texts)[1])
        times.append(time.perf_counter() - started)
    mean = statistics.mean(times)
    return {
        "seconds_per_window": mean,
        "prompts_per_s": len(windows[0]) / mean,
        "cpu_seconds_per_window": (time.process_time() - cpu) / len(windows),
        "drift": verdicts,
    }


def st_encode_run(model: Path, device: str, batch_size: int, windows: list[list[str]]) -> dict:
    """sentence-transformers' own encode on the same windows (encode only)."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model), device=device)
    st.encode(windows[0][:batch_size], batch_size=batch_size)
    times = []
    for texts in windows:
        started = time.perf_counter()
        st.encode(texts, batch_size=batch_size, normalize_embeddings=True)
        times.append(time.perf_counter() - started)
    mean = statistics.mean(times)
    return {"encode_seconds_per_window": mean, "prompts_per_s": len(windows[0]) / mean}


def _cpu_seconds(pid: int | None = None) -> float:
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_worker(bootstrap: str, topic: str, saved: Path, windows: int, size: int, params: dict) -> dict:
    """The worker as `infertap detect` runs it: reader thread, judge thread, detector in its own process."""
    from infertap.detectors.predictor import RemoteEvaluator
    from infertap.detectors.settings import WorkerSettings
    from infertap.detectors.worker import Worker

    settings = WorkerSettings(
        name=f"bench-{uuid.uuid4().hex[:6]}",
        inference_service="bench",
        bootstrap=bootstrap,
        topic=topic,
        features=[{"name": "prompt", "type": "text"}],
        detector="TextMMDDrift",
        params=params,
        saved_detector=saved,
        window={"size": size},
        output_topic=f"{topic}-detections",
    )
    worker = Worker(settings, evaluator=RemoteEvaluator(settings))  # the model loads here, before the clock
    child = worker.evaluator._proc.pid
    stamps: list[float] = []
    verdicts: list[bool] = []
    cpu: list[tuple[float, float]] = []
    done = threading.Event()
    parts = {"decode": 0.0, "predict": 0.0}
    deliver, decode = worker.publisher.detection, worker.decoder.decode

    def decoded(events):  # on the reader thread
        started = time.perf_counter()
        try:
            return decode(events)
        finally:
            parts["decode"] += time.perf_counter() - started

    def delivered(window, result, seconds):
        deliver(window, result, seconds)
        parts["predict"] += seconds
        stamps.append(time.perf_counter())
        verdicts.append(bool(result.is_drift))
        if len(stamps) in (1, windows):
            cpu.append((_cpu_seconds(), _cpu_seconds(child)))
        if len(stamps) == windows:
            done.set()

    def run():
        try:
            worker.run()
        finally:
            done.set()

    worker.publisher.detection, worker.decoder.decode = delivered, decoded  # type: ignore[method-assign]
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    done.wait(1800)
    worker.stop()
    thread.join(60)
    if len(stamps) < windows:
        raise RuntimeError(f"worker published {len(stamps)} of {windows} windows")
    steady = (stamps[-1] - stamps[0]) / (windows - 1)
    (parent_a, child_a), (parent_b, child_b) = cpu
    return {
        "seconds_per_window": steady,
        "median_seconds_per_window": statistics.median(b - a for a, b in pairwise(stamps)),
        "prompts_per_s": size / steady,
        "decode_seconds_per_window": parts["decode"] / windows,
        "predict_seconds_per_window": parts["predict"] / windows,
        "cpu_seconds_per_window": {
            "worker_process": (parent_b - parent_a) / (windows - 1),
            "detector_process": (child_b - child_a) / (windows - 1),
        },
        "drift": verdicts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=6, help="windows per worker run (the first one warms up)")
    parser.add_argument("--window-size", type=int, default=1000)
    parser.add_argument("--reference-size", type=int, default=1000)
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--no-st", action="store_true", help="skip sentence-transformers' own encode")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of both paths (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "text_drift.json")
    args = parser.parse_args(argv)

    import torch
    from kafka.admin import KafkaAdminClient, NewTopic

    from benchmarks.processes import free_port
    from infertap.detectors.backends.registry import create_backend
    from infertap.stack.broker import EmbeddedBroker

    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    batch = 256 if device == "cuda" else 64
    params: dict[str, Any] = {"model": str(args.model), "device": device, "permutations": args.permutations}
    if args.threads:
        torch.set_num_threads(args.threads)
        params["threads"] = args.threads
    windows = make_windows(args.windows, args.window_size)
    rounds = []
    with EmbeddedBroker(port=free_port()) as broker, tempfile.TemporaryDirectory() as work:
        backend = create_backend(
            "TextMMDDrift", ["prompt"], {**params, "holdout": 0.1, "n_reference": args.reference_size}
        )
        fit_started = time.perf_counter()
        backend.fit(prompts(int(args.reference_size / 0.9) + 1, seed=1))
        fit_s = time.perf_counter() - fit_started
        saved = Path(work) / "detector"
        backend.save(saved)
        direct = Direct(args.model, device, batch)
        topic = f"bench-text-{uuid.uuid4().hex[:6]}"
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(topic, 1, 1)])
        admin.close()
        produce_s = produce(broker.bootstrap, topic, windows)
        for r in range(args.rounds):
            load_before = os.getloadavg()
            before = direct_run(direct, backend, windows, args.permutations)
            worker = run_worker(broker.bootstrap, topic, saved, args.windows, args.window_size, params)
            after = direct_run(direct, backend, windows, args.permutations)
            direct_s = (before["seconds_per_window"] + after["seconds_per_window"]) / 2
            direct_cpu = (before["cpu_seconds_per_window"] + after["cpu_seconds_per_window"]) / 2
            ratio = worker["prompts_per_s"] / (args.window_size / direct_s)
            worker_cpu = sum(worker["cpu_seconds_per_window"].values())
            rounds.append(
                {
                    # CPU of both worker processes per window against the direct path's: what the platform costs
                    "cpu_ratio_worker_to_direct": worker_cpu / direct_cpu,
                    "direct": {
                        "seconds_per_window": direct_s,
                        "prompts_per_s": args.window_size / direct_s,
                        "cpu_seconds_per_window": direct_cpu,
                        "runs": [before, after],
                    },
                    "worker": worker,
                    "throughput_ratio_worker_to_direct": ratio,
                    "load_average_before": load_before,
                    "load_average_after": os.getloadavg(),
                }
            )
            print(f"round {r + 1}: worker/direct throughput {ratio:.3f}, load {os.getloadavg()}", flush=True)
        st = None if args.no_st else st_encode_run(args.model, device, batch, windows)
    ratios = [r["throughput_ratio_worker_to_direct"] for r in rounds]
    ratio = statistics.median(ratios)
    same_verdicts = all(r["worker"]["drift"] == r["direct"]["runs"][0]["drift"] for r in rounds)
    result = {
        "benchmark": "text_drift",
        "detector": f"TextMMDDrift (all-MiniLM-L6-v2, {args.permutations} permutations, p_val 0.05)",
        "device": device,
        "gpu": "measured" if device == "cuda" else "not measured: needs a lent GPU machine (none this session)",
        "windows": args.windows,
        "window_size": args.window_size,
        "reference_embeddings": int(len(backend.x_ref)),
        "payload": "OpenAI chat requests as the sidecar logs them, one CloudEvent each (binary mode)",
        "rounds": len(rounds),
        "throughput_ratio_worker_to_direct": ratio,
        "throughput_ratio_rounds": ratios,
        "goal_ratio": GOAL,
        "meets_goal": ratio >= GOAL,
        "cpu_ratio_worker_to_direct_median": statistics.median(r["cpu_ratio_worker_to_direct"] for r in rounds),
        "worker_prompts_per_s_median": statistics.median(r["worker"]["prompts_per_s"] for r in rounds),
        "direct_prompts_per_s_median": statistics.median(r["direct"]["prompts_per_s"] for r in rounds),
        "sentence_transformers_encode": st,
        "same_verdicts_as_direct": same_verdicts,
        "fit_seconds": fit_s,
        "produce_prompts_per_s": args.windows * args.window_size / produce_s,
        "per_round": rounds,
        "load_average": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "per_round"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
