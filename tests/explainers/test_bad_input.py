"""Bad input to the torch (captum) explainers, and explainers whose library is not installed.

- Instances of the wrong shape, rank or dtype for a TorchScript model (which carries no input
  shapes) are a 400 with one sentence naming the shape given and the shape the model takes,
  not a 500 holding the TorchScript interpreter's traceback. Against the real explainer
  server process (`python -m infertap.explainers`) and a model this module builds.
- An anchors explainer without `alibi` exits 2 with one sentence naming the extra, from the
  explainer's entry points, and `infertap up` refuses it at plan time with the same sentence.
  alibi is made unimportable in the child processes by a `sitecustomize` on PYTHONPATH that
  puts a blocking finder first on `sys.meta_path` (as if alibi were not installed), or by a
  stub `alibi` package that raises ImportError (installed, but broken).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, running
from tests.explainers.conftest import explain, metric

TORCH_TYPES = ["IntegratedGradients", "GradientShap", "DeepLift"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a TorchScript MLP (4 features -> 3 classes) and the same module pickled (for DeepLift)."""
    import torch
    from torch import nn

    folder = tmp_path_factory.mktemp("tiny-torch")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; KServe ships it
        torch.jit.script(net).save(str(folder / "model.pt"))
    torch.save(net, folder / "module.pt")
    return folder


@pytest.fixture(scope="module", params=TORCH_TYPES)
def torch_explainer(request, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(explainer type, URL) of a real explainer server process on the tiny model, without a background."""
    kind = request.param
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "infertap.explainers",
        "--name=tiny",
        f"--explainer-type={kind}",
        f"--storage-uri={tiny_model}",
        "--model-format=pytorch",
        f"--http-port={port}",
    ]
    if kind == "DeepLift":
        args += [f"--explainer-uri={tiny_model / 'module.pt'}", "--allow-pickle"]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("tiny-explainer") / f"{kind}.log"
    with running(args, log, f"{url}/v2/health/ready", timeout=240):
        yield kind, url


def refused(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "\n" not in error and "Traceback" not in error and "TorchScript" not in error, error
    return error


def test_wrong_feature_count_names_the_shape_expected_and_given(torch_explainer):
    kind, url = torch_explainer
    error = refused(explain(url, "tiny", [[1.0, 2.0, 3.0, 4.0, 5.0]]))
    assert error == (
        f"{kind}: the model takes instances of shape [4], got [5] (input shape [1, 5]): "
        "mat1 and mat2 shapes cannot be multiplied (1x5 and 4x8)"
    )


def test_wrong_rank_is_a_400(torch_explainer):
    kind, url = torch_explainer
    error = refused(explain(url, "tiny", [[[1.0, 2.0], [3.0, 4.0]]]))
    assert error.startswith(f"{kind}: the model takes instances of shape [4], got [2, 2] (input shape [1, 2, 2]): ")
    # a rank the model accepts but answers with a matrix per instance: no class to attribute to
    error = refused(explain(url, "tiny", [[[1.0, 2.0, 3.0, 4.0]] * 3]))
    assert error == (
        f"{kind}: the model answered instances of shape [3, 4] (input shape [1, 3, 4]) with outputs of "
        "shape [3, 3] each, not one score per class; send instances of the shape it takes (one output row each)"
    )


def test_wrong_dtype_is_a_400(torch_explainer):
    kind, url = torch_explainer
    assert refused(explain(url, "tiny", [["a", "b", "c", "d"]])) == f"{kind} explains numbers, got text data"
    v2 = httpx.post(
        f"{url}/v2/models/tiny-explainer/infer",
        json={"inputs": [{"name": "x", "shape": [1, 1], "datatype": "BYTES", "data": ["1,2,3,4"]}]},
        timeout=60,
    )
    assert refused(v2) == f"{kind} explains numbers, got text data"
    scalar = httpx.post(
        f"{url}/v2/models/tiny-explainer/infer",
        json={"inputs": [{"name": "x", "shape": [], "datatype": "FP32", "data": [1.0]}]},
        timeout=60,
    )
    assert refused(scalar) == f"{kind} explains a batch of instances, got a single value"


def test_the_server_still_explains_instances_of_the_right_shape(torch_explainer):
    kind, url = torch_explainer
    assert explain(url, "tiny", [[1.0, 2.0, 3.0, 4.0, 5.0]]).status_code == 400
    ok = explain(url, "tiny", [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]], nsamples=16)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["explainer"] == kind and [len(e["values"]) for e in body["explanations"]] == [4, 4]
    text = httpx.get(f"{url}/metrics", timeout=30).text
    assert metric(text, "infertap_explainer_errors_total", reason="bad_input") >= 1
    assert metric(text, "infertap_explainer_errors_total", reason="internal") is None  # no 500 on the way


# ---------------------------------------------------------------- anchors without alibi

BLOCKER = """\
import sys


class _NotInstalled:
    # first on sys.meta_path: `import alibi` fails as if alibi were not installed
    def find_spec(self, name, path=None, target=None):
        if name == "alibi" or name.startswith("alibi."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
"""
MISSING = "AnchorTabular needs the alibi package, which is not installed: pip install 'infertap[alibi]'"


@pytest.fixture
def no_alibi(tmp_path: Path) -> dict[str, str]:
    """The environment of a child process in which alibi cannot be found."""
    folder = tmp_path / "no-alibi"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": str(folder)}


def run(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """`python ARGS` to completion; on timeout its whole process group (children of `up` too) is killed."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def anchor_args(models_dir: Path) -> list[str]:
    return [
        "--name=sklearn-iris",
        "--explainer-type=AnchorTabular",
        "--predictor-url=http://127.0.0.1:9",
        f"--background={models_dir / 'sklearn-iris' / 'reference.npy'}",
        f"--http-port={free_port()}",
    ]


def test_the_blocker_hides_alibi(no_alibi):
    done = run(["-c", "import alibi"], no_alibi)
    assert done.returncode == 1 and "ModuleNotFoundError: No module named 'alibi'" in done.stderr


@pytest.mark.parametrize("command", [["-m", "infertap.explainers"], ["-m", "infertap", "explain"]])
def test_anchors_without_alibi_exit_2_naming_the_extra(no_alibi, models_dir, command):
    done = run([*command, *anchor_args(models_dir)], no_alibi)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"explainer 'sklearn-iris': {MISSING}"]


def test_anchors_with_a_broken_alibi_exit_2_naming_the_extra(tmp_path, models_dir):
    stub = tmp_path / "stub" / "alibi"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("alibi is broken here")\n')
    done = run(["-m", "infertap.explainers", *anchor_args(models_dir)], {**os.environ, "PYTHONPATH": str(stub.parent)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "explainer 'sklearn-iris': AnchorTabular needs the alibi package, which cannot be imported "
        "(ImportError: alibi is broken here): pip install 'infertap[alibi]'"
    ]


def test_up_refuses_an_anchors_explainer_without_alibi_at_plan_time(no_alibi, tmp_path, models_dir):
    spec = tmp_path / "iris-anchors.yaml"
    spec.write_text(f"""\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: sklearn-iris
spec:
  predictor:
    logger:
      url: file://{tmp_path / "events.jsonl"}
    model:
      modelFormat: {{name: sklearn}}
      storageUri: file://{models_dir / "sklearn-iris"}
  explainer:
    containers:
      - name: kserve-container
        image: infertap/explainer:0.1.0
        args: ["--explainer-type=AnchorTabular", "--background={models_dir / "sklearn-iris" / "reference.npy"}"]
""")
    logs = tmp_path / "logs"
    ports = ["--predictor-port=0", "--logger-port=0", "--explainer-port=0", "--max-start-failures=1"]
    done = run(["-m", "infertap", "up", str(spec), "--log-dir", str(logs), *ports], no_alibi)
    assert done.returncode == 2, done.stderr + done.stdout
    assert done.stderr.splitlines() == [
        f"{spec}: document 1 (InferenceService sklearn-iris): spec.explainer: {MISSING}"
    ]
    assert not logs.exists()  # refused before any child started
