"""Issue 14: TensorFlow detectors under `infertap up` (and `infertap fit`), in a Python of their own.

The main environment has no TensorFlow; a TensorFlow Detector's worker runs with the Python
`stack/interpreter.py` picks (`spec.runtime.python`, $INFERTAP_TF_PYTHON, or the nearest
`.venv-tf/bin/python`), shown in `up`'s table; with none, `up` and `fit` stop at plan time
with a sentence and exit code 2, before anything starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import yaml
from cli_support import free_port
from test_up import pid_gone, read_events, spec_file, start_up, wait_for_state

from infertap.stack.plan import PlanError, PlanOptions, make_plan
from infertap.stack.specs import load_files

ROOT = Path(__file__).resolve().parents[2]
TF_VENV = ROOT / ".venv-tf"
FEATURES = [{"name": n} for n in ("sepal_length", "sepal_width", "petal_length", "petal_width")]
PLANTED = [[30.0, 0.1, 30.0, 12.0], [0.1, 25.0, 0.1, 15.0]]  # far off the iris rows


@pytest.fixture(scope="module")
def tf_python() -> Path:
    if not (TF_VENV / ".installed").exists():
        if os.environ.get("CI"):
            pytest.fail(".venv-tf is missing: `make test` builds it with `make venv-tf`")
        pytest.skip("no .venv-tf: run `make venv-tf` for the TensorFlow detectors")
    return TF_VENV / "bin" / "python"


def detector_doc(name: str, detector: dict, **spec: object) -> dict:
    """A Detector document on the sklearn-iris InferenceService's requests; `spec` adds fields."""
    body = {"source": {"inferenceService": "sklearn-iris", "events": "request"}, "features": FEATURES}
    body.update(detector=detector, **spec)
    return {"apiVersion": "infertap.dev/v1alpha1", "kind": "Detector", "metadata": {"name": name}, "spec": body}


def detections(bootstrap: str, topic: str, timeout: float) -> list:
    """The detections on `topic` once there are any (a fresh consumer each try: the topic appears
    when the worker first publishes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = read_events(bootstrap, topic, 1, timeout=10)
        if found:
            return found
    raise AssertionError(f"no detection on {topic} within {timeout}s")


def write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.timeout(600)
def test_a_tensorflow_detector_runs_under_up_in_venv_tf(spawn, tmp_path, models_dir, tf_python, monkeypatch):
    monkeypatch.delenv("INFERTAP_TF_PYTHON", raising=False)  # the children find .venv-tf from the current folder
    reference = models_dir / "sklearn-iris" / "reference.npy"
    detector = write(
        tmp_path / "detector.yaml",
        detector_doc(
            "iris-ae",
            {
                "name": "OutlierAE",
                "params": {"epochs": 20, "batch_size": 32, "hidden": [8], "encoding_dim": 2, "threshold_perc": 95},
                "savedDetector": "iris-ae",
                "allowPickle": True,  # alibi-detect's legacy TensorFlow folders hold dill files
            },
            window={"size": 12},
        ),
    )
    # `infertap fit` from the main environment fits in .venv-tf (found above the current folder)
    fitted = subprocess.run(
        [sys.executable, "-m", "infertap", "fit", str(detector), "--reference", str(reference)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert fitted.returncode == 0, fitted.stdout[-3000:] + fitted.stderr[-3000:]
    assert "iris-ae/detector (OutlierAE): fitted on 150 rows" in fitted.stdout
    assert f"fitted with {tf_python} (.venv-tf found in {ROOT})" in fitted.stdout
    assert (tmp_path / "iris-ae" / "meta.dill").is_file()

    broker_port, topic = free_port(), f"tf-{uuid.uuid4().hex[:8]}"
    isvc = spec_file(tmp_path, models_dir / "sklearn-iris", f"kafka://127.0.0.1:{broker_port}/{topic}")
    up, ports = start_up(
        spawn, tmp_path, isvc, str(detector), "--detector-port", str(free_port()), "--ready-timeout", "300"
    )
    state = wait_for_state(up, tmp_path, 4, timeout=400)
    [worker] = [p for p in state if p["role"] == "detector"]
    assert worker["executable"] == str(tf_python)
    assert Path(f"/proc/{worker['pid']}/cmdline").read_bytes().split(b"\0")[0] == str(tf_python).encode()
    assert {p["executable"] for p in state if p["role"] in ("predictor", "logger")} == {sys.executable}
    assert f"python {tf_python}" in up.log.read_text()  # the table's row of the detector

    rows = np.load(reference)[:10].tolist()
    rows.insert(3, PLANTED[0])
    rows.insert(8, PLANTED[1])
    planted_ids = {"tf-3", "tf-8"}
    with httpx.Client(timeout=30) as client:
        for i, row in enumerate(rows):
            reply = client.post(
                f"http://127.0.0.1:{ports['logger']}/v1/models/sklearn-iris:predict",
                json={"instances": [row]},
                headers={"ce-id": f"tf-{i}"},
            )
            assert reply.status_code == 200, reply.text

    [detection] = detections(f"127.0.0.1:{broker_port}", "sklearn-iris-detections", timeout=180)
    assert detection.get_type() == "io.infertap.detection.outlier"
    assert detection.get_extension("detector") == "iris-ae"
    data = detection.get_data()
    body = orjson.loads(data) if isinstance(data, (bytes, str)) else data
    assert body["detector"] == "OutlierAE" and body["n"] == 12
    flags = dict(zip(body["event_ids"], body["is_outlier"], strict=True))
    scores = dict(zip(body["event_ids"], body["instance_scores"], strict=True))
    assert set(flags) == {f"tf-{i}" for i in range(12)}
    assert all(flags[i] for i in planted_ids), flags
    assert min(scores[i] for i in planted_ids) > max(s for i, s in scores.items() if i not in planted_ids)

    os.kill(up.proc.pid, signal.SIGINT)
    assert up.proc.wait(60) == 0, up.tail(60)
    assert all(pid_gone(p["pid"]) for p in state), state


def test_without_a_tensorflow_python_up_and_fit_stop_at_plan_time(tmp_path, models_dir):
    """Nothing in the current folder, beside the YAML or above them: exit 2 and one sentence, nothing started."""
    detector = write(
        tmp_path / "detector.yaml",
        detector_doc("iris-ae", {"name": "OutlierAE", "reference": str(models_dir / "sklearn-iris" / "reference.npy")}),
    )
    env = {k: v for k, v in os.environ.items() if k != "INFERTAP_TF_PYTHON"}
    for verb in (
        ["up", str(detector), "--log-dir", str(tmp_path / "logs"), "--broker-port", str(free_port())],
        ["fit", str(detector)],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "infertap", *verb],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, (verb[0], done.stdout, done.stderr)
        message = done.stderr.strip().splitlines()[-1]
        assert message.startswith(f"{detector}: document 1 (Detector iris-ae): spec.detector.name: OutlierAE needs ")
        assert f"no .venv-tf/bin/python was found in {tmp_path}" in message
        assert "`make venv-tf`" in message and "spec.runtime.python" in message and "$INFERTAP_TF_PYTHON" in message
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "logs" / "processes.json").exists()
    assert not (tmp_path / "iris-ae-detector").exists()


def plan_of(tmp_path: Path, doc: dict):
    return make_plan(
        load_files([write(tmp_path / "detector.yaml", doc)]).documents,
        PlanOptions(start_broker=False, detector_port=0),
    )


@pytest.mark.fast
def test_spec_runtime_python_must_exist_and_have_tensorflow(tmp_path, monkeypatch, models_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INFERTAP_TF_PYTHON", raising=False)
    reference = str(models_dir / "sklearn-iris" / "reference.npy")
    ae = {"name": "OutlierAE", "reference": reference}
    with pytest.raises(PlanError) as missing:
        plan_of(tmp_path, detector_doc("ae", ae, runtime={"python": "tf/bin/python"}))
    assert f"spec.runtime.python: there is no Python at {tmp_path / 'tf/bin/python'}" in str(missing.value)
    assert "`make venv-tf`" in str(missing.value)

    monkeypatch.setenv("INFERTAP_TF_PYTHON", str(tmp_path / "nowhere" / "python"))
    with pytest.raises(PlanError, match=r"\$INFERTAP_TF_PYTHON: there is no Python at .*nowhere/python"):
        plan_of(tmp_path, detector_doc("ae", ae))
    monkeypatch.delenv("INFERTAP_TF_PYTHON")

    # the main environment's own Python is named, but it has no TensorFlow (and never imports it)
    with pytest.raises(PlanError) as lacking:
        plan_of(tmp_path, detector_doc("ae", ae, runtime={"python": sys.executable}))
    assert f"spec.runtime.python: {sys.executable} cannot run the OutlierAE worker: it lacks tensorflow" in str(
        lacking.value
    )
    assert "tensorflow" not in sys.modules


@pytest.mark.fast
def test_other_detectors_keep_infertaps_own_python_unless_the_spec_names_one(tmp_path, monkeypatch, models_dir):
    monkeypatch.chdir(tmp_path)
    drift = {"name": "ScipyKS", "reference": str(models_dir / "sklearn-iris" / "reference.npy")}
    [worker] = plan_of(tmp_path, detector_doc("ks", drift)).by_role("detector")
    assert worker.argv[:3] == [sys.executable, "-m", "infertap.stack.runner"]
    assert worker.interpreter == f"{sys.executable} (infertap's own)"

    [first, second] = plan_of(
        tmp_path, detector_doc("ks", drift, replicas=2, runtime={"python": sys.executable})
    ).by_role("detector")
    assert first.argv[0] == second.argv[0] == sys.executable
    assert first.interpreter == second.interpreter == f"{sys.executable} (spec.runtime.python)"


def test_a_named_python_without_infertap_is_refused_naming_what_it_lacks(tmp_path, monkeypatch, models_dir):
    """The probe runs in the named interpreter (a bare venv here) and reads what it lacks."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # a relative path is looked up beside the YAML first
    drift = {"name": "ScipyKS", "reference": str(models_dir / "sklearn-iris" / "reference.npy")}
    with pytest.raises(PlanError) as lacking:
        plan_of(tmp_path, detector_doc("ks", drift, runtime={"python": "bare/bin/python"}))
    message = str(lacking.value)
    assert f"spec.runtime.python: {tmp_path / 'bare/bin/python'} cannot run the ScipyKS worker: it lacks " in message
    assert "infertap, confluent_kafka, cloudevents, orjson" in message
    assert "tensorflow" not in message  # asked only of TensorFlow detectors
