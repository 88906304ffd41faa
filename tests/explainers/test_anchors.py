"""alibi anchors (extra `alibi`, BSL 1.1) over the served models: alibi's Explanation JSON per instance."""

from __future__ import annotations

import httpx
import numpy as np
from fastapi import FastAPI, Request
from starlette.responses import Response

from tests.explainers.conftest import IRIS_FEATURES, ThreadServer, explain


def test_anchor_tabular_explains_every_instance_with_alibi_json(predictor, serve_explainer, reference, models_dir):
    url = serve_explainer(
        name="sklearn-iris",
        explainer_type="AnchorTabular",
        predictor_url=predictor,
        background=str(models_dir / "sklearn-iris" / "reference.npy"),
        feature_names=IRIS_FEATURES,
        params={"threshold": 0.9},
    )
    X = reference("sklearn-iris")[[0, 120]]
    r = explain(url, "sklearn-iris", X, timeout=300)
    assert r.status_code == 200, r.text
    explanations = r.json()["explanations"]
    assert len(explanations) == 2
    for e in explanations:
        assert set(e["raw"]) == {"meta", "data"} and e["raw"]["meta"]["name"] == "AnchorTabular"
        assert e["raw"]["data"]["precision"] >= 0.9 and e["values"] is None
        assert all(any(f in clause for f in IRIS_FEATURES) for clause in e["raw"]["data"]["anchor"])
    assert [e["prediction"] for e in explanations] == [0.0, 2.0]  # setosa, virginica
    text = httpx.get(f"{url}/metrics").text
    assert "infertap_explainer_predictor_requests_total" in text


def test_anchor_images_on_the_digits_cnn(predictor, serve_explainer, reference, models_dir):
    url = serve_explainer(
        name="torch-digits",
        explainer_type="AnchorImages",
        predictor_url=predictor,
        background=str(models_dir / "torch-digits" / "reference.npy"),
        params={"image_shape": [8, 8, 1], "segmentation_fn": "grid", "grid_size": 2},
    )
    r = explain(url, "torch-digits", reference("torch-digits")[:1], timeout=300)
    assert r.status_code == 200, r.text
    (e,) = r.json()["explanations"]
    assert e["shape"] == [8, 8, 1] and np.asarray(e["raw"]["data"]["segments"]).shape == (8, 8)
    assert e["raw"]["meta"]["name"] == "AnchorImage"
    r = explain(url, "torch-digits", np.ones((1, 10)))
    assert r.status_code == 400 and "[8, 8, 1]" in r.json()["error"]


def keyword_model():
    """A text classifier as a V2 server (BYTES in, labels out): what a served text model answers."""
    from infertap.serving.codec import InferenceResponse, ResponseOutput, decode_v2_request, encode_v2_response

    app = FastAPI()

    @app.post("/v2/models/sentiment/infer")
    async def infer(request: Request) -> Response:
        length = request.headers.get("inference-header-content-length")
        decoded = decode_v2_request(await request.body(), int(length) if length else None)
        texts = [t.decode() for t in decoded.inputs[0].data.reshape(-1)]
        labels = np.array([1 if "good" in t.split() else 0 for t in texts], dtype=np.int64)
        response = InferenceResponse.model_construct(
            model_name="sentiment",
            model_version=None,
            id=None,
            parameters=None,
            outputs=[
                ResponseOutput.model_construct(
                    name="label", shape=[len(labels)], datatype="INT64", parameters=None, data=labels
                )
            ],
        )
        body, headers = encode_v2_response(response, decoded)
        return Response(body, headers=headers)

    return app


def test_anchor_text_with_the_blank_spacy_tokenizer(serve_explainer):
    with ThreadServer(keyword_model()) as model:
        url = serve_explainer(
            name="sentiment",
            explainer_type="AnchorText",
            predictor_url=model.url,
            predict_proba=False,
            params={"threshold": 0.95},
        )
        r = httpx.post(
            f"{url}/v1/models/sentiment:explain",
            timeout=300,
            json={"instances": ["the plot is good and the cast is fun", "a dull and slow film"]},
        )
        assert r.status_code == 200, r.text
        first, second = r.json()["explanations"]
        assert first["raw"]["data"]["anchor"] == ["good"] and first["prediction"] == 1.0
        assert first["feature_names"][:3] == ["the", "plot", "is"]
        assert second["prediction"] == 0.0
        r = httpx.post(f"{url}/v1/models/sentiment:explain", json={"instances": [[1.0, 2.0]]}, timeout=30)
        assert r.status_code == 400 and "explains strings" in r.json()["error"]
