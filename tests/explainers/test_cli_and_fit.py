"""`python -m infertap.explainers` as a process, pickle opt-in, `infertap fit`, and the `up` plan for spec.explainer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, free_port
from tests.explainers.conftest import explain


def run_explainers(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infertap.explainers", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_python_m_explainers_serves_tree_shap(spawn, models_dir, reference):
    port = free_port()
    child = spawn(
        [
            sys.executable,
            "-m",
            "infertap.explainers",
            "--name",
            "xgboost-cancer",
            "--explainer-type",
            "tree_shap",
            "--storage-uri",
            str(models_dir / "xgboost-cancer"),
            "--model-format",
            "xgboost",
            "--http-port",
            str(port),
        ],
        name="explainer",
    )
    child.wait_http(f"http://127.0.0.1:{port}/v2/health/ready", timeout=180)
    r = explain(f"http://127.0.0.1:{port}", "xgboost-cancer", reference("xgboost-cancer")[:2])
    assert r.status_code == 200 and len(r.json()["explanations"]) == 2
    assert r.json()["explainer"] == "TreeShap"  # MLServer's snake_case name accepted


def test_pickled_explainers_are_refused_without_the_opt_in(tmp_path, models_dir):
    import dill

    saved = tmp_path / "explainer.dill"
    saved.write_bytes(dill.dumps({"anything": 1}))
    done = run_explainers(
        "--name",
        "sklearn-iris",
        "--explainer-type",
        "AnchorTabular",
        "--predictor-url",
        "http://127.0.0.1:9",
        "--background",
        str(models_dir / "sklearn-iris" / "reference.npy"),
        "--explainer-uri",
        str(saved),
    )
    assert done.returncode != 0
    assert "refusing to load" in done.stderr and "--allow-pickle" in done.stderr, done.stderr
    # Backgrounds are data: a pickle given as background is refused whatever the flags.
    pickled_rows = saved.with_suffix(".pkl")
    pickled_rows.write_bytes(dill.dumps(np.ones((3, 4))))
    done = run_explainers(
        "--name",
        "m",
        "--explainer-type",
        "KernelShap",
        "--predictor-url",
        "http://127.0.0.1:9",
        "--background",
        str(pickled_rows),
        "--allow-pickle",
    )
    assert done.returncode != 0 and "never unpickled" in done.stderr, done.stderr


def test_deadlift_needs_a_pickled_module_and_the_opt_in(tmp_path, models_dir, reference):
    import asyncio

    import torch

    from infertap.explainers.errors import ExplainerLoadError
    from infertap.explainers.server import ExplainService
    from infertap.explainers.settings import ExplainerSettings
    from tests.explainers.digits_module import from_torchscript

    path = tmp_path / "digits-module.pt"
    torch.save(from_torchscript(str(models_dir / "torch-digits" / "model.pt")), path)
    base = {
        "name": "torch-digits",
        "explainer_type": "DeepLift",
        "storage_uri": str(models_dir / "torch-digits"),
        "model_format": "pytorch",
    }
    with pytest.raises(ExplainerLoadError, match="TorchScript cannot give"):
        ExplainService(ExplainerSettings(**base)).load()
    with pytest.raises(ExplainerLoadError, match="--allow-pickle"):
        ExplainService(ExplainerSettings(**base, explainer_uri=str(path))).load()
    service = ExplainService(ExplainerSettings(**base, explainer_uri=str(path), allow_pickle=True))
    service.load()
    X = reference("torch-digits")[:2]
    result = asyncio.run(service.explain(X))
    ig = ExplainService(ExplainerSettings(**{**base, "explainer_type": "IntegratedGradients"}))
    ig.load()
    ig_result = asyncio.run(ig.explain(X))
    for e, g in zip(result.explanations, ig_result.explanations, strict=True):
        gap = e.prediction - e.base_value
        assert len(e.values) == 64 and e.target == g.target
        # captum's max-pool rule breaks exact summation-to-delta; the answer says by how much.
        assert sum(e.values) - gap == pytest.approx(e.raw["convergence_delta"], abs=1e-3)
        assert np.corrcoef(e.values, g.values)[0, 1] > 0.8  # the same picture as IG
    service.close()


def write_yaml(tmp_path: Path, models_dir: Path, background: str, explainer_type: str = "KernelShap") -> Path:
    yaml = tmp_path / "iris.yaml"
    yaml.write_text(f"""
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: sklearn-iris
spec:
  predictor:
    logger:
      url: file://{tmp_path / "events.jsonl"}
    model:
      modelFormat:
        name: sklearn
      storageUri: file://{models_dir / "sklearn-iris"}
  explainer:
    containers:
      - name: kserve-container
        image: infertap/explainer:0.1.0
        args: ["--explainer-type={explainer_type}", "--background={background}", "--nsamples=100"]
""")
    return yaml


def test_infertap_fit_writes_a_kmeans_background_as_data(tmp_path, models_dir, reference):

    from infertap.explainers.backgrounds import load_background

    yaml = write_yaml(tmp_path, models_dir, "./bg/iris-background.npz")
    (tmp_path / "bg").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "infertap", "fit", str(yaml), "--size", "12"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    out = tmp_path / "bg" / "iris-background.npz"
    assert f"wrote {out}" in done.stdout
    with np.load(out, allow_pickle=False) as npz:  # data only: loads with pickles off
        assert npz["background"].shape == (12, 4)
        assert npz["weights"].sum() == 150  # cluster sizes of the 150 reference rows
    bg = load_background(str(out))
    assert bg.meta["method"] == "kmeans" and bg.meta["explainer_type"] == "KernelShap"


def test_fit_anchor_discretisation(tmp_path, models_dir):
    from infertap.explainers.backgrounds import load_background
    from infertap.explainers.fit import fit_background

    steps: list[str] = []
    fit_background(
        "anchor_tabular",
        str(models_dir / "sklearn-iris" / "reference.npy"),
        tmp_path / "a.npz",
        size=30,
        disc_perc=(10, 50, 90),
        progress=steps.append,
    )
    bg = load_background(str(tmp_path / "a.npz"))
    assert bg.train.shape == (150, 4) and bg.disc_perc == (10.0, 50.0, 90.0) and len(bg.data) == 30
    assert any("discretisation" in s for s in steps)


def test_up_plans_the_explainer_behind_the_logger(tmp_path, models_dir):
    from infertap.stack.plan import PlanError, PlanOptions, make_plan
    from infertap.stack.specs import load_files

    options = PlanOptions(predictor_port=0, logger_port=0, explainer_port=0)
    missing = write_yaml(tmp_path, models_dir, "./nowhere/background.npz")
    with pytest.raises(PlanError, match="run `infertap fit"):
        make_plan(load_files([missing]).documents, options)

    yaml = write_yaml(tmp_path, models_dir, str(models_dir / "sklearn-iris" / "reference.npy"), "tree_shap")
    plan = make_plan(load_files([yaml]).documents, options)
    (logger,), (explainer,) = plan.by_role("logger"), plan.by_role("explainer")
    settings = explainer.settings
    assert logger.settings.explainer_url == f"http://{explainer.address}"  # :explain on the sidecar reaches it
    assert settings.predictor_url == f"http://{logger.address}"  # its own calls pass the tap (and are skipped)
    assert settings.name == "sklearn-iris" and settings.explainer_type == "TreeShap"
    assert settings.storage_uri == str(models_dir / "sklearn-iris") and settings.model_format == "sklearn"
    assert "explainer" in explainer.argv and explainer.ready_path == "/v2/health/ready"

    bad = write_yaml(tmp_path, models_dir, "x.npy", "NoSuchShap")
    with pytest.raises(PlanError, match="spec.explainer.containers\\[0\\].args: --explainer-type: must be one of"):
        make_plan(load_files([bad]).documents, options)
