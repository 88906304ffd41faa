"""The built wheel: `infertap/` is its only top-level name, the dashboards and alert rules ship in
it as package data, and `infertap render` works from an install outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

ISVC = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris}
spec:
  predictor:
    logger: {mode: all, url: "kafka://kafka:9092/iris-events"}
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://bucket/iris
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel, as the Dockerfiles build it (no dependencies fetched)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=out,
        timeout=600,
    )
    (built,) = out.glob("infertap-*.whl")
    return built


def test_the_wheel_has_one_top_level_name_and_the_dashboards(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"infertap"}, tops
    for data in (
        "infertap/dashboards/grafana/infertap-serving.json",
        "infertap/dashboards/prometheus/alerts.yml",
        "infertap/dashboards/provisioning/datasources/prometheus.yaml",
    ):
        assert data in names, f"{data} is not in the wheel"
    for part in ("serving", "sidecar", "logger", "detectors", "explainers", "stack"):
        assert f"infertap/{part}/__init__.py" in names
    assert not [n for n in names if n.startswith("infertap/") and "/tests/" in n and n.endswith(".py")]


def test_render_from_an_installed_wheel_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv holding only the wheel (its dependencies come from this environment's
    site-packages by a path entry, not from the repository) renders an example with its dashboards."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)  # what pip install --no-deps does for a pure wheel
    # The dependencies (pydantic, typer, yaml...) from this environment, after the wheel's own files;
    # .pth files of that folder are not run, so this repository's editable install stays out.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    spec = tmp_path / "iris.yaml"
    spec.write_text(ISVC)
    out = tmp_path / "manifests"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [python, "-c", "import infertap; print(infertap.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    done = subprocess.run(
        [python, "-m", "infertap", "render", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = {}
    for path in out.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                kinds.setdefault(doc["kind"], []).append(doc)
    maps = {c["metadata"]["name"]: c.get("data", {}) for c in kinds.get("ConfigMap", [])}
    boards = [data for name, data in maps.items() if "dashboard" in name]
    assert boards and any(k.endswith(".json") and '"panels"' in v for d in boards for k, v in d.items()), maps.keys()
    rules = [data for name, data in maps.items() if "alert" in name]
    assert rules and any("alert:" in v for d in rules for v in d.values()), maps.keys()
    assert "Deployment" in kinds  # the predictor with its logger sidecar
