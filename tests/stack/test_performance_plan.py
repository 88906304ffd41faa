"""What `infertap up` plans for a RealisedPerformance Detector: its worker (runner component
`performance`, the state under the log folder) and the logger that takes its feedback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import free_port

from infertap.detectors.performance.settings import PerformanceSettings
from infertap.sidecar.settings import LoggerSettings
from infertap.stack.plan import PlanOptions, make_plan
from infertap.stack.runner import SETTINGS_ENV
from infertap.stack.specs import SpecError, load_files

pytestmark = pytest.mark.fast  # plans only: no process is started

SERVICE = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {{name: iris}}
spec:
  predictor:
    logger: {{mode: all, url: "kafka://localhost:{port}/iris-events"{headers}}}
    model:
      modelFormat: {{name: sklearn}}
      storageUri: m/model.joblib
---
apiVersion: infertap.dev/v1alpha1
kind: Detector
metadata: {{name: iris-perf}}
spec:
  source: {{inferenceService: iris}}
  detector:
    name: RealisedPerformance
    params: {params}
  window: {{size: 200}}
  replicas: {replicas}
"""


def plan(tmp_path: Path, params: str, replicas: int = 1, headers: str = ""):
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "model.joblib").write_bytes(b"x")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SERVICE.format(port=free_port(), params=params, replicas=replicas, headers=headers))
    options = PlanOptions(predictor_port=free_port(), logger_port=free_port(), detector_port=free_port())
    options.spool_root = tmp_path / "logs" / "spool"
    return make_plan(load_files([spec]).documents, options)


def test_the_worker_and_the_logger_it_needs(tmp_path: Path) -> None:
    planned = plan(tmp_path, "{task: classification, classes: [setosa, versicolor, virginica]}", replicas=2)
    workers = planned.by_role("detector")
    assert len(workers) == 2
    for worker in workers:
        assert worker.argv[-1] == "performance"
        settings = PerformanceSettings(**json.loads(worker.env[SETTINGS_ENV]))
        assert settings.state_dir == tmp_path / "logs" / "state" / "iris-perf"  # shared: one file per partition
        assert (settings.topic, settings.feedback_topic, settings.output_topic) == (
            "iris-events",
            "iris-feedback",
            "iris-detections",
        )
        assert settings.window.size == 200 and settings.params.classes == ["setosa", "versicolor", "virginica"]
    assert {w.port for w in workers} == {workers[0].port, workers[0].port + 1}
    (logger,) = planned.by_role("logger")
    s = logger.settings_as(LoggerSettings)
    assert (s.feedback_task, s.feedback_classes, s.request_id_header) == (
        "classification",
        ["setosa", "versicolor", "virginica"],
        "x-request-id",
    )
    assert LoggerSettings(**json.loads(logger.env[SETTINGS_ENV])).request_id_header == "x-request-id"  # what runs
    assert any("takes the event id from the request's X-Request-Id header" in n for n in planned.notes)


def test_join_on_a_header_copies_it_into_the_metadata(tmp_path: Path) -> None:
    planned = plan(tmp_path, "{task: regression, join_on: header, id_header: X-Trace}")
    s = planned.by_role("logger")[0].settings_as(LoggerSettings)
    assert s.metadata_headers == ["X-Trace"] and s.request_id_header == "" and s.feedback_task == "regression"


@pytest.mark.parametrize(
    ("params", "replicas", "words"),
    [
        ("{task: clasification}", 1, "params: task: Input should be 'classification' or 'regression'"),
        ("{task: classification, classes: [a]}", 1, "at least two classes"),
        ("{task: regression, classes: [a, b]}", 1, "classes and probability_output apply to classification"),
        ("{task: classification, max_pending: 0}", 1, "max_pending: Input should be greater than or equal to 1"),
        ("{task: classification, join_on: header}", 2, "join_on: header needs one worker"),
        ("{task: classification, windows: 3}", 1, "windows: Extra inputs are not permitted"),
    ],
)
def test_bad_params_are_spec_errors(tmp_path: Path, params: str, replicas: int, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        plan(tmp_path, params, replicas)
    assert words in str(caught.value) and "Detector iris-perf" in str(caught.value)


def test_reference_data_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.npy").write_bytes(b"")
    spec = tmp_path / "d.yaml"
    spec.write_text(
        "apiVersion: infertap.dev/v1alpha1\nkind: Detector\nmetadata: {name: p}\nspec:\n  source: {inferenceService: iris}\n"
        "  detector: {name: RealisedPerformance, params: {task: regression}, reference: r.npy}\n"
    )
    with pytest.raises(SpecError, match="takes no reference or savedDetector"):
        load_files([spec])
