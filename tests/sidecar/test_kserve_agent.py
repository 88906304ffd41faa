"""Issue 14, KServe drop-in: the argv KServe's webhook writes starts the sidecar unchanged, its
Knative probes are answered as the agent answers them, and the HTTP events carry the headers
KServe's own tests (`pkg/logger/handler_test.go`) read, checked with a real HTTP receiver.

The argument lists are the expectations of KServe's `pkg/webhook/admission/pod/agent_injector_test.go`
(kserve/kserve aaac4e29), as data.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from tap_fixtures import CollectingDelivery, free_port, serve_app, sidecar, start_upstream, upstream  # noqa: F401

from infertap.flags import FlagError
from infertap.sidecar.__main__ import parse_args
from infertap.sidecar.kserve_agent import QueueProbe, go_duration_s, parse_readiness_probe, translate

# what agent_injector_test.go expects the webhook to write (the component port: 8080 there)
_LOGGER = [
    "--log-url", "http://httpbin.org/", "--source-uri", "deployment", "--log-mode", "all",
    "--inference-service", "sklearn", "--namespace", "default", "--endpoint", "default",
    "--component", "predictor",
]  # fmt: skip
INJECTOR_ARGV = {
    "puller": ["--enable-puller", "--config-dir", "/mnt/configs", "--model-dir", "/mnt/models", "--component-port", "8080"],
    "logger": [*_LOGGER, "--logger-tls-skip-verify", "false", "--component-port", "8080"],
    "metadata_headers": [*_LOGGER, "--metadata-headers", "Foo,Bar", "--logger-tls-skip-verify", "false", "--component-port", "8080"],
    "metadata_annotations": [
        *_LOGGER, "--metadata-annotations", "Foo=Bar,Fizz=Buzz", "--logger-tls-skip-verify", "false",
        "--component-port", "8080",
    ],
    "batcher": ["--enable-batcher", "--max-batchsize", "30", "--max-latency", "100", "--component-port", "8080"],
    "puller_port_80": ["--enable-puller", "--config-dir", "/mnt/configs", "--model-dir", "/mnt/models", "--component-port", "80"],
    "tls": [
        "--log-url", "https://httpbin.org/", "--source-uri", "deployment", "--log-mode", "all",
        "--inference-service", "sklearn", "--namespace", "default", "--endpoint", "default",
        "--component", "predictor", "--logger-ca-cert-file", "ca.crt", "--logger-tls-skip-verify", "true",
        "--component-port", "8080",
    ],
    "storage": [
        *_LOGGER, "--log-store-path", "/logs", "--log-store-format", "json", "--logger-tls-skip-verify", "false",
        "--component-port", "8080",
    ],
}  # fmt: skip
PROBE_ENV = (
    '{"tcpSocket":{"port":8080},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3}'
)


@pytest.mark.parametrize("case", INJECTOR_ARGV)
def test_every_injector_argv_parses(case, capsys):
    settings = parse_args(list(INJECTOR_ARGV[case]))
    warnings = capsys.readouterr().err
    assert settings.component_port == (80 if case == "puller_port_80" else 8080)
    if "--log-url" in INJECTOR_ARGV[case]:
        assert settings.inference_service == "sklearn" and settings.source_uri == "deployment"
        assert settings.endpoint == "default" and settings.component == "predictor"
    if case == "metadata_headers":
        assert settings.metadata_headers == ["Foo", "Bar"]
    if case == "metadata_annotations":
        assert settings.metadata_annotations == {"Foo": "Bar", "Fizz": "Buzz"}
    if case == "tls":
        assert settings.logger_ca_cert_file == "ca.crt" and settings.logger_tls_skip_verify is True
    elif "--logger-tls-skip-verify" in INJECTOR_ARGV[case]:
        assert settings.logger_tls_skip_verify is False  # the webhook's "false" means false (pflag reads true)
    ignored = [a for a in INJECTOR_ARGV[case] if a in ("--enable-puller", "--config-dir", "--model-dir",
               "--enable-batcher", "--max-batchsize", "--max-latency", "--log-store-path", "--log-store-format")]  # fmt: skip
    lines = [line for line in warnings.splitlines() if "accepted and ignored" in line]
    assert [line.split(" flag ")[1].split()[0] for line in lines] == ignored  # one line per flag, naming it


def test_agent_flags_map_onto_the_sidecar():
    settings = parse_args(
        ["--workers", "7", "--log-batch-size", "50", "--log-batch-interval", "250ms", "--log-client-timeout", "2s"]
        + ["--port", "9555", "--source-uri", "", "--log-url", "", "--metadata-annotations", ""]
    )
    assert settings.http_concurrency == 7 and settings.batch_max_events == 50 and settings.batch_linger_ms == 250
    assert settings.http_timeout_s == 2 and settings.log_url == [] and settings.metadata_annotations == {}
    assert settings.source_uri == "http://localhost:9555/"  # as the agent: empty --source-uri is its own address


def test_bools_take_go_and_webhook_spellings():
    for words, want in (
        (["--logger-tls-skip-verify"], True),
        (["--logger-tls-skip-verify", "true"], True),
        (["--logger-tls-skip-verify", "false"], False),
        (["--logger-tls-skip-verify=false"], False),
        (["--logger-tls-skip-verify=TRUE"], True),
        (["--logger_tls_skip_verify", "false"], False),
    ):
        assert parse_args(words).logger_tls_skip_verify is want, words
    with pytest.raises(SystemExit):
        parse_args(["--logger-tls-skip-verify=maybe"])
    # a bare bool before another flag stays a bare bool
    settings = parse_args(["--logger-tls-skip-verify", "--workers", "3"])
    assert settings.logger_tls_skip_verify is True and settings.http_concurrency == 3


def test_go_durations():
    assert go_duration_s("0") == 0 and go_duration_s("1m30s") == 90 and go_duration_s("500ms") == 0.5
    assert go_duration_s("1.5h") == 5400 and go_duration_s("3") == 3
    with pytest.raises(ValueError):
        go_duration_s("ten seconds")
    with pytest.raises(ValueError, match="--log-batch-interval"):
        translate(["--log-batch-interval", "soon"])
    assert isinstance(FlagError("x"), ValueError)


def test_readiness_probe_json_of_the_webhook():
    [check] = parse_readiness_probe(PROBE_ENV, 9999)
    assert (check.kind, check.host, check.port, check.timeout_s) == ("tcp", "127.0.0.1", 8080, 1.0)
    http = '[{"httpGet":{"path":"/v2/health/ready","port":"http","httpHeaders":[{"name":"K-Network-Probe","value":"queue"}]}}]'
    [check] = parse_readiness_probe(http, 8123)
    assert (check.kind, check.port, check.path, check.headers) == (
        "http",
        8123,
        "/v2/health/ready",
        [("K-Network-Probe", "queue")],
    )
    assert parse_readiness_probe("", 1) == [] and parse_readiness_probe('{"exec":{"command":["true"]}}', 1) == []


def test_probe_answers_as_knatives_handlers():
    probe = QueueProbe([])
    assert probe.answer_now(b"queue", []) == (200, b"queue", [])
    assert probe.answer_now(b"probe", [(b"k-network-hash", b"abc")]) == (200, b"", [(b"k-network-hash", b"abc")])
    assert (probe.answer_now(b"probe", []) or (0,))[0] == 400
    assert probe.answer_now(b"activator", []) == (400, b"unexpected probe header value: activator\n", [])
    closed = QueueProbe(parse_readiness_probe(json.dumps({"tcpSocket": {"port": free_port()}}), 1))
    assert closed.answer_now(b"queue", []) is None
    assert asyncio.run(closed.ready()) is False


class _Receiver:
    """A real HTTP receiver of CloudEvents (the role of handler_test.go's httptest server)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 20.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.requests) >= n, self.requests
        return self.requests


def _rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_injector_argv_starts_the_sidecar_unchanged_and_it_proxies_and_logs(spawn, tmp_path):
    """`python -m infertap.sidecar` with the webhook's argv (metadata headers and annotations),
    the environment the webhook gives (SERVING_READINESS_PROBE); only the URL and ports are this
    test's. The events reach a real HTTP receiver with the headers KServe's handler_test.go reads."""
    receiver = _Receiver()
    model = start_upstream(spawn, "model")
    model_port = int(model.rsplit(":", 1)[1])
    port = free_port()
    argv = [*INJECTOR_ARGV["metadata_headers"], "--metadata-annotations", "Foo=Bar,Fizz=Buzz"]
    argv = [receiver.url if a == "http://httpbin.org/" else str(model_port) if a == "8080" else a for a in argv]
    probe_env = PROBE_ENV.replace("8080", str(model_port))
    child = spawn(
        [sys.executable, "-m", "infertap.sidecar", *argv, "--port", str(port), "--spool-dir", str(tmp_path / "spool")],
        env={"SERVING_READINESS_PROBE": probe_env, "INFERTAP_LOGGER_BATCH_LINGER_MS": "0"},
        name="sidecar",
    )
    base = f"http://127.0.0.1:{port}"
    child.wait_http(f"{base}/infertap/metrics")

    # the readiness probe the webhook gives the agent container (kubelet, K-Network-Probe: queue)
    ready = httpx.get(f"{base}/", headers={"K-Network-Probe": "queue", "User-Agent": "kube-probe/1.30"})
    assert (ready.status_code, ready.text) == (200, "queue")
    bad = httpx.get(f"{base}/", headers={"K-Network-Probe": "nope", "User-Agent": "kube-probe/1.30"})
    assert (bad.status_code, bad.text) == (400, "unexpected probe header value: nope\n")

    body = b'{"instances":[[0,0,0]]}'
    reply = httpx.post(
        f"{base}/v1/models/sklearn:predict",
        content=body,
        headers={"content-type": "application/json", "Foo": "bar", "Fizz": "buzz", "Bar": "baz"},
    )
    assert reply.status_code == 200 and reply.content == body  # the stand-in echoes
    events = receiver.wait(2)
    by_type = {h["ce-type"]: (h, b) for h, b in events}
    request, request_body = by_type["org.kubeflow.serving.inference.request"]
    response, _ = by_type["org.kubeflow.serving.inference.response"]
    assert request_body == body
    # handler_test.go: json.Unmarshal(Ce-Metadata) -> Foo: [bar]; json.Unmarshal(Ce-Annotations) -> Foo: Bar
    assert json.loads(request["ce-metadata"]) == {"Foo": ["bar"], "Bar": ["baz"]}  # the allow-list: Foo, Bar
    assert json.loads(request["ce-annotations"]) == {"Foo": "Bar", "Fizz": "Buzz"}
    assert request["ce-id"] == response["ce-id"] and request["ce-source"] == "deployment"
    assert (request["ce-inferenceservicename"], request["ce-namespace"], request["ce-component"]) == (
        "sklearn",
        "default",
        "predictor",
    )
    # TestLoggerCloudEventTimestamps: recordedtime >= time; the response's time >= the request's
    for headers in (request, response):
        assert _rfc3339(headers["ce-recordedtime"]) >= _rfc3339(headers["ce-time"])
    assert _rfc3339(response["ce-time"]) >= _rfc3339(request["ce-time"])
    assert "accepted and ignored" not in child.tail(200)


def test_percent_encoding_is_a_setting(serve_app, upstream):  # noqa: F811
    from infertap.logger.sinks.http import binary_message

    url, d = sidecar(serve_app, upstream, metadata_headers=["foo"])
    httpx.post(f"{url}/v1/models/m:predict", content=b"{}", headers={"foo": 'a "b"'})
    event = d.wait(1)[0]
    assert binary_message(event, "raw").headers["ce-metadata"] == '{"Foo":["a \\"b\\""]}'
    assert binary_message(event, "percent").headers["ce-metadata"] == "{%22Foo%22:[%22a%20\\%22b\\%22%22]}"


def test_event_id_from_x_request_id_when_asked(serve_app, upstream):  # noqa: F811
    url, d = sidecar(serve_app, upstream, request_id_header="x-request-id")
    httpx.post(f"{url}/v1/models/m:predict", content=b"{}", headers={"x-request-id": "trace-1"})
    httpx.post(f"{url}/v1/models/m:predict", content=b"{}", headers={"x-request-id": "trace-2", "ce-id": "ce-2"})
    events = d.wait(4)
    assert {e.get_id() for e in events} == {"trace-1", "ce-2"}  # ce-id first, as KServe
    url, d = sidecar(serve_app, upstream)  # off by default: a new UUID
    httpx.post(f"{url}/v1/models/m:predict", content=b"{}", headers={"x-request-id": "trace-3"})
    assert all(e.get_id() != "trace-3" for e in d.wait(2))
