"""`infertap report`: the HTML page from detection/explanation CloudEvents (built in memory and read
back from the real broker), its structure and embedded plots, and a render in headless Chromium."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from infertap.stack.report import ReportData, from_events, render_html

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Page(HTMLParser):
    """Collects tags, images and table cells of a page."""

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.tables: dict[str, list[str]] = {}
        self.captions: list[str] = []
        self._table: str | None = None
        self._caption = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag == "figcaption":
            self._caption = True

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "figcaption":
            self._caption = False

    def handle_data(self, data):
        if self._table is not None and data.strip():
            self.tables[self._table].append(data.strip())
        if self._caption:
            self.captions.append(data.strip())


def drift_event(i: int, drifted: bool) -> tuple[dict, dict]:
    p = [0.4, 0.6, 1e-12 if drifted else 0.3, 1e-5 if drifted else 0.5]
    body = {
        "kind": "drift",
        "detector": "TabularDrift",
        "n": 100,
        "is_drift": drifted,
        "p_val": min(p),
        "threshold": 0.05,
        "features": [
            {"name": n, "p_val": v, "distance": 0.1, "is_drift": v < 0.05} for n, v in zip(FEATURES, p, strict=True)
        ],
        "window_end": (T0 + timedelta(minutes=i)).isoformat(),
    }
    return {"type": "io.infertap.detection.drift", "detector": "iris-drift", "time": T0 + timedelta(minutes=i)}, body


def outlier_event(i: int, flagged: int) -> tuple[dict, dict]:
    body = {
        "kind": "outlier",
        "detector": "IForest",
        "n": 50,
        "is_outlier": [True] * flagged + [False] * (50 - flagged),
        "instance_scores": [0.1] * 50,
        "window_end": (T0 + timedelta(minutes=i)).isoformat(),
    }
    return {
        "type": "io.infertap.detection.outlier",
        "detector": "iris-outliers",
        "time": T0 + timedelta(minutes=i),
    }, body


def explanation_event(values: list[float]) -> tuple[dict, dict]:
    return {"type": "io.infertap.explanation"}, {
        "model_name": "iris",
        "explainer": "KernelShap",
        "explanations": [{"feature_names": FEATURES, "values": values}],
    }


@pytest.fixture
def data() -> ReportData:
    detections = [drift_event(i, i >= 3) for i in range(6)] + [outlier_event(i, 1 if i < 3 else 10) for i in range(6)]
    explanations = [explanation_event([0.1, -0.05, 0.8, -0.4]), explanation_event([0.3, 0.05, -0.6, 0.2])]
    return from_events("iris", detections, explanations)


def test_events_become_series(data):
    assert set(data.drift_p) == set(FEATURES)
    assert data.drift_p["petal_length"].v == [0.3, 0.3, 0.3, 1e-12, 1e-12, 1e-12]
    assert data.drift_flags["iris-drift"].v == [0, 0, 0, 1, 1, 1]
    assert data.outlier_rate["iris-outliers"].v == pytest.approx([0.02] * 3 + [0.2] * 3)
    assert data.attributions == pytest.approx(
        {"sepal_length": 0.2, "sepal_width": 0.05, "petal_length": 0.7, "petal_width": 0.3}
    )
    assert data.summary["outliers flagged"] == 33 and data.summary["windows evaluated"] == 12


def test_page_structure_and_plots(data):
    page = Page()
    page.feed(render_html(data))
    assert page.captions == [
        "Per-feature drift p-value",
        "Drift flag per window",
        "Outlier rate",
        "Top features by mean |attribution|",
    ]
    assert len(page.images) == 4
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(img["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000  # a real drawing, not an empty canvas
    cells = page.tables["features"]
    # most drifted first, with its verdict
    assert cells[4:8] == ["petal_length", "1e-12", "1e-12", "drift"]
    assert "no drift" in cells
    assert page.tables["attributions"][2:4] == ["petal_length", "0.7"]


def test_empty_report_says_so():
    page = render_html(ReportData("nothing", "test"))
    assert "No detections, explanations or requests" in page and "<img" not in page


def test_report_from_the_topics(broker, tmp_path):
    """Detection and explanation CloudEvents on the real broker, read back by `infertap report --bootstrap`."""
    from cloudevents.core.bindings import kafka as ce_kafka
    from cloudevents.core.v1.event import CloudEvent
    from kafka import KafkaProducer

    isvc = f"rep-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    events = [(f"{isvc}-detections", drift_event(i, i >= 2)) for i in range(4)]
    events += [(f"{isvc}-detections", outlier_event(i, 5)) for i in range(3)]
    events += [(f"{isvc}-explanations", explanation_event([0.1, 0.2, 0.9, 0.3]))]
    for topic, (attrs, body) in events:
        event = CloudEvent(
            {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "test",
                "type": attrs["type"],
                "time": attrs.get("time", T0),
                "datacontenttype": "application/json",
                **({"detector": attrs["detector"]} if "detector" in attrs else {}),
            },
            json.dumps(body).encode(),
        )
        msg = ce_kafka.to_binary_event(event)
        producer.send(topic, value=msg.value, key=msg.key, headers=list(msg.headers.items()))
    producer.flush()
    producer.close()
    out = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "infertap", "report", isvc, "--bootstrap", broker.bootstrap, "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "windows evaluated 7" in done.stdout
    page = Page()
    page.feed(out.read_text())
    assert len(page.images) == 4
    assert "petal_length" in page.tables["features"] and "drift" in page.tables["features"]


def test_report_unreachable_sources_exit_1(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for args in (["--prometheus", f"http://127.0.0.1:{port}"], ["--bootstrap", f"127.0.0.1:{port}"]):
        done = subprocess.run(
            [sys.executable, "-m", "infertap", "report", "iris", *args, "-o", str(tmp_path / "r.html")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert done.returncode == 1 and "cannot build the report" in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "r.html").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_page_renders_in_headless_chromium(data, tmp_path):
    html_path = tmp_path / "report.html"
    html_path.write_text(render_html(data))
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1100,2400",
            html_path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # text and four plots, not a blank page
