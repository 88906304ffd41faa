"""Issue 14: KServe's Python server's histograms beside infertap's own, so KServe dashboards
(grafana.com 17969) keep working: names, the one label `model_name`, default buckets."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from test_serving_app import call, make_app

KSERVE = ("request_preprocess_seconds", "request_predict_seconds", "request_postprocess_seconds")


def _histograms(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text) if f.type == "histogram"}


def test_kserve_histograms_after_a_predict_and_an_infer(models_dir: Path) -> None:
    app = make_app(models_dir)
    assert call(app, "POST", "/v1/models/iris:predict", json={"instances": [[6.8, 2.8, 4.8, 1.4]]}).status_code == 200
    infer = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [6.8, 2.8, 4.8, 1.4]}]}
    assert call(app, "POST", "/v2/models/iris/infer", json=infer).status_code == 200
    text = call(app, "GET", "/metrics").text
    found = _histograms(text)
    for name in KSERVE:
        samples = found[name]
        count = next(s for s in samples if s.name == f"{name}_count")
        assert count.labels == {"model_name": "iris"} and count.value == 2, (name, samples)
        buckets = [s for s in samples if s.name == f"{name}_bucket"]
        assert {s.labels["le"] for s in buckets} >= {"0.005", "0.01", "10.0", "+Inf"}  # prometheus_client's defaults
        assert next(s for s in samples if s.name == f"{name}_sum").value >= 0
    predict_sum = next(s.value for s in found["request_predict_seconds"] if s.name.endswith("_sum"))
    assert predict_sum > 0
    assert "infertap_request_duration_seconds_bucket" in text  # ours still there


def test_explainer_exposes_request_explain_seconds() -> None:
    from infertap.explainers.metrics import ExplainerMetrics

    metrics = ExplainerMetrics("iris", "sklearn-iris", "KernelShap")
    metrics.kserve_explain.observe(0.2)
    text = metrics.render().decode()
    assert 'request_explain_seconds_count{model_name="sklearn-iris"} 1.0' in text
