"""The ASGI app in-process (httpx ASGI transport): limits, readiness, routing and error shapes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from infertap.serving.server import create_app
from infertap.serving.settings import ModelSettings, ServerSettings


def make_app(models_dir: Path, load: bool = True, **server):
    settings = ServerSettings(
        models=[ModelSettings(name="iris", format="sklearn", uri=str(models_dir / "sklearn-iris"), version="3")],
        **server,
    )
    app = create_app(settings)
    if load:
        app.state.repository.load_all()
    return app


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_body_over_the_limit_is_413(models_dir: Path) -> None:
    app = make_app(models_dir, max_request_bytes=200)
    rows = {"instances": [[5.1, 3.5, 1.4, 0.2]] * 20}
    for path in ("/v1/models/iris:predict", "/v2/models/iris/infer"):
        r = call(app, "POST", path, json=rows)
        assert r.status_code == 413
        assert "exceeds the limit of 200 bytes" in r.json()["error"]
    assert call(app, "POST", "/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200


def test_gzip_body_is_read_and_capped(models_dir: Path) -> None:
    import gzip

    import orjson

    app = make_app(models_dir, max_request_bytes=500)
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
    r = call(app, "POST", "/v2/models/iris/infer", content=gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [0]
    bomb = gzip.compress(b" " * 10_000)
    r = call(app, "POST", "/v2/models/iris/infer", content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_not_ready_answers_503(models_dir: Path) -> None:
    app = make_app(models_dir, load=False)
    assert call(app, "GET", "/v2/health/live").status_code == 200
    for method, path in [
        ("GET", "/v2/health/ready"),
        ("GET", "/v2/models/iris/ready"),
        ("GET", "/v1/models/iris"),
        ("POST", "/v2/models/iris/infer"),
    ]:
        r = call(app, method, path, json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]})
        assert r.status_code == 503, path
        assert "not ready" in r.json()["error"]


def test_versioned_routes(models_dir: Path) -> None:
    app = make_app(models_dir)
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [6.0, 3.0, 5.0, 2.0]}]}
    r = call(app, "POST", "/v2/models/iris/versions/3/infer", json=body)
    assert r.status_code == 200 and r.json()["model_version"] == "3" and r.json()["outputs"][0]["data"] == [2]
    assert call(app, "GET", "/v2/models/iris/versions/3").json()["versions"] == ["3"]
    assert call(app, "GET", "/v2/models/iris/versions/4/ready").status_code == 404


def test_v1_named_inputs_and_unknown_routes(models_dir: Path) -> None:
    app = make_app(models_dir)
    r = call(app, "POST", "/v1/models/iris:predict", json={"inputs": {"input-0": [[5.1, 3.5, 1.4, 0.2]]}})
    assert r.json() == {"predictions": [0]}
    r = call(app, "GET", "/v3/whatever")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = call(app, "GET", "/v2/models/iris/infer")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}


def test_server_metadata_and_metrics_exposition(models_dir: Path) -> None:
    app = make_app(models_dir, server_name="unit")
    meta = call(app, "GET", "/v2").json()
    assert meta["name"] == "unit" and meta["extensions"] == ["binary_tensor_data"]
    call(app, "POST", "/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]})
    text = call(app, "GET", "/metrics").text
    assert 'infertap_requests_total{code="200",component="predictor",endpoint="v1_predict"' in text
    assert "infertap_request_duration_seconds_bucket" in text


def test_duplicate_model_names_are_refused(models_dir: Path) -> None:
    m = ModelSettings(name="a", format="sklearn", uri=str(models_dir / "sklearn-iris"))
    with pytest.raises(ValueError, match="repeated: a"):
        create_app(ServerSettings(models=[m, m]))


def test_lifespan_loads_models(models_dir: Path) -> None:
    """Under a real ASGI server the lifespan loads what is not loaded yet (no run() needed)."""
    app = make_app(models_dir, load=False)

    async def go():
        async with app.router.lifespan_context(app):
            return app.state.repository.ready

    assert asyncio.run(go()) is True
