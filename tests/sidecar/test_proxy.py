"""The sidecar's reverse proxy against a real upstream process, events caught in-process."""

from __future__ import annotations

import json
import os
import time
import uuid

import httpx
import pytest
from tap_fixtures import free_port, serve_app, sidecar, start_upstream, upstream  # noqa: F401

from infertap.logger.events import REQUEST_TYPE, RESPONSE_TYPE, decode_metadata


def test_events_carry_kserve_attributes_and_share_ce_id(serve_app, upstream):
    url, d = sidecar(serve_app, upstream, metadata_annotations={"team": "ml"})
    body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
    r = httpx.post(
        f"{url}/v1/models/iris:predict", content=body, headers={"content-type": "application/json", "ce-id": "req-42"}
    )
    assert r.status_code == 200 and r.content == body
    req, resp = d.wait(2)
    assert (req.get_type(), resp.get_type()) == (REQUEST_TYPE, RESPONSE_TYPE)
    assert req.get_id() == resp.get_id() == "req-42"
    assert req.get_data() == body and resp.get_data() == body
    assert resp.get_extension("statuscode") == 200
    for e in (req, resp):
        assert e.get_source() == "http://pod-1/"
        assert e.get_datacontenttype() == "application/json"
        assert e.get_extension("inferenceservicename") == "iris"
        assert e.get_extension("namespace") == "ns"
        assert e.get_extension("component") == "predictor"
        assert json.loads(e.get_extension("annotations")) == {"team": "ml"}
    assert resp.get_time() >= req.get_time()


def test_new_uuid_shared_by_request_and_response(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    for _ in range(2):
        httpx.post(f"{url}/v2/models/iris/infer", json={"inputs": []})
    events = d.wait(4)
    ids = [e.get_id() for e in events]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    uuid.UUID(ids[0])


@pytest.mark.parametrize(
    "mode,types", [("request", [REQUEST_TYPE]), ("response", [RESPONSE_TYPE]), ("all", [REQUEST_TYPE, RESPONSE_TYPE])]
)
def test_modes(serve_app, upstream, mode, types):
    url, d = sidecar(serve_app, upstream, log_mode=mode)
    for _ in range(2):
        assert httpx.post(f"{url}/v1/models/iris:predict", json={"instances": [[1]]}).status_code == 200
    d.wait(2 * len(types))
    httpx.get(f"{url}/infertap/metrics")  # a later request: any straggler event would be in by now
    assert sorted(e.get_type() for e in d.events) == sorted(types * 2)


def test_header_allow_list_case_insensitive_and_authorization_never_logged(serve_app, upstream):
    url, d = sidecar(serve_app, upstream, metadata_headers=["X-REQUEST-ID", "x-b3-traceid"])
    httpx.post(
        f"{url}/v1/models/iris:predict",
        json={"instances": [[1]]},
        headers={
            "x-request-id": "r-1",
            "X-B3-TRACEID": "t-1",
            "authorization": "Bearer s3cret",
            "cookie": "session=abc",
        },
    )
    for event in d.wait(2):
        assert decode_metadata(event.get_extension("metadata")) == {"X-Request-Id": ["r-1"], "X-B3-Traceid": ["t-1"]}
        dumped = json.dumps({k: str(v) for k, v in event.get_attributes().items()})
        assert "s3cret" not in dumped and "session=abc" not in dumped


def test_authorization_logged_only_when_allow_listed(serve_app, upstream):
    url, d = sidecar(serve_app, upstream, metadata_headers=["authorization"])
    httpx.post(f"{url}/v1/models/iris:predict", json={}, headers={"Authorization": "Bearer s3cret"})
    assert decode_metadata(d.wait(1)[0].get_extension("metadata")) == {"Authorization": ["Bearer s3cret"]}


@pytest.mark.parametrize("sse", [False, True])
def test_streaming_chunks_reach_client_before_upstream_finishes(serve_app, upstream, sse):
    url, d = sidecar(serve_app, upstream)
    token = uuid.uuid4().hex
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", f"{url}/stream/{token}", params={"n": 3, "sse": int(sse)}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream" if sse else "text/plain")
            chunks = r.iter_raw()
            first = next(chunks)
            # the upstream is still blocked after its first chunk: the proxy did not buffer
            assert client.get(f"{upstream}/state/{token}").json()["state"] == "waiting"
            assert b"chunk-0" in first
            assert not d.of_type("response"), "response event must wait for the end of the stream"
            client.post(f"{upstream}/release/{token}")
            rest = b"".join(chunks)
        assert client.get(f"{upstream}/state/{token}").json()["state"] == "finished"
    whole = first + rest
    assert b"chunk-2" in whole
    resp = [e for e in d.wait(2) if e.get_type() == RESPONSE_TYPE][0]
    assert resp.get_data() == whole


def test_streamed_body_over_cap_is_truncated_in_event_not_for_client(serve_app, upstream):
    url, d = sidecar(serve_app, upstream, max_event_body_bytes=100)
    body = os.urandom(1000)
    r = httpx.post(f"{url}/v2/models/m/infer", content=body, headers={"content-type": "application/octet-stream"})
    assert r.content == body
    resp = d.wait(2)[1]
    assert resp.get_data() == body[:100] and resp.get_extension("bodytruncated") == "true"


def test_binary_v2_payload_byte_exact(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    payload = b'{"inputs":[{"name":"x","shape":[4],"datatype":"BYTES","parameters":{"binary_data_size":64}}]}'
    body = payload + os.urandom(64 * 1024) + b"\x00\xff"
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(payload))}
    r = httpx.post(f"{url}/v2/models/m/infer", content=body, headers=headers)
    assert r.status_code == 200 and r.content == body
    req, resp = d.wait(2)
    assert req.get_data() == body and resp.get_data() == body
    assert req.get_datacontenttype() == "application/octet-stream"


@pytest.mark.parametrize("code", [400, 404, 503])
def test_non_200_responses_logged_with_statuscode(serve_app, upstream, code):
    url, d = sidecar(serve_app, upstream)
    r = httpx.post(f"{url}/status/{code}", json={"x": 1})
    assert r.status_code == code
    resp = d.wait(2)[1]
    assert resp.get_type() == RESPONSE_TYPE and resp.get_extension("statuscode") == code
    assert json.loads(resp.get_data()) == {"error": f"status {code}"}


def test_skip_logging_header_honoured_and_forwarded(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    r = httpx.post(f"{url}/headers", json={}, headers={"infertap-skip-logging": "true"})
    forwarded = dict(r.json()["headers"])
    assert forwarded["infertap-skip-logging"] == "true"
    httpx.post(f"{url}/headers", json={}, headers={"infertap-skip-logging": "false"})
    events = d.wait(2)
    assert len(events) == 2 and all(e.get_data() == b"{}" for e in events[:1])


def test_probes_not_logged(serve_app, upstream):
    url, d = sidecar(serve_app, upstream)
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert (
        httpx.post(f"{url}/v1/models/iris:predict", json={}, headers={"user-agent": "kube-probe/1.29"}).status_code
        == 200
    )
    httpx.post(f"{url}/v1/models/iris:predict", json={"marker": 1})
    events = d.wait(2)
    assert len(events) == 2 and events[0].get_data() == b'{"marker":1}'


def test_paths_query_and_upstream_metrics_forwarded_unchanged(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream)
    r = httpx.post(f"{url}/openai/v1/chat/completions%2Fx?a=1&b=%20c", json={})
    seen = json.loads(r.headers["x-seen"])
    del seen["peer_port"]
    assert seen == {"method": "POST", "path": "/openai/v1/chat/completions%2Fx", "query": "a=1&b=%20c"}
    assert httpx.get(f"{url}/metrics").text == "upstream_requests_total 1\n"
    own = httpx.get(f"{url}/infertap/metrics").text
    assert 'infertap_proxy_requests_total{code="200",component="predictor",endpoint="openai"' in own


def test_hop_by_hop_headers_not_forwarded(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream)
    r = httpx.get(
        f"{url}/headers",
        headers={"connection": "keep-alive, x-private", "x-private": "1", "proxy-authorization": "p", "x-kept": "yes"},
    )
    names = {k for k, _ in r.json()["headers"]}
    assert "x-kept" in names and "x-forwarded-for" in names
    assert not names & {"x-private", "proxy-authorization"}


def test_explain_routed_to_explainer_when_set(serve_app, spawn, upstream):
    explainer = start_upstream(spawn, "explainer")
    url, d = sidecar(serve_app, upstream, explainer_url=explainer)
    assert httpx.post(f"{url}/v1/models/iris:explain", json={}).headers["x-upstream"] == "explainer"
    # V2 explain: the explainer's V2 model name, `{name}-explainer` (issue 14)
    assert httpx.post(f"{url}/v2/models/iris-explainer/infer", json={}).headers["x-upstream"] == "explainer"
    assert httpx.post(f"{url}/v1/models/iris:predict", json={}).headers["x-upstream"] == "model"
    # only the predict is logged: routed explain calls are not inference traffic
    events = d.wait(2)
    time.sleep(0.3)
    assert len(d.events) == 2 and {e.get_extension("statuscode") for e in d.of_type("response")} == {200}
    assert all(e.get_type().endswith(("request", "response")) for e in events)
    plain, _ = sidecar(serve_app, upstream)
    assert httpx.post(f"{plain}/v1/models/iris:explain", json={}).headers["x-upstream"] == "model"
    assert httpx.post(f"{plain}/v2/models/iris-explainer/infer", json={}).headers["x-upstream"] == "model"


def test_upstream_down_gives_502_and_sidecar_lives(serve_app):
    url, d = sidecar(serve_app, f"http://127.0.0.1:{free_port()}")
    r = httpx.post(f"{url}/v1/models/iris:predict", json={})
    assert r.status_code == 502 and "error" in r.json()
    assert httpx.post(f"{url}/v1/models/iris:predict", json={}).status_code == 502
    assert httpx.get(f"{url}/infertap/metrics").status_code == 200
    assert d.wait(2)[1].get_extension("statuscode") == 502


def test_upstream_timeout_gives_504(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream, upstream_timeout_s=0.5)
    r = httpx.get(f"{url}/slow", params={"s": 2}, timeout=30)
    assert r.status_code == 504 and "timed out" in r.json()["error"]


def _count_413(url: str) -> float:
    """infertap_proxy_requests_total for code 413 on iris's v1 predict (the registry is per process)."""
    metrics = httpx.get(f"{url}/infertap/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("infertap_proxy_requests_total{")
        and 'code="413"' in line
        and 'endpoint="v1_predict"' in line
        and 'model="iris"' in line
    )


def test_body_over_limit_gives_413(serve_app, upstream):
    url, d = sidecar(serve_app, upstream, max_request_bytes=1000)
    before = _count_413(url)
    # served first: a model name gets its own label once the model server answered for it (else `_unknown`)
    assert httpx.post(f"{url}/v1/models/iris:predict", content=b"x" * 1000).status_code == 200
    r = httpx.post(f"{url}/v1/models/iris:predict", content=b"x" * 2000)
    assert r.status_code == 413 and "error" in r.json()
    assert len(d.wait(2)) == 2  # the 413 is not an inference: not logged, but counted
    assert _count_413(url) == before + 1


def test_upstream_connections_are_kept_alive_and_reused(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream)
    with httpx.Client() as client:
        ports = {
            json.loads(client.post(f"{url}/v1/models/iris:predict", json={}).headers["x-seen"])["peer_port"]
            for _ in range(10)
        }
        assert len(ports) == 1
        assert client.head(f"{url}/v1/models/iris:predict").status_code in (200, 405)
