"""POST / on the sidecar: CloudEvents from a real KServe agent, binary and structured."""

from __future__ import annotations

import json
import os

import httpx
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from infertap.logger.events import REQUEST_TYPE
from tests.sidecar.tap_fixtures import serve_app, sidecar, upstream  # noqa: F401

# What KServe's agent (sdk-go, binary mode) sends to its logger.url
KSERVE_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "5f1e-kserve",
    "ce-type": REQUEST_TYPE,
    "ce-source": "http://localhost:9081/",
    "ce-time": "2026-08-21T10:00:00.123456Z",
    "ce-inferenceservicename": "sklearn-iris",
    "ce-namespace": "default",
    "ce-component": "predictor",
    "ce-endpoint": "",
    "ce-metadata": "%7B%22X-Request-Id%22:%5B%22r1%22%5D%7D",
    "content-type": "application/json",
}


def test_binary_cloudevent_accepted_unchanged(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    body = b'{"instances": [[6.8,  2.8, 4.8, 1.4]]}'  # odd spacing must survive
    r = httpx.post(f"{url}/", content=body, headers=KSERVE_HEADERS)
    assert r.status_code == 202 and r.json() == {"id": "5f1e-kserve"}
    (event,) = d.wait(1)
    assert event.get_data() == body
    assert event.get_type() == REQUEST_TYPE and event.get_id() == "5f1e-kserve"
    assert event.get_extension("inferenceservicename") == "sklearn-iris"
    assert json.loads(event.get_extension("metadata")) == {"X-Request-Id": ["r1"]}
    assert event.get_time().isoformat().startswith("2026-08-21T10:00:00.123456")
    assert event.get_datacontenttype() == "application/json"


def test_binary_cloudevent_with_binary_body(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    body = os.urandom(2048)
    r = httpx.post(f"{url}/", content=body, headers={**KSERVE_HEADERS, "content-type": "application/octet-stream"})
    assert r.status_code == 202
    assert d.wait(1)[0].get_data() == body


def test_structured_cloudevent_accepted(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    raw = os.urandom(100)
    event = CloudEvent({"type": REQUEST_TYPE, "source": "/kserve", "id": "s-1", "component": "predictor"}, raw)
    msg = ce_http.to_structured(event, JSONFormat())
    assert "data_base64" in json.loads(msg.body)
    assert httpx.post(f"{url}/", content=msg.body, headers=msg.headers).status_code == 202
    doc = {
        "specversion": "1.0",
        "type": REQUEST_TYPE,
        "source": "/kserve",
        "id": "s-2",
        "datacontenttype": "application/json",
        "data": {"instances": [[1, 2]]},
    }
    r = httpx.post(f"{url}/", json=doc, headers={"content-type": "application/cloudevents+json; charset=utf-8"})
    assert r.status_code == 202
    first, second = d.wait(2)
    assert first.get_id() == "s-1" and first.get_data() == raw and first.get_extension("component") == "predictor"
    assert second.get_id() == "s-2" and json.loads(second.get_data()) == {"instances": [[1, 2]]}


def test_malformed_cloudevents_get_400_with_reason(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    no_type = {k: v for k, v in KSERVE_HEADERS.items() if k != "ce-type"}
    r = httpx.post(f"{url}/", content=b"{}", headers=no_type)
    assert r.status_code == 400 and "ce-type" in r.json()["error"]
    r = httpx.post(f"{url}/", content=b"{}", headers={**KSERVE_HEADERS, "ce-time": "yesterday"})
    assert r.status_code == 400 and "invalid" in r.json()["error"]
    r = httpx.post(f"{url}/", content=b"{not json", headers={"content-type": "application/cloudevents+json"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    r = httpx.post(
        f"{url}/",
        json={"specversion": "0.9", "type": "t", "source": "s", "id": "1"},
        headers={"content-type": "application/cloudevents+json"},
    )
    assert r.status_code == 400 and "specversion" in r.json()["error"]
    assert d.events == []


def test_plain_post_root_is_proxied(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    r = httpx.post(f"{url}/", json={"hello": 1})
    assert r.status_code == 200 and r.headers["x-upstream"] == "model"
    assert [e.get_type() for e in d.wait(2)] == [REQUEST_TYPE, REQUEST_TYPE.replace("request", "response")]


def test_ingest_without_sink_is_503(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream, delivery=False)
    r = httpx.post(f"{url}/", content=b"{}", headers=KSERVE_HEADERS)
    assert r.status_code == 503 and "sink" in r.json()["error"]
