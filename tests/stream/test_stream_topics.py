"""Topic names and event types: named once, in the stream contract, and nowhere else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infertap.stream import events
from infertap.stream.topics import check_topic, topics

pytestmark = pytest.mark.fast  # no broker, no server child

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("serving", "sidecar", "logger", "detectors", "explainers", "stack")


def test_topics_of_an_inference_service() -> None:
    t = topics("sklearn-iris")
    assert (t.events, t.detections, t.explanations, t.feedback, t.deadletter) == (
        "sklearn-iris-events",
        "sklearn-iris-detections",
        "sklearn-iris-explanations",
        "sklearn-iris-feedback",
        "sklearn-iris-deadletter",
    )
    with pytest.raises(ValueError):
        topics("")


def test_topic_names_kafka_takes() -> None:
    assert check_topic("a.b_c-1") == "a.b_c-1"
    for bad in ("", "a b", "a/b", "x" * 250):
        with pytest.raises(ValueError, match="must be 1-249 characters"):
            check_topic(bad)


def test_event_types() -> None:
    assert events.REQUEST_TYPE == "org.kubeflow.serving.inference.request"
    assert events.RESPONSE_TYPE == "org.kubeflow.serving.inference.response"
    assert [events.detection_type(k) for k in ("drift", "outlier", "adversarial")] == [
        "io.infertap.detection.drift",
        "io.infertap.detection.outlier",
        "io.infertap.detection.adversarial",
    ]
    assert events.detection_kind("io.infertap.detection.outlier") == "outlier"
    assert events.detection_kind(events.EXPLANATION_TYPE) is None
    assert (events.FEEDBACK_TYPE, events.PERFORMANCE_TYPE, events.DATA_QUALITY_TYPE, events.EXPLANATION_TYPE) == (
        "io.infertap.feedback",
        "io.infertap.performance",
        "io.infertap.dataquality",
        "io.infertap.explanation",
    )
    with pytest.raises(ValueError):
        events.detection_type("drfit")


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text()) for part in PARTS for p in sorted((ROOT / part).rglob("*.py"))]


def test_nothing_else_derives_a_topic_name() -> None:
    derived = re.compile(r"""\}-(events|detections|explanations|feedback|deadletter)\b["']""")
    found = [
        f"{p.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}"
        for p, text in _sources()
        for m in derived.finditer(text)
    ]
    assert not found, f"topic names derived outside infertap.stream.topics: {found}"


def test_nothing_else_spells_an_event_type() -> None:
    literal = re.compile(
        r"""["'](org\.kubeflow\.serving\.inference\.|io\.infertap\.(detection|explanation|feedback|performance|dataquality))"""
    )
    found = [
        f"{p.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}"
        for p, text in _sources()
        for m in literal.finditer(text)
    ]
    assert not found, f"event types spelled outside infertap.stream.events: {found}"
