"""The committed dashboard JSON: built by dashboards/build.py, provisionable, datasource as a variable."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml
from stack_support import DASHBOARDS, GRAFANA, ROOT, dashboard_files, panels

BOARDS = dashboard_files()


def test_committed_json_matches_the_builder():
    done = subprocess.run(
        [sys.executable, str(DASHBOARDS / "build.py"), "--check"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_the_six_dashboards_exist():
    titles = {json.loads(p.read_text())["title"] for p in BOARDS}
    assert titles == {
        "infertap / Serving overview",
        "infertap / Logger delivery",
        "infertap / Drift and outliers",
        "infertap / Explanations",
        "infertap / LLM serving",
        "infertap / Model quality",
    }


@pytest.mark.parametrize("path", BOARDS, ids=[p.stem for p in BOARDS])
def test_datasource_is_a_variable(path):
    text = path.read_text()
    board = json.loads(text)
    assert "${DS_" not in text and "__inputs" not in board  # UI-import inputs: file provisioning cannot fill them
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip()


@pytest.mark.parametrize("path", BOARDS, ids=[p.stem for p in BOARDS])
def test_uids_and_layout(path):
    board = json.loads(path.read_text())
    assert board["uid"].startswith("infertap-") and len(board["uid"]) <= 40
    for panel in panels(board):
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]


def test_drift_board_has_the_feature_heatmap():
    board = json.loads((GRAFANA / "infertap-drift.json").read_text())
    heat = [p for p in panels(board) if p["type"] == "heatmap"]
    assert heat and "feature" in heat[0]["targets"][0]["expr"]
    assert heat[0]["options"]["calculate"] is False


def test_llm_board_reads_every_genai_metric():
    """Each GenAI metric of the sidecar (sidecar/llm_metrics.py) and the redaction counter is on
    the LLM board, filtered by the board's variables."""
    from infertap.sidecar import llm_metrics
    from infertap.sidecar.redact import REDACTIONS

    board = json.loads((GRAFANA / "infertap-llm.json").read_text())
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    histograms = (llm_metrics.TTFT, llm_metrics.TPOT, llm_metrics.DURATION)
    counters = (llm_metrics.TOKENS, llm_metrics.REQUESTS, llm_metrics.COST, REDACTIONS)
    names = [f"{next(iter(m.describe())).name}_bucket" for m in histograms]
    names += [f"{next(iter(m.describe())).name}_total" for m in counters]
    for name in names:
        assert any(name in e for e in exprs), f"{name} is on no panel of the LLM board"
    for expr in exprs:
        assert 'inference_service=~"$inference_service"' in expr, expr
        assert "infertap_tap_redactions" in expr or 'model=~"$model"' in expr, expr
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "inference_service", "model"}
    titles = {p["title"] for p in panels(board)}
    assert {"Time to first token", "Time per output token", "Error rate", "Cost by model (USD/h)"} <= titles


def _families(*collectors) -> set[str]:
    """The exposed names (counters with _total) of every metric the collectors registered."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    for make in collectors:
        make(registry)
    return {m.name + ("_total" if m.type == "counter" else "") for m in registry.collect()}


def test_model_quality_board_reads_every_quality_metric():
    """Each series of the performance workers (detectors/performance/), the estimators
    (detectors/estimate_metrics.py) and DataQuality (detectors/quality/metrics.py) is on the model-quality
    board, filtered by its variables; realised and estimated are one query (by kind) on a panel repeated
    per metric, beside the estimate's band and thresholds."""
    from infertap.detectors.estimate_metrics import EstimateMetrics
    from infertap.detectors.performance.metrics import PerformanceMetrics
    from infertap.detectors.quality.metrics import QualityMetrics

    names = _families(
        lambda r: PerformanceMetrics("i", "d", registry=r),
        lambda r: EstimateMetrics(r, "i", "d"),
        lambda r: QualityMetrics(r, "i", "d"),
    )
    assert {"infertap_performance_metric", "infertap_performance_band", "infertap_data_quality_share"} <= names
    board = json.loads((GRAFANA / "infertap-model-quality.json").read_text())
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    for name in names:
        assert any(re.search(rf"\b{name}\b", e) for e in exprs), f"{name} is on no panel of the model-quality board"
    for expr in exprs:
        assert 'inference_service=~"$inference_service", detector=~"$detector"' in expr, expr
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"datasource", "inference_service", "detector", "metric", "class"}
    listed = variables["inference_service"]["query"]["query"]
    assert "infertap_performance_metric" in listed and "infertap_data_quality_share" in listed  # either worker
    (figure,) = [p for p in panels(board) if p.get("repeat") == "metric"]
    assert figure["title"] == "Performance: $metric" and figure["repeatDirection"] == "h"
    first, band, limits = (t["expr"] for t in figure["targets"])
    assert "infertap_performance_metric{" in first and "by (inference_service, kind, class)" in first
    assert "kind=" not in first  # both kinds: the realised and the estimated line
    assert "infertap_performance_band{" in band and "bound" in band
    assert "infertap_performance_threshold{" in limits and "bound" in limits
    assert all('metric=~"$metric", class=~"$class"' in e for e in (first, band, limits))
    timeline = [p for p in panels(board) if p["type"] == "state-timeline"]
    assert timeline and "by (feature, check)" in timeline[0]["targets"][0]["expr"]


def test_provisioning_points_at_the_mounted_folder():
    providers = yaml.safe_load((DASHBOARDS / "provisioning/dashboards/infertap.yaml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/infertap"
    sources = yaml.safe_load((DASHBOARDS / "provisioning/datasources/prometheus.yaml").read_text())["datasources"]
    assert sources[0]["type"] == "prometheus" and sources[0]["isDefault"] is True
