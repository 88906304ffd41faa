"""The sidecar's pooled keep-alive connections to the model server, against keep-alive races
made deterministic by tests/sidecar/keepalive_upstream.py.

A model server (uvicorn: `timeout_keep_alive` 5 s) closes idle connections; a request
written to one as it closes gets a reset and no answer. The sidecar must never turn that
into a 502: it drops pooled connections before the server's timeout
(`upstream_keepalive_s`), and retries once, on a fresh connection, a request whose reused
connection broke before any byte of the answer came back.
"""

from __future__ import annotations

import sys
import time

import httpx
import pytest
from tap_fixtures import HERE, free_port, serve_app  # noqa: F401

from infertap.sidecar.proxy import ReverseProxy
from infertap.sidecar.settings import LoggerSettings


def start_keepalive_upstream(spawn, idle: float = 60.0) -> int:
    port = free_port()
    child = spawn(
        [sys.executable, str(HERE / "keepalive_upstream.py"), "--port", str(port), "--idle", str(idle)],
        name="keepalive-upstream",
    )
    child.wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
    return port


def proxy_in_front(serve_app, port: int, **settings) -> tuple[str, ReverseProxy]:
    app = ReverseProxy(LoggerSettings(component_port=port, **settings))
    return serve_app(app).url, app


def post(client: httpx.Client, url: str, path: str) -> httpx.Response:
    return client.post(
        f"{url}{path}", content=b'{"instances": [[1, 2, 3, 4]]}', headers={"content-type": "application/json"}
    )


def test_connection_idle_past_keepalive_expiry_is_not_reused(spawn, serve_app):
    # the upstream keeps idle connections 30 s; the sidecar must still drop its own after 0.3 s
    port = start_keepalive_upstream(spawn)
    url, _ = proxy_in_front(serve_app, port, upstream_keepalive_s=0.3)
    with httpx.Client(timeout=10) as client:
        first = post(client, url, "/a").json()
        again = post(client, url, "/b").json()
        assert again["conn"] == first["conn"], "a connection used just now is reused"
        time.sleep(0.6)
        later = post(client, url, "/c").json()
    assert later["conn"] != first["conn"], "a connection idle past upstream_keepalive_s was reused"


def test_keepalive_expiry_defaults_below_uvicorns_timeout():
    assert 0 < LoggerSettings().upstream_keepalive_s < 5.0


def test_reused_connection_reset_as_request_arrives_is_retried_once_on_a_fresh_one(spawn, serve_app):
    port = start_keepalive_upstream(spawn)
    url, app = proxy_in_front(serve_app, port)
    with httpx.Client(timeout=10) as client:
        armed = post(client, url, "/close-next")
        assert armed.status_code == 200
        r = post(client, url, "/v1/models/iris:predict")  # reaches the armed connection: reset, no answer
        assert r.status_code == 200, r.text
        assert r.json()["conn"] != armed.json()["conn"]
        stats = client.get(f"http://127.0.0.1:{port}/stats").json()
    assert stats["conns"][str(armed.json()["conn"])] == 2, "the reset connection received the request"
    assert stats["paths"]["/v1/models/iris:predict"] == 2, "once there, once on the fresh connection"
    assert app.pool.retries == 1


def test_response_broken_after_first_bytes_is_502_not_retried(spawn, serve_app):
    # the request may have been processed: resending it could run an inference twice
    port = start_keepalive_upstream(spawn)
    url, app = proxy_in_front(serve_app, port)
    with httpx.Client(timeout=10) as client:
        armed = post(client, url, "/partial-next").json()
        r = post(client, url, "/v1/models/iris:predict")
        stats = client.get(f"http://127.0.0.1:{port}/stats").json()
    assert r.status_code == 502 and "error" in r.json()
    assert app.pool.retries == 0
    assert stats["conns"][str(armed["conn"])] == 2
    assert stats["paths"]["/v1/models/iris:predict"] == 1, "the broken request was not sent a second time"


@pytest.mark.parametrize("rounds", [30])
def test_concurrent_requests_across_upstream_idle_closes_never_fail(spawn, serve_app, rounds):
    # the upstream closes idle connections after 0.2 s and the sidecar would keep them 4 s:
    # bursts separated by gaps around 0.2 s hit the close again and again; none may fail
    port = start_keepalive_upstream(spawn, idle=0.2)
    url, app = proxy_in_front(serve_app, port)
    failed = []
    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=8)) as client:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            for i in range(rounds):
                for r in pool.map(lambda _: post(client, url, "/v1/models/iris:predict"), range(8)):
                    if r.status_code != 200:
                        failed.append(r.text)
                time.sleep(0.17 + 0.06 * (i % 7) / 6)
    assert failed == []
