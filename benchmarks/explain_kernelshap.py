"""Benchmark 3: KernelSHAP per instance through the HTTP predictor vs the in-process model, same run.

The xgboost-cancer model (30 features) behind the real model server, a 20-row k-means
background, `nsamples` perturbations per instance. Three paths, interleaved instance by
instance so machine noise hits them alike:

- in-process: `shap.KernelExplainer` on the Booster loaded here (the reference);
- served V2: infertap's KernelShap backend, perturbations to the model server over V2 with
  binary tensors and `infertap-skip-logging: true`;
- served V1: the same over V1 JSON.

Also PermutationShap (infertap's vectorised estimator: one model call per instance) over V2.
Reports median ms per instance, the ratio to in-process, predictor requests per instance
and the largest difference of SHAP values from the in-process ones.

    python -m benchmarks.explain_kernelshap [--instances 20] [--nsamples 500]

Writes benchmarks/results/explain_kernelshap.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.explain_common import MODELS, environment, model_server, summary, write


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--instances", type=int, default=20)
    p.add_argument("--nsamples", type=int, default=500)
    p.add_argument("--background", type=int, default=20)
    a = p.parse_args()

    import shap
    import xgboost as xgb

    from infertap.explainers.backends import ExplainOptions, create_explainer
    from infertap.explainers.backgrounds import kmeans_background
    from infertap.explainers.settings import ExplainerSettings

    reference = np.load(MODELS / "xgboost-cancer" / "reference.npy")
    X = reference[np.random.default_rng(1).choice(len(reference), a.instances, replace=False)]
    centres, weights = kmeans_background(reference, a.background)
    booster = xgb.Booster()
    booster.load_model(str(MODELS / "xgboost-cancer" / "model.json"))

    def local_proba(Z):
        p1 = booster.inplace_predict(np.asarray(Z, dtype=np.float32), validate_features=False)
        return np.column_stack([1 - p1, p1])

    from shap.utils._legacy import DenseData

    local = shap.KernelExplainer(local_proba, DenseData(centres, [f"f{i}" for i in range(30)], None, weights))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "bg.npz", background=centres, weights=weights)
        server, url = model_server(tmp, "xgboost-cancer", "xgboost")
        try:
            paths = {}
            for label, explainer_type, protocol in (
                ("served_v2", "KernelShap", "v2"),
                ("served_v1", "KernelShap", "v1"),
                ("permutation_v2", "PermutationShap", "v2"),
            ):
                settings = ExplainerSettings(
                    name="xgboost-cancer",
                    explainer_type=explainer_type,
                    predictor_url=url,
                    protocol=protocol,
                    background=str(tmp / "bg.npz"),
                )
                backend = create_explainer(settings)
                backend.load()
                backend.explain(X[:1], ExplainOptions(nsamples=a.nsamples))  # warm: expected value, connections
                backend.predictor.requests = 0
                paths[label] = backend
            times = {k: [] for k in ("in_process", *paths)}
            values = {k: [] for k in times}
            for x in X:
                row = x[None, :]
                np.random.seed(0)
                t = time.perf_counter()
                v = np.asarray(local.shap_values(row, nsamples=a.nsamples, silent=True))
                times["in_process"].append(time.perf_counter() - t)
                values["in_process"].append(v[0, :, 1] if v.ndim == 3 else v[1][0])
                for label, backend in paths.items():
                    np.random.seed(0)
                    t = time.perf_counter()
                    (e,) = backend.explain(row, ExplainOptions(nsamples=a.nsamples, target=1))
                    times[label].append(time.perf_counter() - t)
                    values[label].append(np.asarray(e.values))
            base = summary(times["in_process"])
            result = {
                "benchmark": "explain_kernelshap",
                "model": "xgboost-cancer (30 features, 40 trees)",
                "instances": a.instances,
                "nsamples": a.nsamples,
                "background_rows": a.background,
                "rows_per_instance": a.nsamples * a.background,
                "environment": environment(),
                "paths": {"in_process": base},
            }
            ref = np.array(values["in_process"])
            for label, backend in paths.items():
                s = summary(times[label])
                s["ratio_to_in_process"] = s["median_ms"] / base["median_ms"]
                s["predictor_requests_per_instance"] = backend.predictor.requests / a.instances
                s["max_abs_diff_vs_in_process"] = float(np.abs(np.array(values[label]) - ref).max())
                result["paths"][label] = s
                backend.close()
            result["note"] = (
                "same model, same background, same nsamples; KernelShap served makes 3 predictor "
                "requests per instance (the batch prediction, shap's own call on the instance, the "
                "perturbations), PermutationShap 1. Busy shared 2-core machine: compare ratios. "
                "PermutationShap is a different estimator: its diff is against Kernel's values."
            )
            write("explain_kernelshap", result)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
