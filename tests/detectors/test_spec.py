"""The `kind: Detector` document: loading, defaults, errors with YAML paths, settings, planning."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from infertap.stack.plan import PlanError, PlanOptions, make_plan
from infertap.stack.specs import Detector, SpecError, load_file, load_files

pytestmark = pytest.mark.fast  # starts no process (make test-fast)

BASE = """
apiVersion: infertap.dev/v1alpha1
kind: Detector
metadata: {name: iris-drift}
spec:
  source: {inferenceService: sklearn-iris}
  features: [{name: a}, {name: b, type: categorical, categories: [x, y]}]
  detector: {name: TabularDrift, params: {p_val: 0.01}, reference: ref.npy}
"""


def write(tmp_path: Path, text: str, name: str = "d.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_and_settings(tmp_path):
    np.save(tmp_path / "ref.npy", np.zeros((5, 2)))
    doc = load_file(write(tmp_path, BASE)).documents[0]
    assert isinstance(doc.spec, Detector)
    settings = doc.spec.to_settings(doc.source.parent)
    assert settings.topic == "sklearn-iris-events"
    assert settings.output_topic == "sklearn-iris-detections"
    assert settings.dead_letter_topic == "sklearn-iris-deadletter"
    assert settings.bootstrap == "localhost:9092" and settings.metrics_port == 9102
    assert settings.window.size == 1000 and settings.window.tumbling
    assert settings.reference == tmp_path / "ref.npy"  # beside the YAML
    assert settings.consumer_group == "infertap-detector-iris-drift"
    assert settings.features[1].categories == ["x", "y"]


def test_topic_bootstrap_and_outputs_are_taken_as_written(tmp_path):
    text = BASE.replace(
        "source: {inferenceService: sklearn-iris}",
        "source: {topic: raw, bootstrap: 'kafka://h1:9093,h2', events: joined, consumerGroup: g}",
    )
    text += "  window: {duration: 30, slide: 10}\n  outputs: {topic: out, replyUrl: 'http://x/', deadLetterTopic: dl, metricsPort: 9200}\n"
    settings = load_file(write(tmp_path, text)).documents[0].spec.to_settings(tmp_path)
    assert (settings.topic, settings.bootstrap, settings.events, settings.consumer_group) == (
        "raw",
        "h1:9093,h2:9092",
        "joined",
        "g",
    )
    assert (settings.output_topic, settings.reply_url, settings.dead_letter_topic, settings.metrics_port) == (
        "out",
        "http://x/",
        "dl",
        9200,
    )
    assert (settings.window.duration, settings.window.slide) == (30, 10)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ("source: {inferenceService: sklearn-iris}", "source: {events: request}"),
            "spec.source: name an inferenceService",
        ),
        (
            ("source: {inferenceService: sklearn-iris}", "source: {inferenceService: x, events: both}"),
            "spec.source.events: must be one of request, response, joined",
        ),
        (
            ("source: {inferenceService: sklearn-iris}", "source: {inferenceService: x, bootstrap: 'kafka://h:99999'}"),
            "spec.source.bootstrap: kafka URL has a bad port",
        ),
        (("type: categorical", "type: texts"), "spec.features[1].type: must be one of numeric, categorical, text"),
        (
            ("reference: ref.npy", "reference: ref.doc"),
            "spec.detector.reference: reference data must be a .csv, .parquet, .npy, .txt or .jsonl",
        ),
        (
            ("reference: ref.npy", "savedDetector: folder, reference: ref.npy"),
            "spec.detector: give exactly one of reference",
        ),
        (("{name: a}", "{name: b}"), "spec.features: feature 'b' is listed twice"),
        (("name: TabularDrift, ", ""), "spec.detector.name: required field is missing"),
    ],
)
def test_errors_name_the_yaml_path(tmp_path, change, message):
    with pytest.raises(SpecError) as err:
        load_file(write(tmp_path, BASE.replace(*change)))
    assert message in str(err.value)
    assert "document 1 (Detector iris-drift)" in str(err.value)


@pytest.mark.parametrize(
    "window, message",
    [
        ("{size: 10, duration: 5}", "spec.window: give size (events) or duration (seconds), not both"),
        ("{size: 10, slide: 20}", "spec.window: slide (20) must not exceed the window (10)"),
        ("{size: 10, slide: 2.5}", "whole number of events"),
        ("{size: 0}", "spec.window.size: input should be greater than or equal to 1"),
    ],
)
def test_window_errors(tmp_path, window, message):
    with pytest.raises(SpecError) as err:
        load_file(write(tmp_path, BASE + f"  window: {window}\n"))
    assert message in str(err.value)


def test_unknown_fields_are_warned_with_their_path(tmp_path):
    loaded = load_file(write(tmp_path, BASE + "  windw: {size: 3}\n"))
    assert any("spec.windw: unknown field" in w for w in loaded.warnings)


def test_up_plans_a_detector_on_its_services_logger_topic(tmp_path, models_dir):
    np.save(tmp_path / "ref.npy", np.zeros((5, 4)))
    isvc = f"""
    apiVersion: serving.kserve.io/v1beta1
    kind: InferenceService
    metadata: {{name: sklearn-iris}}
    spec:
      predictor:
        logger: {{mode: all, url: "kafka://localhost:9092/custom-topic"}}
        model: {{modelFormat: {{name: sklearn}}, storageUri: {models_dir / "sklearn-iris" / "model.joblib"}}}
    ---
    """
    path = write(
        tmp_path,
        textwrap.dedent(isvc)
        + BASE.replace(
            "{name: a}, {name: b, type: categorical, categories: [x, y]}", "{name: a}, {name: b}, {name: c}, {name: d}"
        ),
    )
    plan = make_plan(load_files([path]).documents, PlanOptions(broker_port=19092, detector_port=0))
    roles = [p.role for p in plan.processes]
    assert roles == ["broker", "predictor", "logger", "detector"]
    detector = plan.processes[-1]
    assert (detector.settings.topic, detector.settings.bootstrap) == ("custom-topic", "127.0.0.1:19092")
    assert detector.ready_path == "/metrics" and detector.argv[-1] == "detector"
    assert detector.settings == type(detector.settings).model_validate_json(detector.env["INFERTAP_SETTINGS"])


def test_up_refuses_missing_reference_data(tmp_path):
    with pytest.raises(PlanError) as err:
        make_plan(load_files([write(tmp_path, BASE)]).documents, PlanOptions(broker_port=19093, start_broker=False))
    assert "spec.detector.reference" in str(err.value) and "does not exist" in str(err.value)
