"""MMDDrift (alibi-detect, pytorch backend) on a 5,000 x 32 window against a 5,000 x 32 reference.

    python -m benchmarks.detector_mmd [--repeats 3] [--n 5000] [--d 32] [--permutations 100]

Times `predict` (kernel matrix + permutation test) through our backend, and alibi-detect's
own `predict` on the same arrays beside it, on CPU and, when torch sees one, on CUDA.
Goal (issue 4): at most 100 ms per window on the GPU. JSON to benchmarks/results/detector_mmd.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "detector_mmd.json"


def timed(fn, repeats: int, warm_up: bool = True) -> dict:
    if warm_up:  # CUDA context, kernels, allocator; on 2 CPU cores one predict takes minutes, so none there
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return {
        "median_ms": round(1000 * float(np.median(times)), 1),
        "min_ms": round(1000 * min(times), 1),
        "runs_ms": [round(1000 * t, 1) for t in times],
    }


def bench(device: str, x_ref: np.ndarray, x: np.ndarray, permutations: int, repeats: int) -> dict:
    import torch

    from infertap.detectors.backends.registry import create_backend

    backend = create_backend(
        "MMDDrift", [f"f{j}" for j in range(x.shape[1])], {"n_permutations": permutations, "device": device}
    )
    started = time.perf_counter()
    backend.fit(x_ref)
    init_s = time.perf_counter() - started

    def ours():
        backend.predict(x)
        if device == "cuda":
            torch.cuda.synchronize()

    def direct():
        backend.detector.predict(x)
        if device == "cuda":
            torch.cuda.synchronize()

    result = backend.predict(x)
    warm = device == "cuda"
    return {
        "device": device,
        "init_s": round(init_s, 2),
        "infertap_predict": timed(ours, repeats, warm),
        "alibi_detect_predict": timed(direct, repeats, warm),
        "p_val": result.p_val,
        "is_drift": result.is_drift,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs on CUDA")
    parser.add_argument("--cpu-repeats", type=int, default=1, help="timed runs on CPU (about 1-3 min each on 2 cores)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import torch

    rng = np.random.default_rng(0)
    x_ref = rng.normal(size=(args.n, args.d)).astype(np.float32)
    x = (rng.normal(size=(args.n, args.d)) + 0.05).astype(np.float32)
    torch.manual_seed(0)
    runs = {"cpu": bench("cpu", x_ref, x, args.permutations, args.cpu_repeats)}
    if torch.cuda.is_available():
        runs["cuda"] = bench("cuda", x_ref, x, args.permutations, args.repeats)
        runs["cuda"]["gpu"] = torch.cuda.get_device_name(0)
        runs["cpu_over_cuda"] = round(
            runs["cpu"]["infertap_predict"]["median_ms"] / runs["cuda"]["infertap_predict"]["median_ms"], 1
        )
    else:
        runs["cuda"] = {"measured": False, "why": "torch.cuda.is_available() is False on this machine"}
    report = {
        "benchmark": "MMDDrift predict, pytorch backend, reference and window of n x d float32",
        "n": args.n,
        "d": args.d,
        "n_permutations": args.permutations,
        "repeats": args.repeats,
        "cpu_repeats": args.cpu_repeats,
        "goal": "<= 100 ms per window on the GPU",
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": torch.get_num_threads()},
        **runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
