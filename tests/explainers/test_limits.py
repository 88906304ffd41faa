"""Bad input is a 400 naming what was expected; limits and the deadline answer with a sentence, never a hang."""

from __future__ import annotations

import time

import httpx
import numpy as np
import orjson
import pytest

from tests.explainers.conftest import explain


@pytest.fixture
def iris_kernel(predictor, serve_explainer, models_dir):
    return serve_explainer(
        name="sklearn-iris",
        explainer_type="KernelShap",
        predictor_url=predictor,
        background=str(models_dir / "sklearn-iris" / "reference.npy"),
        background_size=20,
        max_instances=5,
        max_samples=1000,
    )


@pytest.mark.parametrize(
    "body, words",
    [
        ({"instances": [[1.0, 2.0, 3.0]]}, "expected 4 features per instance, got 3"),
        ({"instances": [[1.0, 2.0, 3.0, 4.0, 5.0]]}, "expected 4 features per instance, got 5"),
        ({"instances": [["a", "b", "c", "d"]]}, "explains numbers"),
        ({"instances": [[1, 2, 3, 4]] * 6}, "max_instances is 5"),
        ({"instances": [[1, 2, 3, 4]], "parameters": {"nsamples": 5000}}, "max_samples 1000"),
        ({"instances": [[1, 2, 3, 4]], "parameters": {"nsamples": "many"}}, "nsamples must be an integer"),
        ({"instances": [[1, 2, 3, 4]], "parameters": {"target": 7}}, "target 7 is out of range"),
        ({"instances": [[1, 2, 3, 4]], "parameters": {"deadline_s": -1}}, "deadline_s must be > 0"),
        ({"rows": [[1, 2, 3, 4]]}, 'exactly one of "instances" or "inputs"'),
        ({"instances": [[1, 2], [3]]}, "not a rectangular array"),
        # beyond float32: the predictor refused the rows and this was a 502 (schemathesis, issue 7)
        ({"instances": [[1e308, 2, 3, 4]]}, "beyond float32's range"),
    ],
)
def test_bad_input_is_a_400_naming_what_was_expected(iris_kernel, body, words):
    r = httpx.post(f"{iris_kernel}/v1/models/sklearn-iris:explain", json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]


def test_not_json_unknown_model_and_v2_shape(iris_kernel):
    r = httpx.post(f"{iris_kernel}/v1/models/sklearn-iris:explain", content=b"{nope", timeout=30)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = httpx.post(f"{iris_kernel}/v1/models/other:explain", json={"instances": [[1, 2, 3, 4]]}, timeout=30)
    assert r.status_code == 404 and "'sklearn-iris'" in r.json()["error"]
    r = httpx.post(
        f"{iris_kernel}/v2/models/sklearn-iris-explainer/infer",
        timeout=30,
        json={"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
    )
    assert r.status_code == 400 and "expected 4 features" in r.json()["error"]
    r = httpx.post(
        f"{iris_kernel}/v2/models/sklearn-iris/infer",
        timeout=30,
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
    )
    assert r.status_code == 404 and "-explainer/infer" in r.json()["error"]
    text = httpx.get(f"{iris_kernel}/metrics").text
    assert (
        'infertap_explainer_errors_total{explainer="KernelShap",inference_service="",model="sklearn-iris",reason="bad_input"}'
        in text
    )


def test_deadline_hit_is_a_clear_504_and_the_server_keeps_serving(predictor, serve_explainer, models_dir, reference):
    url = serve_explainer(
        name="xgboost-cancer",
        explainer_type="KernelShap",
        predictor_url=predictor,
        background=str(models_dir / "xgboost-cancer" / "reference.npy"),
        background_size=100,
        max_rows_per_request=2000,
        deadline_s=60,
    )
    X = reference("xgboost-cancer")[:5]
    started = time.monotonic()
    r = explain(url, "xgboost-cancer", X, nsamples=5000, deadline_s=0.5)
    assert r.status_code == 504, r.text
    assert "did not finish 5 instance(s) within the deadline" in r.json()["error"]
    assert time.monotonic() - started < 30  # answered at the deadline, not after the work
    r = explain(url, "xgboost-cancer", X[:1], nsamples=100)
    assert r.status_code == 200, r.text
    text = httpx.get(f"{url}/metrics").text
    assert 'reason="deadline"' in text and 'code="504"' in text


def test_predictor_down_is_a_502(serve_explainer, models_dir):
    from tests.conftest import free_port

    url = serve_explainer(
        name="sklearn-iris",
        explainer_type="PermutationShap",
        predictor_url=f"http://127.0.0.1:{free_port()}",
        background=str(models_dir / "sklearn-iris" / "reference.npy"),
    )
    r = explain(url, "sklearn-iris", np.ones((1, 4)))
    assert r.status_code == 502 and "cannot reach predictor" in r.json()["error"]


def _v2_explain(url: str, parameters=None, shape=(1, 4), data=(1, 2, 3, 4), datatype="FP32") -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": list(shape), "datatype": datatype, "data": list(data)}]}
    if parameters is not None:
        body["parameters"] = parameters
    return httpx.post(f"{url}/v2/models/sklearn-iris-explainer/infer", json=body, timeout=60)


def test_malformed_v2_requests_are_400_not_500(iris_kernel):
    """Each of these was a 500 before issue 7 (plain-text "Internal Server Error" or "KernelShap failed")."""
    for parameters in ({"explain_parameters": [1, 2]}, {"explain_parameters": "ab"}, {"explain_parameters": 5}):
        r = _v2_explain(iris_kernel, parameters)
        assert r.status_code == 400 and "explain_parameters must be a JSON object" in r.json()["error"], r.text
    r = _v2_explain(iris_kernel, shape=(0, 4), data=())  # zero rows (schemathesis)
    assert r.status_code == 400 and "no instances to explain" in r.json()["error"], r.text
    r = _v2_explain(iris_kernel, data=(3e38, 3e38, 3e38, 3e38), datatype="FP16")  # inf once read as FP16
    assert r.status_code == 400 and "float32's range" in r.json()["error"], r.text
    head = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}]}
    )
    r = httpx.post(
        f"{iris_kernel}/v2/models/sklearn-iris-explainer/infer",
        content=head + b"\x01\0\0\0\xff",
        headers={"Inference-Header-Content-Length": str(len(head))},
        timeout=30,
    )
    assert r.status_code == 400 and "UTF-8" in r.json()["error"], r.text
    # null options mean "not given" (the OpenAPI document allows null)
    r = _v2_explain(iris_kernel, {"explain_parameters": {"deadline_s": None, "nsamples": None, "target": None}})
    assert r.status_code == 200, r.text


def test_openapi_documents_bodies_and_its_examples_work(iris_kernel):
    doc = httpx.get(f"{iris_kernel}/openapi.json").json()
    v1 = doc["paths"]["/v1/models/{model}:explain"]["post"]
    assert v1["parameters"][0]["schema"]["enum"] == ["sklearn-iris"]
    reply = v1["responses"]["200"]["content"]["application/json"]["schema"]
    assert reply == {"$ref": "#/components/schemas/ExplainResponse"}
    v2 = doc["paths"]["/v2/models/{model}/infer"]["post"]
    assert v2["parameters"][0]["schema"]["enum"] == ["sklearn-iris-explainer"]
    options = doc["components"]["schemas"]["ExplainParameters"]["properties"]
    assert {"nsamples", "target", "deadline_s"} <= set(options)
    assert "explain_parameters" in doc["components"]["schemas"]["ExplainInferParameters"]["properties"]
    for path, operation in (("/v1/models/{model}:explain", v1), ("/v2/models/{model}/infer", v2)):
        example = operation["requestBody"]["content"]["application/json"]["example"]
        model = operation["parameters"][0]["example"]
        r = httpx.post(iris_kernel + path.replace("{model}", model), json=example, timeout=60)
        assert r.status_code == 200, (path, r.text)
