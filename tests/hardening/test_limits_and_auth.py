"""Payload limits (413 with a message) on every server, and bearer-token auth (401) where it
is offered: real processes on 127.0.0.1 (issue 7)."""

from __future__ import annotations

import sys
import time
import uuid

import httpx
import numpy as np
import orjson
import pytest
from cloudevents.core.bindings import http as ce_http

from tests.conftest import free_port
from tests.detectors.records import BUILDER

TOKEN = "s3cret-" + uuid.uuid4().hex
BIG = b'{"instances": [[' + b"1.0," * 600 + b"1.0]]}"  # ~2.4 kB, over the 1,000-byte limits below


def assert_error(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    assert isinstance(r.json()["error"], str) and r.json()["error"]


@pytest.fixture
def model_server(spawn, models_dir):
    """A model server with a 1,000-byte request limit; yields its base URL."""
    port = free_port()
    child = spawn(
        [
            sys.executable,
            "-m",
            "infertap.serving",
            "--model-name",
            "sklearn-iris",
            "--model-format",
            "sklearn",
            "--storage-uri",
            str(models_dir / "sklearn-iris"),
            "--http-port",
            str(port),
            "--max-request-bytes",
            "1000",
        ],
        name="serving",
    )
    child.wait_http(f"http://127.0.0.1:{port}/v2/health/ready", timeout=120)
    return f"http://127.0.0.1:{port}"


def test_model_server_refuses_bodies_over_its_limit(model_server) -> None:
    url = f"{model_server}/v1/models/sklearn-iris:predict"
    assert httpx.post(url, content=b'{"instances": [[1, 2, 3, 4]]}').status_code == 200
    assert_error(httpx.post(url, content=BIG), 413)
    # chunked, no Content-Length: counted while read
    assert_error(httpx.post(url, content=iter([BIG[:1000], BIG[1000:]])), 413)
    assert "1000" in httpx.post(f"{model_server}/v2/models/sklearn-iris/infer", content=BIG).json()["error"]


def test_logger_sidecar_and_its_ingest_refuse_bodies_over_the_limit(spawn, model_server, tmp_path) -> None:
    port = free_port()
    child = spawn(
        [
            sys.executable,
            "-m",
            "infertap.sidecar",
            "--port",
            str(port),
            "--component-port",
            model_server.rsplit(":", 1)[1],
            "--log-url",
            f"file://{tmp_path / 'events.jsonl'}",
            "--max-request-bytes",
            "1200",
            "--spool-dir",
            str(tmp_path / "spool"),
        ],
        name="sidecar",
    )
    base = f"http://127.0.0.1:{port}"
    child.wait_http(f"{base}/infertap/metrics")
    assert (
        httpx.post(f"{base}/v1/models/sklearn-iris:predict", content=b'{"instances": [[1, 2, 3, 4]]}').status_code
        == 200
    )
    assert_error(httpx.post(f"{base}/v1/models/sklearn-iris:predict", content=BIG), 413)
    event = BUILDER.request(str(uuid.uuid4()), BIG, "application/json", "{}")
    message = ce_http.to_binary_event(event)
    assert_error(httpx.post(f"{base}/", headers=dict(message.headers), content=message.body), 413)  # ingest
    small = ce_http.to_binary_event(
        BUILDER.request(str(uuid.uuid4()), b'{"instances": [[1, 2, 3, 4]]}', "application/json", "{}")
    )
    assert httpx.post(f"{base}/", headers=dict(small.headers), content=small.body).status_code == 202
    assert child.proc.poll() is None


def _ingest(base: str, token: str | None = None, structured: bool = False) -> tuple[httpx.Response, str]:
    """POST one CloudEvent to the logger's ingest; returns the answer and the event's id."""
    event = BUILDER.request(str(uuid.uuid4()), b'{"instances": [[1, 2, 3, 4]]}', "application/json", "{}")
    message = (ce_http.to_structured_event if structured else ce_http.to_binary_event)(event)
    headers = dict(message.headers) | ({"authorization": f"Bearer {token}"} if token else {})
    return httpx.post(f"{base}/", headers=headers, content=message.body), event.get_id()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_logger_ingest_bearer_token(how, spawn, model_server, tmp_path) -> None:
    """Only the CloudEvents ingest is guarded: refused events never reach the sink; inference passes."""
    port, sink = free_port(), tmp_path / "events.jsonl"
    args = [
        "--port",
        str(port),
        "--component-port",
        model_server.rsplit(":", 1)[1],
        "--log-url",
        f"file://{sink}",
        "--spool-dir",
        str(tmp_path / "spool"),
    ]
    if how == "flag":  # `infertap logger --auth-token`
        child = spawn([sys.executable, "-m", "infertap", "logger", *args, "--auth-token", TOKEN], name="logger")
    else:  # `python -m infertap.sidecar` with $INFERTAP_AUTH_TOKEN
        child = spawn(
            [sys.executable, "-m", "infertap.sidecar", *args], env={"INFERTAP_AUTH_TOKEN": TOKEN}, name="logger"
        )
    base = f"http://127.0.0.1:{port}"
    child.wait_http(f"{base}/infertap/metrics", timeout=90)
    refused = []
    for token, structured in ((None, False), ("wrong", False), (None, True), (TOKEN[:-1], True)):
        r, event_id = _ingest(base, token, structured)
        assert_error(r, 401)
        assert "bearer" in r.json()["error"].lower() and r.headers["www-authenticate"].startswith("Bearer")
        refused.append(event_id)
    accepted = []
    for structured in (False, True):
        r, event_id = _ingest(base, TOKEN, structured)
        assert r.status_code == 202 and r.json() == {"id": event_id}
        accepted.append(event_id)
    # proxied inference traffic needs no token: the model server's business
    assert (
        httpx.post(f"{base}/v1/models/sklearn-iris:predict", content=b'{"instances": [[1, 2, 3, 4]]}').status_code
        == 200
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(i in _read(sink) for i in accepted):
        time.sleep(0.2)
    logged = _read(sink)
    assert all(i in logged for i in accepted), logged[-2000:]
    assert not any(i in logged for i in refused)
    assert child.proc.poll() is None


def _read(path) -> str:
    return path.read_text() if path.exists() else ""


def test_explainer_limit_and_bearer_token(spawn, models_dir) -> None:
    predictor_port, port = free_port(), free_port()
    model = spawn(
        [
            sys.executable,
            "-m",
            "infertap.serving",
            "--model-name",
            "sklearn-iris",
            "--model-format",
            "sklearn",
            "--storage-uri",
            str(models_dir / "sklearn-iris"),
            "--http-port",
            str(predictor_port),
        ],
        name="serving",
    )
    model.wait_http(f"http://127.0.0.1:{predictor_port}/v2/health/ready", timeout=120)
    child = spawn(
        [
            sys.executable,
            "-m",
            "infertap.explainers",
            "--name",
            "sklearn-iris",
            "--explainer-type",
            "KernelShap",
            "--predictor-url",
            f"http://127.0.0.1:{predictor_port}",
            "--protocol",
            "v1",
            "--background",
            str(models_dir / "sklearn-iris" / "reference.npy"),
            "--background-size",
            "10",
            "--http-port",
            str(port),
            "--max-request-bytes",
            "1000",
            "--auth-token",
            TOKEN,
        ],
        name="explainer",
    )
    base = f"http://127.0.0.1:{port}"
    child.wait_http(f"{base}/v2/health/ready", timeout=180)  # probes need no token
    url = f"{base}/v1/models/sklearn-iris:explain"
    body = orjson.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]], "parameters": {"nsamples": 50}})
    assert_error(httpx.post(url, content=body), 401)
    assert_error(httpx.post(url, content=body, headers={"authorization": "Bearer wrong"}), 401)
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert_error(httpx.post(url, content=BIG, headers=auth), 413)
    r = httpx.post(url, content=body, headers=auth, timeout=120)
    assert r.status_code == 200, r.text
    assert httpx.get(f"{base}/metrics").status_code == 200


def test_detector_ingress_limit_and_bearer_token(tmp_path, detector_yaml, start_detector, spawn) -> None:
    reference = tmp_path / "ref.npy"
    np.save(reference, np.random.default_rng(0).normal(size=(100, 4)))
    path = detector_yaml(
        "guarded",
        {
            "source": {"transport": "http"},
            "features": [{"name": n} for n in "abcd"],
            "detector": {"name": "ScipyKS", "reference": str(reference)},
            "window": {"size": 5},
        },
    )
    port = free_port()
    child = spawn(
        [sys.executable, "-m", "infertap", "detect", str(path), "--metrics-port", str(port)],
        env={"INFERTAP_AUTH_TOKEN": TOKEN},
        name="detector",
    )
    base = f"http://127.0.0.1:{port}"
    child.wait_http(f"{base}/metrics", timeout=90)
    message = ce_http.to_binary_event(
        BUILDER.request(str(uuid.uuid4()), b'{"instances": [[1, 2, 3, 4]]}', "application/json", "{}")
    )
    assert_error(httpx.post(f"{base}/", headers=dict(message.headers), content=message.body), 401)
    auth = {**dict(message.headers), "authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{base}/", headers=auth, content=message.body).status_code == 202
    huge = b'{"instances": [[' + b"1.0," * (5 << 20) + b"1.0]]}"  # 20 MiB, over the 16 MiB default
    assert_error(httpx.post(f"{base}/", headers=auth, content=huge, timeout=60), 413)
    assert child.proc.poll() is None
