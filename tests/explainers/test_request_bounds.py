"""Every backend parameter a request can set is bounded (issue 19, finding 9), and a MemoryError leaves the server serving.

Red team: AnchorTabular's `coverage_samples: 1e6` answered 200 after 3.3 s with RSS 561 ->
1,164 MiB; `2e6` was a 500 MemoryError, after which every plain request failed until a
restart (each preallocated alibi's 916 MiB sample cache); `batch_size: 2000` tried to
allocate 1.79 GiB. Now: a 400 naming the parameter and its bound, a sample cache of about
100,000 rows, and a 503 for a MemoryError that the next request does not inherit.
"""

from __future__ import annotations

import resource
import sys
import time

import httpx
import numpy as np
import pytest

from tests.conftest import free_port
from tests.explainers.conftest import IRIS_FEATURES, explain

IRIS_ROW = [[5.1, 3.5, 1.4, 0.2]]


@pytest.fixture
def iris_anchors(predictor, serve_explainer, models_dir):
    return serve_explainer(
        name="sklearn-iris",
        explainer_type="AnchorTabular",
        predictor_url=predictor,
        background=str(models_dir / "sklearn-iris" / "reference.npy"),
        feature_names=IRIS_FEATURES,
    )


@pytest.mark.parametrize(
    "params, words",
    [
        # values just past the bound: on the unbounded server each of these ran (and grew it)
        (
            {"coverage_samples": 20_000},
            "parameter coverage_samples must be between 1 and 10000 (max_samples), got 20000",
        ),
        ({"coverage_samples": 1e6}, "parameter coverage_samples must be between 1 and 10000 (max_samples)"),
        ({"coverage_samples": 1.5}, "parameter coverage_samples must be an integer"),
        ({"batch_size": 20_000}, "parameter batch_size must be between 1 and 10000 (max_samples), got 20000"),
        ({"binary_cache_size": 10_000}, "binary_cache_size x batch_size must be at most 1000000 rows"),
        ({"min_samples_start": 10**9}, "parameter min_samples_start must be between 1 and 10000 (max_samples)"),
        ({"cache_margin": 10**7}, "parameter cache_margin must be between 1 and 10000 (max_samples)"),
        ({"beam_size": 1000}, "parameter beam_size must be between 1 and 20, got 1000"),
        ({"n_covered_ex": 10**6}, "parameter n_covered_ex must be between 1 and 100"),
        ({"max_anchor_size": 5}, "parameter max_anchor_size must be between 1 and 4, got 5"),
        ({"threshold": 2}, "parameter threshold must be between 0 and 1, got 2"),
        ({"delta": 0}, "parameter delta must be between 0 and 1, exclusive, got 0"),
        ({"tau": "x"}, "parameter tau must be a number between 0 and 1, exclusive, got 'x'"),
        ({"stop_on_first": "yes"}, "parameter stop_on_first must be true or false, got 'yes'"),
    ],
)
def test_anchor_parameters_past_their_bounds_are_400_naming_them(iris_anchors, params, words):
    started = time.monotonic()
    r = explain(iris_anchors, "sklearn-iris", IRIS_ROW, timeout=60, **params)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]
    assert time.monotonic() - started < 20  # refused before any sampling


def test_bounded_anchor_parameters_and_v2_explain_parameters(iris_anchors):
    r = explain(iris_anchors, "sklearn-iris", IRIS_ROW, batch_size=2000, coverage_samples=10_000, max_anchor_size=None)
    assert r.status_code == 200, r.text  # batch_size 2000 tried to allocate 1.79 GiB before
    body = {
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW[0]}],
        "parameters": {"content_type": "np", "explain_parameters": {"coverage_samples": 2_000_000}},
    }
    r = httpx.post(f"{iris_anchors}/v2/models/sklearn-iris-explainer/infer", json=body, timeout=60)
    assert r.status_code == 400 and "coverage_samples must be between 1 and 10000" in r.json()["error"]
    body["parameters"] = {"content_type": "np", "threshold": 0.9}  # V2's own keys pass, ignored
    r = httpx.post(f"{iris_anchors}/v2/models/sklearn-iris-explainer/infer", json=body, timeout=120)
    assert r.status_code == 200, r.text


def test_alibi_sample_cache_starts_small():
    from infertap.explainers.backends.anchor_base import CACHE_ROWS, AnchorExplainer
    from infertap.explainers.backends.base import ExplainOptions
    from infertap.explainers.settings import ExplainerSettings

    class Probe(AnchorExplainer):
        type_name = "AnchorTabular"

    probe = Probe(ExplainerSettings(name="m", explainer_type="AnchorTabular"))
    for batch in (1, 100, 1000, 2000, 10_000):
        kwargs = probe.explain_kwargs(ExplainOptions(params={"batch_size": batch}))
        rows = kwargs["batch_size"] * kwargs["binary_cache_size"]
        assert batch <= rows <= max(CACHE_ROWS, 2 * batch), (batch, rows)  # alibi's default: batch x 10,000


def test_sample_rows_of_shap_and_captum_requests_are_bounded(predictor, serve_explainer, models_dir):
    digits = {"storage_uri": str(models_dir / "torch-digits"), "model_format": "pytorch", "max_sample_rows": 500}
    background = str(models_dir / "torch-digits" / "reference.npy")
    kernel = serve_explainer(
        name="sklearn-iris",
        explainer_type="KernelShap",
        predictor_url=predictor,
        background=str(models_dir / "sklearn-iris" / "reference.npy"),
        background_size=20,
        max_sample_rows=10_000,
    )
    r = explain(kernel, "sklearn-iris", IRIS_ROW, nsamples=1000)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == (
        "KernelShap nsamples 1000 x 20 background rows = 20000 rows held at once; max_sample_rows is 10000"
    )
    assert explain(kernel, "sklearn-iris", IRIS_ROW, nsamples=100).status_code == 200
    permutation = serve_explainer(
        name="sklearn-iris",
        explainer_type="PermutationShap",
        predictor_url=predictor,
        background=str(models_dir / "sklearn-iris" / "reference.npy"),
        background_size=20,
        max_sample_rows=10_000,
    )
    r = explain(permutation, "sklearn-iris", IRIS_ROW, nsamples=1000)
    assert r.status_code == 400 and "PermutationShap nsamples 1000 x 20 background rows" in r.json()["error"]
    gradient = serve_explainer(name="torch-digits", explainer_type="GradientShap", background=background, **digits)
    X = np.load(models_dir / "torch-digits" / "reference.npy")[:10]
    r = explain(gradient, "torch-digits", X, nsamples=100)
    assert r.status_code == 400 and "GradientShap nsamples 100 x 10 instances = 1000 rows" in r.json()["error"]
    assert explain(gradient, "torch-digits", X[:2], nsamples=100).status_code == 200
    ig = serve_explainer(name="torch-digits", explainer_type="IntegratedGradients", internal_batch_size=None, **digits)
    r = explain(ig, "torch-digits", X, nsamples=100)
    assert r.status_code == 400 and "max_sample_rows is 500" in r.json()["error"]
    # Gauss-Legendre nodes cost O(n^3) before any deadline can stop them (5,000 steps: 20 s)
    ig_batched = serve_explainer(name="torch-digits", explainer_type="IntegratedGradients", **digits)
    r = explain(ig_batched, "torch-digits", X[:1], nsamples=5000)
    assert r.status_code == 400, r.text
    assert "nsamples (n_steps) 5000 with method gausslegendre; at most 1000" in r.json()["error"]


def _vm_size(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("VmSize:"))
    return kib * 1024


def test_a_memory_error_is_a_503_and_the_next_requests_are_served(predictor, spawn, models_dir):
    """A real explainer whose operator raised max_samples, capped (RLIMIT_AS) at its size + 768 MiB."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child = spawn(
        [
            sys.executable,
            "-m",
            "infertap.explainers",
            "--name=sklearn-iris",
            "--explainer-type=AnchorTabular",
            f"--predictor-url={predictor}",
            f"--background={models_dir / 'sklearn-iris' / 'reference.npy'}",
            "--max-samples=100000000",
            f"--http-port={port}",
        ],
        name="explainer",
    )
    child.wait_http(f"{url}/v2/health/ready", timeout=240)
    assert explain(url, "sklearn-iris", IRIS_ROW).status_code == 200  # threads and caches warmed up
    limit = _vm_size(child.proc.pid) + 768 * 1024**2
    resource.prlimit(child.proc.pid, resource.RLIMIT_AS, (limit, limit))
    r = explain(url, "sklearn-iris", IRIS_ROW, timeout=180, coverage_samples=20_000_000)
    assert r.status_code == 503, r.text
    assert "ran out of memory" in r.json()["error"] and "keeps serving" in r.json()["error"]
    for _ in range(3):  # before: every later request failed too, until a restart
        r = explain(url, "sklearn-iris", IRIS_ROW, timeout=60)
        assert r.status_code == 200, r.text
    assert 'reason="out_of_memory"' in httpx.get(f"{url}/metrics").text
