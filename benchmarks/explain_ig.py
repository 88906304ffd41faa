"""Benchmark 2: IntegratedGradients on the digits CNN, served vs raw captum, same run.

- raw: captum's IntegratedGradients on the TorchScript model loaded here;
- served: `python -m infertap.explainers --explainer-type IntegratedGradients` (a child process)
  answering `POST /v1/models/torch-digits:explain` over HTTP (JSON in and out);

same n_steps, method, internal_batch_size and zeros baseline, batches of 1 and 16
instances, interleaved request by request. Goal (issue 5): served within 1.2x of raw. On
CPU here (the child and this process share the 2 cores, one at a time); CUDA runs
automatically where torch sees a GPU. The ResNet-sized model of the issue is not measured
here (CPU-only machine): `--resnet` adds a ResNet-18-sized TorchScript CNN when asked.

    python -m benchmarks.explain_ig [--requests 20] [--n-steps 50]

Writes benchmarks/results/explain_ig.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import numpy as np

from benchmarks.explain_common import MODELS, Child, environment, free_port, summary, write


def resnet_like(path: Path) -> Path:
    """A ResNet-18-sized CNN (random weights) for 3x64x64 inputs, saved as TorchScript."""
    import torch
    from torch import nn

    def block(cin, cout, stride):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )

    model = nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3),
        nn.ReLU(),
        block(64, 64, 1),
        block(64, 64, 1),
        block(64, 128, 2),
        block(128, 128, 1),
        block(128, 256, 2),
        block(256, 256, 1),
        block(256, 512, 2),
        block(512, 512, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, 1000),
    ).eval()
    torch.jit.script(model).save(str(path))
    return path


def run_case(
    name: str, model_path: Path, X: np.ndarray, batch: int, requests: int, n_steps: int, ibs: int, tmp: Path
) -> dict:
    import torch
    from captum.attr import IntegratedGradients

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.jit.load(str(model_path)).eval()
    ig = IntegratedGradients(model)
    port = free_port()
    child = Child(
        [
            sys.executable,
            "-m",
            "infertap.explainers",
            "--name",
            name,
            "--explainer-type",
            "IntegratedGradients",
            "--storage-uri",
            str(model_path),
            "--model-format",
            "pytorch",
            "--http-port",
            str(port),
            "--n-steps",
            str(n_steps),
            "--internal-batch-size",
            str(ibs),
            "--max-instances",
            "64",
            "--deadline-s",
            "600",
        ],
        f"http://127.0.0.1:{port}/v2/health/ready",
        tmp / f"explainer-{name}.log",
    )
    url = f"http://127.0.0.1:{port}/v1/models/{name}:explain"
    times = {"raw": [], "served": []}
    try:
        with httpx.Client(timeout=600) as client:

            def served(x):
                r = client.post(url, json={"instances": x.tolist()})
                r.raise_for_status()
                return r.json()

            def raw(x):
                inputs = torch.from_numpy(x)
                with torch.no_grad():
                    target = model(inputs).argmax(1)
                return ig.attribute(
                    inputs,
                    baselines=torch.zeros_like(inputs),
                    target=target,
                    n_steps=n_steps,
                    method="gausslegendre",
                    internal_batch_size=ibs,
                    return_convergence_delta=True,
                )

            served(X[:batch]), raw(X[:batch])  # warm both
            for i in range(requests):
                x = X[(i * batch) % (len(X) - batch) :][:batch]
                t = time.perf_counter()
                attributions, _ = raw(x)
                times["raw"].append(time.perf_counter() - t)
                t = time.perf_counter()
                body = served(x)
                times["served"].append(time.perf_counter() - t)
            diff = float(
                np.abs(
                    np.array([e["values"] for e in body["explanations"]])
                    - attributions.detach().numpy().reshape(len(x), -1)
                ).max()
            )
    finally:
        child.stop()
    raw_s, served_s = summary(times["raw"]), summary(times["served"])
    return {
        "batch": batch,
        "raw": raw_s,
        "served": served_s,
        "served_over_raw": served_s["median_ms"] / raw_s["median_ms"],
        "max_abs_diff_served_vs_raw": diff,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--n-steps", type=int, default=50)
    p.add_argument("--internal-batch-size", type=int, default=256)
    p.add_argument("--resnet", action="store_true", help="also a ResNet-18-sized CNN on 3x64x64 inputs (slow on CPU)")
    a = p.parse_args()
    X = np.load(MODELS / "torch-digits" / "reference.npy").astype(np.float32)
    result = {
        "benchmark": "explain_ig",
        "environment": environment(),
        "n_steps": a.n_steps,
        "internal_batch_size": a.internal_batch_size,
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for batch in (1, 16):
            result["cases"][f"digits-cnn batch {batch}"] = run_case(
                "torch-digits",
                MODELS / "torch-digits" / "model.pt",
                X,
                batch,
                a.requests,
                a.n_steps,
                a.internal_batch_size,
                tmp,
            )
        if a.resnet:
            images = np.random.default_rng(0).random((32, 3, 64, 64), dtype=np.float32)
            result["cases"]["resnet18-sized batch 1"] = run_case(
                "resnet",
                resnet_like(tmp / "resnet.pt"),
                images,
                1,
                max(3, a.requests // 4),
                a.n_steps,
                min(a.internal_batch_size, 64),
                tmp,
            )
        else:
            result["resnet"] = "not measured (CPU-only machine); run with --resnet, on a GPU for the issue's figure"
    result["goal"] = "served within 1.2x of raw captum (issue 5)"
    write("explain_ig", result)


if __name__ == "__main__":
    main()
