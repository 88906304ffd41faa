"""Each backend against a real served model: shapes, additivity, completeness, batches, raw output."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from tests.explainers.conftest import IRIS_FEATURES, explain, metric


def direct_proba(models_dir, X):
    import joblib

    return joblib.load(models_dir / "sklearn-iris" / "model.joblib").predict_proba(X)


def test_kernel_shap_v1_batch_adds_up_to_the_served_prediction(predictor, serve_explainer, reference, models_dir):
    url = serve_explainer(
        name="sklearn-iris",
        explainer_type="KernelShap",
        predictor_url=predictor,
        protocol="v1",
        background=str(models_dir / "sklearn-iris" / "reference.npy"),
        background_size=40,
        feature_names=IRIS_FEATURES,
    )
    X = reference("sklearn-iris")[[0, 60, 120]]
    r = explain(url, "sklearn-iris", X)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["explainer"] == "KernelShap" and len(body["explanations"]) == 3  # every instance explained
    proba = direct_proba(models_dir, X)
    for i, e in enumerate(body["explanations"]):
        assert e["feature_names"] == IRIS_FEATURES and len(e["values"]) == 4
        assert e["target"] == int(proba[i].argmax())  # the predicted class by default
        assert e["prediction"] == pytest.approx(proba[i, e["target"]], abs=1e-5)  # the model's own output
        assert e["base_value"] + sum(e["values"]) == pytest.approx(e["prediction"], abs=1e-4)
        assert np.asarray(e["raw"]["shap_values"]).shape == (3, 4)  # every class, from shap
    # A requested target is explained instead of the predicted class.
    r = explain(url, "sklearn-iris", X[:1], target=2)
    e = r.json()["explanations"][0]
    assert e["target"] == 2 and e["prediction"] == pytest.approx(proba[0, 2], abs=1e-6)


def test_permutation_shap_v2_sends_one_request_per_instance(predictor, serve_explainer, reference, models_dir):
    url = serve_explainer(
        name="xgboost-cancer",
        explainer_type="PermutationShap",
        predictor_url=predictor,
        protocol="v2",
        background=str(models_dir / "xgboost-cancer" / "reference.npy"),
        background_size=20,
    )
    X = reference("xgboost-cancer")[:3]
    r = explain(url, "xgboost-cancer", X, nsamples=300)
    assert r.status_code == 200, r.text
    for e in r.json()["explanations"]:
        assert len(e["values"]) == 30 and e["output_space"] == "probability"
        assert e["base_value"] + sum(e["values"]) == pytest.approx(e["prediction"], abs=1e-5)
    text = httpx.get(f"{url}/metrics").text
    # 300 masked evaluations x 20 background rows per instance, yet one predictor request each.
    assert metric(text, "infertap_explainer_predictor_requests_total") == 3
    assert metric(text, "infertap_explainer_predictor_rows_total") > 3 * 200 * 20


def margins_xgboost(models_dir, X):
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(models_dir / "xgboost-cancer" / "model.json"))
    return booster.predict(xgb.DMatrix(X), output_margin=True)


def test_tree_shap_xgboost_and_lightgbm_add_up_to_the_margin(serve_explainer, reference, models_dir):
    import lightgbm as lgb

    url = serve_explainer(
        name="xgboost-cancer",
        explainer_type="TreeShap",
        storage_uri=str(models_dir / "xgboost-cancer"),
        model_format="xgboost",
    )
    X = reference("xgboost-cancer")[:4]
    body = explain(url, "xgboost-cancer", X).json()
    margins = margins_xgboost(models_dir, X)
    for e, m in zip(body["explanations"], margins, strict=True):
        assert e["output_space"] == "margin" and len(e["values"]) == 30
        assert e["base_value"] + sum(e["values"]) == pytest.approx(float(m), abs=1e-4)

    url = serve_explainer(
        name="lightgbm-wine",
        explainer_type="TreeShap",
        storage_uri=str(models_dir / "lightgbm-wine"),
        model_format="lightgbm",
    )
    X = reference("lightgbm-wine")[[0, 70, 170]]
    body = explain(url, "lightgbm-wine", X).json()
    raw = lgb.Booster(model_file=str(models_dir / "lightgbm-wine" / "model.txt")).predict(X, raw_score=True)
    for e, row in zip(body["explanations"], raw, strict=True):
        assert e["target"] == int(row.argmax())
        assert e["base_value"] + sum(e["values"]) == pytest.approx(float(row[e["target"]]), abs=1e-4)
        assert np.asarray(e["raw"]["shap_values"]).shape == (3, 13)


def test_tree_shap_sklearn_forest(serve_explainer, tmp_path):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=10, max_depth=3, random_state=0).fit(X, y)
    joblib.dump(model, tmp_path / "model.joblib")
    url = serve_explainer(name="rf", explainer_type="TreeShap", storage_uri=str(tmp_path), model_format="sklearn")
    body = explain(url, "rf", X[[0, 100]]).json()
    proba = model.predict_proba(X[[0, 100]])
    for e, p in zip(body["explanations"], proba, strict=True):
        assert e["output_space"] == "probability"
        assert e["base_value"] + sum(e["values"]) == pytest.approx(float(p.max()), abs=1e-6)


def test_xgboost_pred_contribs_match_tree_shap(serve_explainer, reference, models_dir):
    X = reference("xgboost-cancer")[:5]
    common = {"storage_uri": str(models_dir / "xgboost-cancer"), "model_format": "xgboost"}
    own = explain(serve_explainer(name="xgboost-cancer", explainer_type="XGBoostShap", **common), "xgboost-cancer", X)
    tree = explain(serve_explainer(name="xgboost-cancer", explainer_type="TreeShap", **common), "xgboost-cancer", X)
    assert own.status_code == 200, own.text
    margins = margins_xgboost(models_dir, X)
    for a, b, m in zip(own.json()["explanations"], tree.json()["explanations"], margins, strict=True):
        assert a["raw"]["device"] == "cpu"  # no GPU on this machine
        assert a["base_value"] + sum(a["values"]) == pytest.approx(float(m), abs=1e-3)
        np.testing.assert_allclose(a["values"], b["values"], atol=1e-3)


def test_integrated_gradients_completeness_and_gradient_shap(serve_explainer, reference, models_dir):
    import torch

    X = reference("torch-digits")[:3]
    url = serve_explainer(
        name="torch-digits",
        explainer_type="IntegratedGradients",
        storage_uri=str(models_dir / "torch-digits"),
        model_format="pytorch",
        background=str(models_dir / "torch-digits" / "reference.npy"),
        internal_batch_size=32,
    )
    r = explain(url, "torch-digits", X, nsamples=100)
    assert r.status_code == 200, r.text
    model = torch.jit.load(str(models_dir / "torch-digits" / "model.pt")).eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(X)).numpy()
        zero = model(torch.zeros(1, 64)).numpy()[0]
    for e, row in zip(r.json()["explanations"], logits, strict=True):
        t = e["target"]
        assert t == int(row.argmax()) and len(e["values"]) == 64
        assert e["prediction"] == pytest.approx(float(row[t]), abs=1e-4)
        assert e["base_value"] == pytest.approx(float(zero[t]), abs=1e-4)  # zeros baseline
        # completeness: attributions sum to f(x) - f(baseline), up to the integration error
        gap = e["prediction"] - e["base_value"]
        assert sum(e["values"]) == pytest.approx(gap, abs=0.02 * abs(gap) + 0.02)
        assert abs(e["raw"]["convergence_delta"]) < 0.02 * abs(gap) + 0.02

    url = serve_explainer(
        name="torch-digits",
        explainer_type="GradientShap",
        storage_uri=str(models_dir / "torch-digits"),
        model_format="pytorch",
        background=str(models_dir / "torch-digits" / "reference.npy"),
        background_size=20,
    )
    body = explain(url, "torch-digits", X, nsamples=64).json()
    for e, row in zip(body["explanations"], logits, strict=True):
        assert len(e["values"]) == 64 and e["target"] == int(row.argmax())
        gap = e["prediction"] - e["base_value"]
        assert sum(e["values"]) == pytest.approx(gap, abs=0.25 * abs(gap) + 0.5)  # sampling method: loose


def test_v2_explain_returns_a_bytes_explanation_output(predictor, serve_explainer, reference, models_dir):
    from infertap.serving.codec import decode_v2_response, encode_v2_request

    url = serve_explainer(
        name="sklearn-iris",
        explainer_type="KernelShap",
        predictor_url=predictor,
        background=str(models_dir / "sklearn-iris" / "reference.npy"),
        background_size=20,
    )
    X = reference("sklearn-iris")[:2].astype(np.float32)
    body, headers = encode_v2_request({"input-0": X}, parameters={"explain_parameters": {"nsamples": 20}})
    r = httpx.post(f"{url}/v2/models/sklearn-iris-explainer/infer", content=body, headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    response = decode_v2_response(r.content)
    (out,) = response.outputs
    assert out.name == "explanation" and out.datatype == "BYTES"
    explanation = json.loads(out.data.reshape(-1)[0])
    assert len(explanation["explanations"]) == 2
    assert explanation["explanations"][0]["raw"]["nsamples"] <= 20
    assert httpx.get(f"{url}/v2/models/sklearn-iris-explainer/ready").status_code == 200
    # binary request body as well
    body, headers = encode_v2_request({"input-0": X}, binary=True)
    r = httpx.post(f"{url}/v2/models/sklearn-iris-explainer/infer", content=body, headers=headers, timeout=120)
    assert r.status_code == 200, r.text


def test_metrics_export_mean_absolute_attribution_per_feature(predictor, serve_explainer, reference, models_dir):
    url = serve_explainer(
        name="sklearn-iris",
        explainer_type="PermutationShap",
        predictor_url=predictor,
        background=str(models_dir / "sklearn-iris" / "reference.npy"),
        background_size=20,
        feature_names=IRIS_FEATURES,
        inference_service="iris",
    )
    X = reference("sklearn-iris")[[0, 1, 2, 3]]
    values = np.array([e["values"] for e in explain(url, "sklearn-iris", X).json()["explanations"]])
    text = httpx.get(f"{url}/metrics").text
    for j, name in enumerate(IRIS_FEATURES):
        got = metric(text, "infertap_explainer_mean_abs_attribution", feature=name, inference_service="iris")
        assert got == pytest.approx(np.abs(values[:, j]).mean(), rel=1e-6)
    assert metric(text, "infertap_explainer_instances_total", explainer="PermutationShap") == 4
    assert metric(text, "infertap_explainer_explain_seconds_count", explainer="PermutationShap") == 1
    assert metric(text, "infertap_explainer_requests_total", code="200") == 1
