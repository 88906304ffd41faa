"""Issue 19, finding 2: client-chosen model names must not grow the sidecar's metrics, and a
scrape must never hold up the traffic on the proxy's event loop."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import httpx
from prometheus_client import generate_latest
from prometheus_client.registry import Collector
from tap_fixtures import serve_app, sidecar, upstream  # noqa: F401

from infertap.logger.metrics import REGISTRY
from infertap.sidecar.tap import UNKNOWN_MODEL, ModelNames, ProxyMetrics, route_of

NAMES = 10_000


def series_of(text: str, isvc: str) -> list[str]:
    """The sample lines of one inference service in an exposition text."""
    mark = f'inference_service="{isvc}"'
    return [line for line in text.splitlines() if not line.startswith("#") and mark in line]


def test_unknown_names_share_one_label_and_served_names_are_capped():
    isvc = f"bounds-{uuid.uuid4().hex[:8]}"
    metrics = ProxyMetrics(isvc, "predictor")
    metrics.observe("/v1/models/iris:predict", 200, 0.001)  # served: a label of its own
    for i in range(NAMES):
        metrics.observe(f"/v1/models/x{i}:predict", 404, 0.001)  # the model server knows no such model
    for i in range(NAMES):
        metrics.observe(f"/v2/models/y{i}/infer", 200, 0.001)  # a server answering 200 to any name: the cap
    series = series_of(generate_latest(REGISTRY).decode(), isvc)
    models = {line.split('model="', 1)[1].split('"', 1)[0] for line in series}
    assert {"iris", UNKNOWN_MODEL} <= models
    assert len(models) <= ModelNames.CAP + 1
    assert len(series) < 2000, len(series)  # was one histogram per name: ~20 series each


def test_a_name_first_seen_failing_is_relabelled_once_served():
    isvc = f"bounds-{uuid.uuid4().hex[:8]}"
    metrics = ProxyMetrics(isvc, "predictor")
    metrics.observe("/v1/models/late:predict", 503, 0.001)  # cached as unknown
    metrics.observe("/v1/models/late:predict", 200, 0.001)  # learned
    metrics.observe("/v1/models/late:predict", 503, 0.001)  # no longer the cached unknown child
    text = generate_latest(REGISTRY).decode()
    line = f'infertap_proxy_requests_total{{code="503",component="predictor",endpoint="v1_predict",inference_service="{isvc}",model="late"}} 1.0'
    assert line in text


def test_client_chosen_verbs_do_not_make_endpoints():
    assert route_of("/v1/models/m:predict") == ("m", "v1_predict")
    assert route_of("/v1/models/m:anything123") == ("m", "v1_other")
    assert route_of("/v2/models/m/versions/3/infer") == ("m", "v2_infer")
    assert route_of("/v2/models/m/whatever") == ("m", "v2_other")


def test_ten_thousand_names_through_the_proxy_keep_the_scrape_small(serve_app, upstream):
    isvc = f"bounds-{uuid.uuid4().hex[:8]}"
    url, _ = sidecar(serve_app, upstream, inference_service=isvc)

    port = int(url.rsplit(":", 1)[1])
    threads = [threading.Thread(target=pipelined, args=(port, range(k, NAMES, 4))) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    time.sleep(0.1)  # the tap counts a request when the proxy is next idle (at most 5 ms later)
    r = httpx.get(f"{url}/infertap/metrics")
    series = series_of(r.text, isvc)
    total = sum(float(line.rsplit(" ", 1)[1]) for line in series if line.startswith("infertap_proxy_requests_total"))
    assert total == NAMES
    assert len(series) < 2000, len(series)
    assert len(r.content) < 1024 * 1024


def pipelined(port: int, names: range) -> None:
    """POST `/v1/models/x{i}:predict` for every i in `names` on one keep-alive connection,
    pipelined (a flood as an attacker would send it, and far quicker than one at a time)."""
    requests = b"".join(
        b"POST /v1/models/x%d:predict HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\n{}" % i for i in names
    )
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sender = threading.Thread(target=sock.sendall, args=(requests,))
        sender.start()
        seen, tail = 0, b""
        while seen < len(names):
            chunk = sock.recv(1 << 16)
            assert chunk, f"connection closed after {seen} responses"
            data = tail + chunk
            seen += data.count(b"HTTP/1.1 200 ")
            tail = data[-12:]
            seen -= tail.count(b"HTTP/1.1 200 ")  # counted again with the next chunk
        sender.join(60)


class _SlowCollector(Collector):
    """A registry part that takes `seconds` to collect (sleeping: it leaves the GIL to others)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def collect(self):
        time.sleep(self.seconds)
        return []


def test_a_slow_scrape_does_not_hold_up_a_predict(serve_app, upstream):
    url, _ = sidecar(serve_app, upstream)
    httpx.post(f"{url}/v1/models/iris:predict", content=b"{}")  # connections warm
    slow = _SlowCollector(2.0)
    REGISTRY.register(slow)
    try:
        scrape: dict[str, float] = {}

        def scrape_once() -> None:
            started = time.perf_counter()
            assert httpx.get(f"{url}/infertap/metrics", timeout=30).status_code == 200
            scrape["s"] = time.perf_counter() - started

        scraper = threading.Thread(target=scrape_once)
        scraper.start()
        time.sleep(0.3)  # the rendering is under way
        started = time.perf_counter()
        assert httpx.post(f"{url}/v1/models/iris:predict", content=b"{}", timeout=30).status_code == 200
        predict_s = time.perf_counter() - started
        scraper.join(30)
    finally:
        REGISTRY.unregister(slow)
    assert scrape["s"] >= 1.9  # the rendering did take its 2 s...
    assert predict_s < 1.0, predict_s  # ...and the predict meanwhile did not wait for it
