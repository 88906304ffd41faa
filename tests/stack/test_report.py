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

import numpy as np
import pytest
import yaml

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


def estimate_event(i: int, accuracy: float) -> tuple[dict, dict]:
    """A CBPE window as the detector worker publishes it (docs/performance-estimation.md): flat figures and
    `metrics`, the headline ones with band and thresholds (binary: the positive class's)."""
    body = {
        "kind": "estimated",
        "task": "classification",
        "problem": "binary",
        "detector": "CBPE",
        "n": 500,
        "accuracy": accuracy,
        "per_class": {"churn": {"f1": accuracy - 0.1}},
        "metrics": [
            {
                "name": "accuracy",
                "class": "_all",
                "headline": True,
                "value": accuracy,
                "lower": accuracy - 0.02,
                "upper": accuracy + 0.02,
                "lower_threshold": 0.85,
                "upper_threshold": 0.97,
                "alert": accuracy < 0.85,
            },
            {
                "name": "f1",
                "class": "churn",
                "headline": True,
                "value": accuracy - 0.1,
                "lower": accuracy - 0.13,
                "upper": accuracy - 0.07,
                "lower_threshold": 0.7,
                "upper_threshold": 0.9,
                "alert": False,
            },
            {"name": "f1", "class": "_macro", "headline": False, "value": accuracy - 0.05},
        ],
        "is_alert": accuracy < 0.85,
        "window_end": (T0 + timedelta(minutes=i)).isoformat(),
    }
    attrs = {"type": "io.infertap.performance", "detector": "CBPE", "performancekind": "estimated"}
    return attrs | {"time": T0 + timedelta(minutes=i)}, body


def realised_event(i: int, accuracy: float) -> tuple[dict, dict]:
    """A window of labelled predictions as the performance worker publishes it (docs/ground-truth.md)."""
    body = {
        "kind": "realised",
        "task": "classification",
        "detector": "RealisedPerformance",
        "n": 200,
        "accuracy": accuracy,
        "precision_macro": 0.8,
        "recall_macro": 0.8,
        "f1_macro": 0.8,
        "per_class": {"churn": {"precision": 0.7, "recall": 0.7, "f1": accuracy - 0.12, "support": 50}},
        "labelled_share": 0.6,
        "window_end": (T0 + timedelta(minutes=i, seconds=30)).isoformat(),
    }
    attrs = {"type": "io.infertap.performance", "detector": "churn-performance", "performancekind": "realised"}
    return attrs | {"time": T0 + timedelta(minutes=i)}, body


def quality_event(i: int, violations: list[dict]) -> tuple[dict, dict]:
    body = {
        "kind": "dataquality",
        "detector": "DataQuality",
        "n": 20,
        "is_alert": bool(violations),
        "violations": violations,
        "window_end": (T0 + timedelta(minutes=i)).isoformat(),
    }
    return {"type": "io.infertap.dataquality", "detector": "DataQuality", "time": T0 + timedelta(minutes=i)}, body


MISSING = {
    "feature": "sepal_width",
    "check": "missing",
    "count": 3,
    "share": 0.15,
    "threshold": 0.05,
    "message": "3 of 20 rows miss sepal_width (15%)",
}
RANGE = {"feature": "petal_length", "check": "range", "count": 2, "share": 0.1, "threshold": 0.0}
ESTIMATES = [0.95, 0.93, 0.88, 0.81]  # per minute; labels come back for minutes 1 and 2
REALISED = {1: 0.92, 2: 0.79}


def quality_events() -> list[tuple[dict, dict]]:
    events = [estimate_event(i, a) for i, a in enumerate(ESTIMATES)]
    events += [realised_event(i, a) for i, a in REALISED.items()]
    return events + [quality_event(0, []), quality_event(1, [MISSING]), quality_event(2, [RANGE, MISSING])]


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


@pytest.mark.fast
def test_performance_lines_and_quality_rows_from_events():
    """Each estimated headline figure is a line with its band and thresholds; the realised line of the
    same figure (the binary CBPE's positive class too, from the worker's per_class) beside it; the
    data-quality violations newest first."""
    data = from_events("churn", quality_events())
    lines = {(line.figure, line.kind): line for line in data.performance}
    assert set(lines) == {
        ("accuracy", "estimated"),
        ("accuracy", "realised"),
        ("f1 (churn)", "estimated"),
        ("f1 (churn)", "realised"),
    }  # f1 (_macro) is no headline of this estimator: not drawn
    estimate = lines[("accuracy", "estimated")]
    assert [p.value for p in estimate.points] == ESTIMATES and estimate.detector == "CBPE"
    assert (estimate.points[-1].lower, estimate.points[-1].upper) == pytest.approx((0.79, 0.83))
    assert (estimate.points[-1].lower_threshold, estimate.points[-1].upper_threshold) == (0.85, 0.97)
    assert [p.value for p in lines[("accuracy", "realised")].points] == list(REALISED.values())
    assert [p.value for p in lines[("f1 (churn)", "realised")].points] == pytest.approx([0.8, 0.67])
    assert lines[("accuracy", "realised")].detector == "churn-performance"
    assert [(r.feature, r.check, r.count) for r in data.quality] == [
        ("petal_length", "range", 2),
        ("sepal_width", "missing", 3),
        ("sepal_width", "missing", 3),
    ]
    assert data.quality_windows == (3, 2) and data.summary["data-quality windows violated"] == 2


@pytest.mark.fast
def test_realised_only_shows_the_window_and_macro_figures():
    """Without an estimate, the realised worker's accuracy and macro F1 are drawn (not every class)."""
    data = from_events("churn", [realised_event(i, a) for i, a in REALISED.items()])
    assert {line.figure for line in data.performance} == {"accuracy", "f1 (_macro)"}


@pytest.mark.fast
def test_sections_without_data_say_so_in_one_line():
    page = render_html(from_events("iris", [drift_event(0, False)]))
    notes = [line for line in page.splitlines() if 'class="note"' in line]
    assert any("No performance detections (io.infertap.performance) on iris-detections." in n for n in notes)
    assert any("No data-quality detections (io.infertap.dataquality) on iris-detections." in n for n in notes)
    assert any("No reference-vs-current histograms: pass --detector SPEC" in n for n in notes)
    assert 'id="performance"' not in page and 'id="quality"' not in page and 'id="histograms"' not in page


def _send(producer, topic: str, event) -> None:
    from cloudevents.core.bindings import kafka as ce_kafka

    msg = ce_kafka.to_binary_event(event, key_mapper=lambda e: e.get_id())
    headers = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in msg.headers.items()]
    key = msg.key.encode() if isinstance(msg.key, str) else msg.key
    producer.send(topic, value=msg.value, key=key, headers=headers)


def _detector_yaml(tmp_path: Path, isvc: str, bootstrap: str, reference: Path) -> Path:
    spec = {
        "apiVersion": "infertap.dev/v1alpha1",
        "kind": "Detector",
        "metadata": {"name": f"{isvc}-drift"},
        "spec": {
            "source": {"inferenceService": isvc, "bootstrap": bootstrap},
            "features": [{"name": n} for n in FEATURES],
            "detector": {"name": "ScipyKS", "reference": reference.name},
            "window": {"size": 50},
        },
    }
    path = tmp_path / "drift.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_report_from_the_topics(broker, tmp_path):
    """Detection and explanation CloudEvents, and logged requests, on the real broker, read back by
    `infertap report --bootstrap --detector`: drift, the performance lines and table, the data-quality
    table, and the reference-vs-current histograms of the drift detector's features."""
    from cloudevents.core.v1.event import CloudEvent
    from kafka import KafkaProducer

    from infertap.logger.events import EventBuilder

    isvc = f"rep-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    events = [(f"{isvc}-detections", drift_event(i, i >= 2)) for i in range(4)]
    events += [(f"{isvc}-detections", outlier_event(i, 5)) for i in range(3)]
    events += [(f"{isvc}-detections", e) for e in quality_events()]
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
                **{k: attrs[k] for k in ("detector", "performancekind") if k in attrs},
            },
            json.dumps(body).encode(),
        )
        _send(producer, topic, event)
    # what the logger logged: V1 requests of 40 rows moved on petal_length, one with a null sepal_width
    rng = np.random.default_rng(5)
    reference = tmp_path / "reference.npy"
    np.save(reference, rng.normal([5.8, 3.0, 3.8, 1.2], [0.8, 0.4, 1.7, 0.7], size=(300, 4)))
    current = rng.normal([5.8, 3.0, 6.8, 1.2], [0.8, 0.4, 0.5, 0.7], size=(40, 4)).round(3)
    builder = EventBuilder(source="http://test/", inference_service=isvc, component="predictor")
    for i, row in enumerate(current.tolist()):
        sent = [row[0], None, row[2], row[3]] if i == 7 else row
        body = json.dumps({"instances": [sent]}).encode()
        _send(producer, f"{isvc}-events", builder.request(f"r-{i}", body, "application/json", "{}"))
        _send(
            producer,
            f"{isvc}-events",
            builder.response(f"r-{i}", b'{"predictions": [1]}', "application/json", "{}", 200),
        )
    producer.flush()
    producer.close()
    spec = _detector_yaml(tmp_path, isvc, broker.bootstrap, reference)
    out = tmp_path / "report.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "infertap",
            "report",
            isvc,
            "--bootstrap",
            broker.bootstrap,
            "--detector",
            str(spec),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "windows evaluated 16" in done.stdout and "data-quality windows violated 2" in done.stdout
    page = Page()
    page.feed(out.read_text())
    assert "petal_length" in page.tables["features"] and "drift" in page.tables["features"]
    assert page.captions == [
        "Performance: accuracy",
        "Performance: f1 (churn)",
        *[f"Reference vs current: {n}" for n in FEATURES],
        "Per-feature drift p-value",
        "Drift flag per window",
        "Outlier rate",
        "Top features by mean |attribution|",
    ]
    assert len(page.images) == len(page.captions)
    # Performance: figure, kind, detector, windows, latest, band, thresholds, lowest
    rows = _rows(page.tables["performance"], 8)
    assert rows[("accuracy", "estimated")] == ["CBPE", "4", "0.81", "0.79 – 0.83", "0.85 – 0.97", "0.81"]
    assert rows[("accuracy", "realised")] == ["churn-performance", "2", "0.79", "0.79"]
    assert rows[("f1 (churn)", "estimated")][:3] == ["CBPE", "4", "0.71"]
    assert rows[("f1 (churn)", "realised")][:3] == ["churn-performance", "2", "0.67"]
    # Data quality: window, detector, feature, check, count, share, threshold; newest first
    cells = page.tables["quality"]
    assert cells[7:14] == ["2026-01-01 12:02:00 UTC", "DataQuality", "petal_length", "range", "2", "10.0%", "0"]
    assert cells[14:21] == ["2026-01-01 12:02:00 UTC", "DataQuality", "sepal_width", "missing", "3", "15.0%", "0.05"]
    assert cells[21:25] == ["2026-01-01 12:01:00 UTC", "DataQuality", "sepal_width", "missing"] and len(cells) == 28
    # Reference vs current: feature, reference rows, current rows, reference mean, current mean
    hist = _rows(page.tables["histograms"], 5, key=1)
    ref = np.load(reference)
    for j, name in enumerate(FEATURES):
        now = np.delete(current[:, j], 7) if name == "sepal_width" else current[:, j]  # the null is left out
        assert hist[(name,)] == ["300", str(len(now)), f"{ref[:, j].mean():.4g}", f"{now.mean():.4g}"], name


def _rows(cells: list[str], width: int, key: int = 2) -> dict[tuple[str, ...], list[str]]:
    """A table's body rows (after the header of `width` cells) as {first `key` cells: the rest}; empty cells
    are not in `cells` (HTMLParser skips them), so rows are told apart by their first cell."""
    body = cells[width:]
    rows: dict[tuple[str, ...], list[str]] = {}
    starts = [i for i, c in enumerate(body) if c in {"accuracy", "f1 (churn)", *FEATURES}]
    for i, j in zip(starts, [*starts[1:], len(body)], strict=True):
        rows[tuple(body[i : i + key])] = body[i + key : j]
    return rows


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
    """The whole page, the model-quality sections included, as Chromium draws it: content down to the
    histograms (the last section), not a blank or cut page."""
    from infertap.stack.report_quality import Histogram

    rng = np.random.default_rng(2)
    full = from_events("churn", quality_events())
    data.performance, data.quality, data.quality_windows = full.performance, full.quality, full.quality_windows
    data.histograms = [Histogram(n, rng.normal(0, 1, 300), rng.normal(1, 1, 40)) for n in FEATURES]
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
            "--window-size=1100,7000",
            html_path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # text and plots, not a blank page
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[:, :, :3]
    inked = np.nonzero((pixels < 0.9).any(axis=(1, 2)))[0]
    # the drift, outlier, attribution plots end near 2,400 px; two performance plots, the tables and four
    # histograms put the end of the page far below
    assert inked.max() > 4000, inked.max()


def test_report_detector_without_reference_exits_2(tmp_path):
    """--detector naming no file, or a file whose Detector has no reference data: exit 2, one sentence,
    before any source is read (the Prometheus here does not exist)."""
    perf = tmp_path / "perf.yaml"
    perf.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "infertap.dev/v1alpha1",
                "kind": "Detector",
                "metadata": {"name": "iris-performance"},
                "spec": {
                    "source": {"inferenceService": "iris"},
                    "detector": {"name": "RealisedPerformance", "params": {"task": "classification"}},
                },
            }
        )
    )
    for spec, said in (
        (tmp_path / "missing.yaml", "missing.yaml"),
        (perf, "no Detector document of iris with reference data (found iris-performance)"),
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "infertap",
                "report",
                "iris",
                "--prometheus",
                "http://127.0.0.1:9",
                "--detector",
                str(spec),
                "-o",
                str(tmp_path / "r.html"),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.html").exists()
