"""Dynamic batching on the torch runtime: throughput at concurrency 32, batching on vs batch-1.

    python -m benchmarks.serving_batching [--duration 5] [--device auto|cpu|cuda] [--model torch-digits]

Both configurations serve the same TorchScript model (`models/<model>/model.pt`, the digits
CNN by default) from one server process each, started one after the other and driven by
the same load (V2 FP32 [1, 64] per request, concurrency 32) from a separate process. The
reference is the same server with `--no-dynamic-batching` (one model call per request).
The issue's goal (4x) is set for the GPU: on CPU the model call's cost grows with the batch
almost linearly, so the gain is smaller. Writes `benchmarks/results/serving_batching.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.processes import free_port as _free_port
from benchmarks.serving_throughput import ROOT, Server, run_loadgen

RESULTS = ROOT / "benchmarks" / "results"


def _device(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _measure(
    name: str, model: str, device: str, batching: bool, body: dict, args: argparse.Namespace, logs: Path
) -> dict:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "infertap.serving",
        "--model-name",
        model,
        "--model-format",
        "pytorch",
        "--storage-uri",
        str(ROOT / "models" / model),
        "--http-port",
        str(port),
        "--device",
        device,
        "--max-batch-size",
        str(args.max_batch_size),
        "--max-batch-wait-ms",
        str(args.max_batch_wait_ms),
        "--log-level",
        "warning",
    ]
    if not batching:
        cmd.append("--no-dynamic-batching")
    server = Server(name, cmd, port, logs / f"{name}.log", None)
    try:
        _wait(server, model)
        cpu0 = server.cpu_seconds()
        run = run_loadgen(
            f"{server.base}/v2/models/{model}/infer", body, args.concurrency, args.duration, args.warmup, None
        )
        run["server_cpu_s"] = round(server.cpu_seconds() - cpu0, 3)
        return run
    finally:
        server.stop()


def _wait(server: Server, model: str, timeout: float = 120.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.tail()}")
        try:
            with urllib.request.urlopen(f"{server.base}/v2/models/{model}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready:\n{server.tail()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="torch-digits")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-batch-wait-ms", type=float, default=2.0)
    args = p.parse_args(argv)
    model_dir = ROOT / "models" / args.model
    if not (model_dir / "model.pt").exists():
        print(f"serving_batching: {model_dir}/model.pt is missing; run `make models`", file=sys.stderr)
        return 2
    row = np.load(model_dir / "reference.npy")[0].astype(np.float32).reshape(1, -1)
    body = {"inputs": [{"name": "input-0", "shape": list(row.shape), "datatype": "FP32", "data": row.ravel().tolist()}]}
    device = _device(args.device)
    with tempfile.TemporaryDirectory(prefix="infertap-bench-") as tmp:
        batched = _measure("batched", args.model, device, True, body, args, Path(tmp))
        single = _measure("batch1", args.model, device, False, body, args, Path(tmp))
    ratio = batched["throughput_rps"] / single["throughput_rps"] if single["throughput_rps"] else None
    result = {
        "benchmark": "serving_batching",
        "model": args.model,
        "device": device,
        "concurrency": args.concurrency,
        "max_batch_size": args.max_batch_size,
        "max_batch_wait_ms": args.max_batch_wait_ms,
        "dynamic_batching": batched,
        "batch_1": single,
        "throughput_ratio": round(ratio, 2) if ratio else None,
        "goal": "at least 4x on the GPU",
        "machine": {"cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()]},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving_batching.json").write_text(json.dumps(result, indent=2))
    print(
        f"{device}: dynamic batching {batched['throughput_rps']:.0f} req/s, batch-1 {single['throughput_rps']:.0f} "
        f"req/s at c={args.concurrency}: {result['throughput_ratio']}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
