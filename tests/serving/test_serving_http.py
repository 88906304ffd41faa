"""Every runtime driven over real HTTP (V1 and V2, JSON and binary) and with NVIDIA's tritonclient,
against a model server child process; answers checked against the models loaded directly."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

# model -> (method of the `direct` fixture, exact comparison?)
CASES = {
    "sklearn-iris": ("sklearn", True),
    "xgboost-cancer": ("xgboost", True),
    "lightgbm-wine": ("lightgbm", True),
    "torch-digits": ("torch", False),
    "onnx-digits": ("onnx", False),
}


def rows(reference, model: str, n: int = 5) -> np.ndarray:
    X = reference(model)
    return np.ascontiguousarray(X[:: max(1, len(X) // n)][:n], dtype=np.float32)


def check(model: str, got: np.ndarray, direct, X: np.ndarray) -> None:
    method, exact = CASES[model]
    want = getattr(direct, method)(X)
    if exact:
        assert np.asarray(got).tolist() == np.asarray(want).tolist()
    else:
        np.testing.assert_allclose(np.asarray(got, dtype=np.float32), want, rtol=1e-4, atol=1e-4)


def input_name(server, model: str) -> str:
    return httpx.get(f"{server.url}/v2/models/{model}").json()["inputs"][0]["name"]


@pytest.mark.parametrize("model", CASES)
def test_v1_predict(server, reference, direct, model: str) -> None:
    X = rows(reference, model)
    r = httpx.post(f"{server.url}/v1/models/{model}:predict", json={"instances": X.tolist()}, timeout=30)
    assert r.status_code == 200, r.text
    check(model, r.json()["predictions"], direct, X)


@pytest.mark.parametrize("model", CASES)
def test_v2_json_infer(server, reference, direct, model: str) -> None:
    X = rows(reference, model)
    body = {
        "id": "req-1",
        "inputs": [
            {
                "name": input_name(server, model),
                "shape": list(X.shape),
                "datatype": "FP32",
                "data": X.reshape(-1).tolist(),
            }
        ],
    }
    r = httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["model_name"] == model and reply["id"] == "req-1"
    (out,) = reply["outputs"]
    check(model, np.asarray(out["data"]).reshape(out["shape"]), direct, X)


@pytest.mark.parametrize("model", CASES)
def test_v2_binary_infer_plain_http(server, reference, direct, model: str) -> None:
    """The binary extension built by hand: JSON header, then little-endian FP32 rows; binary output back."""
    X = rows(reference, model)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": input_name(server, model),
                    "shape": list(X.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": X.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    r = httpx.post(
        f"{server.url}/v2/models/{model}/infer",
        content=header + X.astype("<f4").tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    (out,) = orjson.loads(r.content[:n])["outputs"]
    assert "data" not in out
    dtype = {"INT64": "<i8", "FP32": "<f4", "FP64": "<f8"}[out["datatype"]]
    assert out["parameters"]["binary_data_size"] == len(r.content) - n
    check(model, np.frombuffer(r.content[n:], dtype=dtype).reshape(out["shape"]), direct, X)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", CASES)
def test_tritonclient(server, reference, direct, model: str, binary: bool) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
        meta = client.get_model_metadata(model)
        assert meta["name"] == model and meta["inputs"][0]["datatype"] == "FP32"
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        X = rows(reference, model)
        inp = triton.InferInput(meta["inputs"][0]["name"], list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=binary)
        out_name = meta["outputs"][0]["name"]
        result = client.infer(
            model, [inp], outputs=[triton.InferRequestedOutput(out_name, binary_data=binary)], request_id="t1"
        )
        assert result.get_response()["id"] == "t1"
        check(model, result.as_numpy(out_name), direct, X)
    finally:
        client.close()


@pytest.mark.parametrize("model", ["torch-digits", "onnx-digits", "sklearn-iris"])
def test_tritonclient_fp16_inputs(server, reference, direct, model: str) -> None:
    """Half-precision binary inputs are read as FP16 and cast to what the model takes."""
    X = rows(reference, model).astype(np.float16)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        inp = triton.InferInput(input_name(server, model), list(X.shape), "FP16")
        inp.set_data_from_numpy(X, binary_data=True)
        result = client.infer(model, [inp])
        check(model, result.as_numpy(result.get_response()["outputs"][0]["name"]), direct, X.astype(np.float32))
    finally:
        client.close()


def test_predict_proba_per_request(server, reference, direct) -> None:
    X = rows(reference, "sklearn-iris")
    r = httpx.post(
        f"{server.url}/v1/models/sklearn-iris:predict",
        json={"instances": X.tolist(), "parameters": {"predict_proba": True}},
    )
    np.testing.assert_allclose(r.json()["predictions"], direct.sklearn(X, proba=True), rtol=1e-6)
    body = {
        "parameters": {"predict_proba": True},
        "inputs": [{"name": "input-0", "shape": list(X.shape), "datatype": "FP32", "data": X.tolist()}],
    }
    out = httpx.post(f"{server.url}/v2/models/sklearn-iris/infer", json=body).json()["outputs"][0]
    assert out["shape"] == [len(X), 3] and out["datatype"] == "FP64"


def test_versions(server, reference) -> None:
    X = rows(reference, "sklearn-iris", 2)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        inp = triton.InferInput("input-0", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        assert client.infer("sklearn-iris", [inp], model_version="1").get_response()["model_version"] == "1"
        assert client.is_model_ready("sklearn-iris", "1") and not client.is_model_ready("sklearn-iris", "2")
        assert client.get_model_metadata("sklearn-iris", "1")["versions"] == ["1"]
    finally:
        client.close()
    r = httpx.post(f"{server.url}/v2/models/sklearn-iris/versions/2/infer", json={})
    assert r.status_code == 404 and "no version '2'" in r.json()["error"]


def _v2(name: str, datatype: str, shape: list[int], data) -> dict:
    return {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        ("/v2/models/nope/infer", _v2("x", "FP32", [1], [1]), 404, "model 'nope' not found"),
        ("/v1/models/nope:predict", {"instances": [[1]]}, 404, "model 'nope' not found"),
        ("/v2/models/sklearn-iris/infer", _v2("x", "FP32", [2, 4], [1, 2, 3, 4]), 400, "shape [2, 4] needs 8 elements"),
        (
            "/v2/models/sklearn-iris/infer",
            _v2("x", "BYTES", [1, 4], ["a", "b", "c", "d"]),
            400,
            "needs numbers, got BYTES",
        ),
        (
            "/v2/models/sklearn-iris/infer",
            _v2("x", "FP32", [1, 3], [1, 2, 3]),
            400,
            "expects 4 features per row, got 3",
        ),
        ("/v2/models/sklearn-iris/infer", _v2("x", "INT32", [1, 4], [1, 2, 3, 4.5]), 400, "non-integer"),
        ("/v2/models/torch-digits/infer", _v2("x", "FP32", [1, 5], [0] * 5), 400, "rejected the input"),
        ("/v2/models/onnx-digits/infer", _v2("input", "FP32", [1, 5], [0] * 5), 400, "Got: 5 Expected: 64"),
        ("/v2/models/onnx-digits/infer", {"inputs": [], "id": "x"}, 400, "inputs"),
        ("/v1/models/sklearn-iris:predict", {"instances": [[1, 2], [3]]}, 400, "not a rectangular array"),
        ("/v1/models/xgboost-cancer:predict", {"instances": [[1, 2]]}, 400, "expects 30 features per row, got 2"),
        # more dimensions than numpy allows: was 500 "maximum supported dimension" (issue 7)
        ("/v2/models/sklearn-iris/infer", _v2("x", "FP32", [1] * 40, [1]), 400, "is not possible here"),
    ],
)
def test_errors(server, path: str, body: dict, status: int, message: str) -> None:
    r = httpx.post(server.url + path, json=body, timeout=30)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_garbage_and_binary_mismatch(server) -> None:
    r = httpx.post(f"{server.url}/v2/models/sklearn-iris/infer", content=b"\x00garbage{")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    header = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]}
    )
    r = httpx.post(
        f"{server.url}/v2/models/sklearn-iris/infer",
        content=header + b"\0" * 12,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 400 and "needs 16 bytes, binary_data_size is 12" in r.json()["error"]
    r = httpx.post(
        f"{server.url}/v2/models/sklearn-iris/infer",
        json={**_v2("x", "FP32", [1, 4], [1, 2, 3, 4]), "outputs": [{"name": "nope"}]},
    )
    assert r.status_code == 400 and "no output 'nope'" in r.json()["error"]


def _batch_stats(server, model: str) -> tuple[float, float]:
    text = httpx.get(f"{server.url}/metrics").text
    count = total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "infertap_batch_size":
            for s in family.samples:
                if s.labels.get("model") == model and s.name.endswith("_count"):
                    count = s.value
                if s.labels.get("model") == model and s.name.endswith("_sum"):
                    total = s.value
    return count, total


def test_dynamic_batching_merges_concurrent_requests(server, reference, direct) -> None:
    """32 concurrent single-row requests: every row answered right, in fewer than 32 model calls."""
    X = rows(reference, "torch-digits", 32)
    calls_before, rows_before = _batch_stats(server, "torch-digits")

    async def fire():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32)) as client:

            async def one(i: int):
                body = _v2("input-0", "FP32", [1, 64], X[i].tolist())
                return await client.post(f"{server.url}/v2/models/torch-digits/infer", json=body)

            return await asyncio.gather(*(one(i) for i in range(32)))

    replies = asyncio.run(fire())
    got = np.array([r.json()["outputs"][0]["data"] for r in replies], dtype=np.float32)
    np.testing.assert_allclose(got, direct.torch(X), rtol=1e-4, atol=1e-4)
    calls_after, rows_after = _batch_stats(server, "torch-digits")
    assert rows_after - rows_before == 32
    assert 1 <= calls_after - calls_before < 32, "no two requests shared a model call"


def test_metrics_count_requests_by_model_endpoint_and_code(server, reference) -> None:
    X = rows(reference, "lightgbm-wine", 2)
    httpx.post(f"{server.url}/v1/models/lightgbm-wine:predict", json={"instances": X.tolist()})
    httpx.post(f"{server.url}/v1/models/lightgbm-wine:predict", json={"instances": [[1]]})
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)
        for s in f.samples
    }
    base = (
        ("component", "predictor"),
        ("endpoint", "v1_predict"),
        ("inference_service", "tests"),
        ("model", "lightgbm-wine"),
    )
    ok = tuple(sorted((*base, ("code", "200"))))
    bad = tuple(sorted((*base, ("code", "400"))))
    assert samples[("infertap_requests_total", ok)] >= 1
    assert samples[("infertap_requests_total", bad)] >= 1
    assert samples[("infertap_request_duration_seconds_count", ok)] >= 1
    assert (
        samples[
            (
                "infertap_model_ready",
                (("component", "predictor"), ("inference_service", "tests"), ("model", "onnx-digits")),
            )
        ]
        == 1
    )


def test_v1_and_v2_discovery(server) -> None:
    assert httpx.get(f"{server.url}/").json() == {"status": "alive"}
    assert set(httpx.get(f"{server.url}/v1/models").json()["models"]) == set(CASES)
    assert httpx.get(f"{server.url}/v1/models/onnx-digits").json() == {"name": "onnx-digits", "ready": True}
    assert httpx.get(f"{server.url}/v1/models/nope").status_code == 404
    meta = httpx.get(f"{server.url}/v2/models/onnx-digits").json()
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}


def test_openapi_documents_the_raw_body_routes(server) -> None:
    """/openapi.json carries request bodies (the routes read raw bodies), the served names and examples that work."""
    doc = httpx.get(f"{server.url}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    predict = doc["paths"]["/v1/models/{name}:predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]
    assert body["schema"] == {
        "oneOf": [{"$ref": "#/components/schemas/V1InstancesBody"}, {"$ref": "#/components/schemas/V1InputsBody"}]
    }
    assert set(predict["parameters"][0]["schema"]["enum"]) == set(CASES)
    assert {"200", "400", "404", "413", "503"} <= set(predict["responses"]) and "422" not in predict["responses"]
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert any(p["name"] == "Inference-Header-Content-Length" and p["in"] == "header" for p in infer["parameters"])
    schemas = doc["components"]["schemas"]
    assert {"InferenceRequest", "RequestInput", "InferenceResponse", "ErrorBody", "ModelMetadata"} <= set(schemas)
    assert schemas["RequestInput"]["properties"]["datatype"]["enum"][0] == "BOOL"
    # the examples fit the model they name
    for path, operation in (("/v1/models/{name}:predict", predict), ("/v2/models/{name}/infer", infer)):
        name = operation["parameters"][0]["example"]
        example = operation["requestBody"]["content"]["application/json"]["example"]
        r = httpx.post(server.url + path.replace("{name}", name), json=example, timeout=30)
        assert r.status_code == 200, (path, r.text)
