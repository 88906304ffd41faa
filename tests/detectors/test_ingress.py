"""HTTP ingress: binary-mode CloudEvents on POST / (as Seldon's alibi-detect-server), a real server process."""

from __future__ import annotations

import sys
import uuid

import httpx
import numpy as np
import orjson
from cloudevents.core.bindings import http as ce_http

from tests.conftest import free_port
from tests.detectors.conftest import metric
from tests.detectors.records import BUILDER

KS = "tests.detectors.plugin_backends:KSBackend"


def post_event(client: httpx.Client, url: str, row) -> httpx.Response:
    event = BUILDER.request(
        str(uuid.uuid4()), orjson.dumps({"instances": [[float(v) for v in row]]}), "application/json", "{}"
    )
    message = ce_http.to_binary_event(event)
    return client.post(url, headers=dict(message.headers), content=message.body)


def test_ingress_buffers_a_window_then_replies_with_the_detection(tmp_path, detector_yaml, start_detector, spawn):
    reference = tmp_path / "ref.npy"
    np.save(reference, np.random.default_rng(0).normal(size=(300, 2)))
    sink_port = free_port()
    sink = spawn(
        [sys.executable, "-m", "tests.detectors.reply_sink", str(sink_port), str(tmp_path / "replies.jsonl")],
        name="sink",
    )
    sink.wait_http(f"http://127.0.0.1:{sink_port}/health")
    path = detector_yaml(
        "ingress",
        {
            "source": {"transport": "http"},
            "features": [{"name": "x"}, {"name": "y"}],
            "detector": {"name": KS, "reference": str(reference)},
            "window": {"size": 5},
            "outputs": {"replyUrl": f"http://127.0.0.1:{sink_port}/"},
        },
    )
    worker = start_detector(path)
    url = worker.metrics_url.removesuffix("metrics")
    rows = np.random.default_rng(1).normal(size=(5, 2)) + [0, 4]
    with httpx.Client(timeout=30) as client:
        replies = [post_event(client, url, row) for row in rows]
        assert [r.status_code for r in replies] == [202] * 4 + [200]
        assert replies[0].json() == {"buffered": 1, "window": 5}
        detection = ce_http.from_binary_event(ce_http.HTTPMessage(dict(replies[-1].headers), replies[-1].content))
        assert detection.get_type() == "io.infertap.detection.drift"
        data = detection.get_data()
        data = orjson.loads(data) if isinstance(data, (bytes, str)) else data
        assert data["n"] == 5 and [f["name"] for f in data["features"] if f["is_drift"]] == ["y"]
        bad = client.post(url, content=b"{}", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "missing_attributes" in bad.json()["error"]
        wrong = client.post(
            url,
            content=b'{"instances": [[1, 2, 3]]}',
            headers={
                "ce-specversion": "1.0",
                "ce-id": "w",
                "ce-source": "x",
                "ce-type": "org.kubeflow.serving.inference.request",
            },
        )
        assert wrong.status_code == 400 and "wrong_feature_count" in wrong.json()["error"]
    lines = (tmp_path / "replies.jsonl").read_text().splitlines()
    assert len(lines) == 1 and orjson.loads(lines[0])["ce-type"] == "io.infertap.detection.drift"
    labels = {"inference_service": "", "detector": KS}
    assert metric(worker.metrics_url, "infertap_detector_windows_evaluated_total", **labels) == 1
    assert (
        metric(worker.metrics_url, "infertap_detector_dead_lettered_total", reason="wrong_feature_count", **labels) == 1
    )
