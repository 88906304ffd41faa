"""OpenTelemetry export of the OpenAI calls (issue 16, `infertap.sidecar.llm_otel`), end to end:
the official `openai` client through the real sidecar process (`python -m infertap.sidecar
--otel-endpoint ...`) in front of the scripted upstream (tests/sidecar/llm_upstream.py); the
spans land in a real OTLP/HTTP receiver (an HTTP server on a thread of this process that
decodes `POST /v1/traces` with opentelemetry-proto's `ExportTraceServiceRequest`).

Proves: one CLIENT span per call named `{operation} {model}`, with the GenAI attributes equal
to what the client got (model, id, finish reasons, usage) and to what it asked (max_tokens,
temperature, top_p, stream), server address and port of the model server, the time to first
chunk on streams, `error.type` on failures; the child of the request's `traceparent`; no
message content by default, redacted content when asked (the PII corpus never reaches the
receiver); auth headers from $OTEL_EXPORTER_OTLP_HEADERS only, never in the log; a failing
receiver fails no call; the sidecar's stop flushes the queued spans; the event of the call is
still logged beside its span, and spans come without any `--log-url` too; without the extra,
a sentence and exit code 2.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from infertap.sidecar.llm_otel import OTelConfigError, input_messages, output_messages, resolve_endpoint
from infertap.sidecar.redact import Redactor
from tests.conftest import Child, free_port
from tests.sidecar.pii_corpus import CUSTOM_PATTERN, MESSAGE, leaks

openai = pytest.importorskip("openai")
trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
trace_pb2 = pytest.importorskip("opentelemetry.proto.trace.v1.trace_pb2")

HERE = Path(__file__).resolve().parent
REDACT = Redactor([CUSTOM_PATTERN])
CLIENT = trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT
ERROR = trace_pb2.Status.StatusCode.STATUS_CODE_ERROR
AUTH = "Basic aW5mZXJ0YXA6b3RlbC1zM2NyZXQ="  # what Langfuse takes: base64(public:secret)


# --- a real OTLP/HTTP receiver -------------------------------------------------------------


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


class Receiver:
    """OTLP/HTTP traces receiver: keeps every span (with its resource's attributes), the raw
    bodies and the headers of each export; answers `status` (200: an empty export response)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[dict[str, Any], Any]] = []
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver.lock:
                    receiver.bodies.append(body)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    status = receiver.status if self.path == "/v1/traces" else 404
                    if status == 200:
                        request = trace_service.ExportTraceServiceRequest.FromString(body)
                        for rs in request.resource_spans:
                            resource = attributes(rs.resource.attributes)
                            receiver.spans += [(resource, s) for ss in rs.scope_spans for s in ss.spans]
                    else:
                        receiver.refused += 1
                answer = trace_service.ExportTraceServiceResponse().SerializeToString() if status == 200 else b"no"
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def find(self, event_id: str) -> tuple[dict[str, Any], Any] | None:
        with self.lock:
            for resource, span in self.spans:
                if attributes(span.attributes).get("infertap.event_id") == event_id:
                    return resource, span
        return None

    def span(self, event_id: str, timeout: float = 30.0) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        """(resource attributes, span, span attributes) of the call logged as `event_id`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(event_id)
            if found is not None:
                return found[0], found[1], attributes(found[1].attributes)
            time.sleep(0.05)
        raise AssertionError(f"no span of {event_id} among {len(self.spans)}")

    def everything(self) -> bytes:
        with self.lock:
            return b"".join(self.bodies) + json.dumps(self.headers).encode()


class Sidecar(Child):
    def __init__(
        self, upstream_port: int, otel_url: str, folder: Path, extra: list[str] = (), env=None, events: bool = True
    ):
        """`events`: also log the CloudEvents (to a file sink); False: spans only, no `--log-url`."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.events = folder / "events.jsonl"
        args = [sys.executable, "-m", "infertap.sidecar", "--port", str(self.port)]
        args += ["--component-port", str(upstream_port), "--inference-service", "llm"]
        if events:
            args += ["--log-url", f"file://{self.events}", "--spool-dir", str(folder / "spool")]
        args += ["--redact-patterns", CUSTOM_PATTERN, "--otel-endpoint", otel_url, *extra]
        env = {"OTEL_EXPORTER_OTLP_HEADERS": f"authorization={AUTH}", **(env or {})}
        super().__init__(args, folder / "sidecar.log", env=env)
        self.wait_http(self.url + "/infertap/metrics")

    def client(self):
        return openai.OpenAI(base_url=self.url + "/openai/v1", api_key="unused", max_retries=0, timeout=60)

    def event(self, event_id: str, kind: str = "response", timeout: float = 30.0) -> dict[str, Any]:
        """The logged CloudEvent (file sink, structured JSON) of `event_id`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.events.exists():
                for line in self.events.read_text().splitlines():
                    event = json.loads(line)
                    if event["id"] == event_id and event["type"].endswith("." + kind):
                        return event
            time.sleep(0.05)
        raise AssertionError(f"no {kind} event {event_id}:\n{self.tail()}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    port = free_port()
    child = Child(
        [sys.executable, str(HERE / "llm_upstream.py"), "--port", str(port)],
        tmp_path_factory.mktemp("otel-upstream") / "upstream.log",
    )
    child.port = port  # type: ignore[attr-defined]
    try:
        child.wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
        yield child
    finally:
        child.stop()


@pytest.fixture(scope="module")
def traced(upstream, receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """Content off (the default); spans exported every 50 ms."""
    folder = tmp_path_factory.mktemp("otel-sidecar")
    sidecar = Sidecar(upstream.port, receiver.url, folder, env={"OTEL_BSP_SCHEDULE_DELAY": "50"})
    try:
        yield sidecar
    finally:
        sidecar.stop()


def new_id() -> str:
    return str(uuid.uuid4())


def seconds(span: Any) -> float:
    return (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9


# --- spans of the calls --------------------------------------------------------------------


def test_streamed_chat_span_is_the_child_of_the_traceparent(traced, receiver, upstream):
    eid, trace_id, parent = new_id(), uuid.uuid4().hex, uuid.uuid4().hex[:16]
    stream = traced.client().chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": MESSAGE}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=64,
        temperature=0.25,
        top_p=0.5,
        extra_headers={"ce-id": eid, "traceparent": f"00-{trace_id}-{parent}-01"},
    )
    usage, ids, models, text = None, set(), set(), ""
    for chunk in stream:
        ids.add(chunk.id)
        models.add(chunk.model)
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == MESSAGE and usage is not None
    resource, span, a = receiver.span(eid)
    assert span.name == "chat echo" and span.kind == CLIENT
    assert span.trace_id.hex() == trace_id and span.parent_span_id.hex() == parent
    assert resource["service.name"] == "llm"
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "echo" and [a["gen_ai.response.model"]] == list(models)
    assert [a["gen_ai.response.id"]] == list(ids)
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert a["gen_ai.request.stream"] is True and a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.request.temperature"] == 0.25 and a["gen_ai.request.top_p"] == 0.5
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == upstream.port
    assert 0 < a["gen_ai.response.time_to_first_chunk"] <= seconds(span)
    assert "error.type" not in a and span.status.code != ERROR
    # no content by default: the corpus the call carried is nowhere in what the receiver got
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    assert not leaks(receiver.everything())
    # the auth header came from $OTEL_EXPORTER_OTLP_HEADERS, and is not in the sidecar's log
    assert {h.get("authorization") for h in receiver.headers} == {AUTH}
    assert AUTH.split()[1].encode() not in traced.log.read_bytes()
    # the event of the call is logged beside its span
    event = traced.event(eid)
    assert event["genairesponseid"] == a["gen_ai.response.id"]
    assert int(event["genaiusageoutputtokens"]) == a["gen_ai.usage.output_tokens"]


def test_non_streamed_chat_and_completions(traced, receiver):
    eid = new_id()
    answer = traced.client().chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello there"}], extra_headers={"ce-id": eid}
    )
    _, span, a = receiver.span(eid)
    assert span.name == "chat echo" and span.kind == CLIENT
    assert not span.parent_span_id  # no traceparent: a root span
    assert a["gen_ai.response.id"] == answer.id and a["gen_ai.response.model"] == answer.model
    assert a["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert a["gen_ai.response.finish_reasons"] == [answer.choices[0].finish_reason]
    assert "gen_ai.request.stream" not in a and "gen_ai.response.time_to_first_chunk" not in a

    eid = new_id()
    stream = traced.client().completions.create(
        model="echo", prompt="one two three", stream=True, extra_headers={"ce-id": eid}
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == "one two three"
    _, span, a = receiver.span(eid)
    assert span.name == "text_completion echo" and a["gen_ai.operation.name"] == "text_completion"
    assert a["gen_ai.usage.output_tokens"] == 3 and a["infertap.usage_source"] == "estimate"
    assert a["gen_ai.response.finish_reasons"] == ["stop"] and a["gen_ai.response.time_to_first_chunk"] > 0

    eid = new_id()
    answer = traced.client().completions.create(model="echo", prompt="four five", extra_headers={"ce-id": eid})
    _, span, a = receiver.span(eid)
    assert span.name == "text_completion echo" and a["gen_ai.response.id"] == answer.id
    assert a["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert a["infertap.usage_source"] == "runtime"


def test_failures_carry_error_type(traced, receiver):
    eid = new_id()
    with pytest.raises(openai.BadRequestError):
        traced.client().chat.completions.create(
            model="reject", messages=[{"role": "user", "content": "no"}], extra_headers={"ce-id": eid}
        )
    _, span, a = receiver.span(eid)
    assert span.name == "chat reject" and a["error.type"] == "400" and span.status.code == ERROR
    assert a["http.response.status_code"] == 400

    eid = new_id()
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    got = b""
    with httpx.stream("POST", traced.url + "/openai/v1/chat/completions", json=body, headers={"ce-id": eid}) as r:
        for part in r.iter_raw():
            got += part
            if got.count(b"\n\n") >= 4:
                break
    _, span, a = receiver.span(eid)
    assert a["error.type"] == "client_disconnected" and span.status.code == ERROR
    assert a["gen_ai.response.finish_reasons"] == ["client_disconnected"]


def test_a_failing_receiver_fails_no_call(traced, receiver):
    with receiver.lock:
        receiver.status, refused = 400, receiver.refused
    try:
        eid = new_id()
        stream = traced.client().chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "still here"}],
            stream=True,
            extra_headers={"ce-id": eid},
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "still here"
        assert traced.event(eid)["genaioperationname"] == "chat"  # the events do not wait on the spans
        deadline = time.monotonic() + 30
        while receiver.refused == refused and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.refused > refused, "the receiver was never asked while it refused"
    finally:
        with receiver.lock:
            receiver.status = 200
    eid = new_id()
    traced.client().chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "after"}], extra_headers={"ce-id": eid}
    )
    assert receiver.span(eid)[2]["gen_ai.operation.name"] == "chat"  # the export goes on
    assert traced.proc.poll() is None


def test_content_when_asked_redacted_and_flushed_at_stop(upstream, receiver, tmp_path):
    """Spans only (no `--log-url`), held in the queue (a 10-minute schedule) until the sidecar
    stops: the stop flushes them."""
    sidecar = Sidecar(
        upstream.port,
        receiver.url,
        tmp_path,
        ["--otel-capture-content"],
        env={"OTEL_BSP_SCHEDULE_DELAY": "600000"},
        events=False,
    )
    try:
        client = sidecar.client()
        chat_id, tools_id, text_id = new_id(), new_id(), new_id()
        system = "You are terse; reach me at jane.roe+billing@example-mail.co.uk"
        stream = client.chat.completions.create(
            model="echo",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": MESSAGE}],
            stream=True,
            extra_headers={"ce-id": chat_id},
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == MESSAGE
        for _ in client.chat.completions.create(
            model="tools",
            messages=[{"role": "user", "content": "weather?"}],
            stream=True,
            extra_headers={"ce-id": tools_id},
        ):
            pass
        answer = client.completions.create(model="echo", prompt=MESSAGE, extra_headers={"ce-id": text_id})
        assert receiver.find(chat_id) is None  # still queued in the sidecar
    finally:
        sidecar.stop()
    assert sidecar.proc.returncode == 0, sidecar.tail()

    _, _, a = receiver.span(chat_id, timeout=5)
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": REDACT.text(system)}]},
        {"role": "user", "parts": [{"type": "text", "content": REDACT.text(MESSAGE)}]},
    ]
    assert json.loads(a["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": REDACT.text(MESSAGE)}], "finish_reason": "stop"}
    ]
    _, _, a = receiver.span(tools_id, timeout=5)
    assert json.loads(a["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "name": "get_weather", "id": "call_1", "arguments": {"city": "Paris"}},
                {"type": "tool_call", "name": "get_time", "id": "call_2", "arguments": {}},
            ],
            "finish_reason": "tool_calls",
        }
    ]
    _, _, a = receiver.span(text_id, timeout=5)
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": REDACT.text(MESSAGE)}]}
    ]
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"] == [
        {"type": "text", "content": REDACT.text(answer.choices[0].text)}
    ]
    assert "[REDACTED:email]" in a["gen_ai.input.messages"]
    assert not leaks(receiver.everything())  # the corpus went out redacted, or not at all
    assert not leaks(sidecar.log.read_bytes())


def test_without_the_extra_a_sentence_and_exit_code_2():
    code = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"  # as if infertap[otel] were not installed
        "from infertap.sidecar.__main__ import main\n"
        f"main(['--port', '{free_port()}', '--otel-endpoint', 'http://127.0.0.1:4318/v1/traces'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "infertap[otel]" in done.stderr and "Traceback" not in done.stderr


# --- what starts no process ----------------------------------------------------------------


@pytest.mark.fast
def test_endpoint_is_off_unless_set_and_env_only_when_asked():
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert resolve_endpoint("", environ) is None  # the standard variables alone turn nothing on
    assert resolve_endpoint("env", environ) == "http://collector:4318/v1/traces"
    environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "https://tempo:4318/v1/traces"
    assert resolve_endpoint("env", environ) == "https://tempo:4318/v1/traces"
    assert resolve_endpoint("http://x:4318/v1/traces", environ) == "http://x:4318/v1/traces"
    with pytest.raises(OTelConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        resolve_endpoint("env", {})
    with pytest.raises(OTelConfigError, match="http"):
        resolve_endpoint("collector:4318", {})


@pytest.mark.fast
def test_flags_are_generated():
    from infertap.sidecar.__main__ import COMMAND

    text = COMMAND.parser().format_help()
    for flag in ("--otel-endpoint", "--otel-capture-content", "--otel-service-name", "--otel-provider-name"):
        assert flag in text


@pytest.mark.fast
def test_messages_of_a_tool_conversation():
    request = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]
    }
    assert input_messages("chat", request) == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "look"},
                {"type": "uri", "modality": "image", "uri": "https://x/a.png"},
            ],
        },
        {"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "id": "c1", "arguments": {"a": 1}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "42"}]},
    ]
    answer = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": "b"}, "finish_reason": "length"},
        ]
    }
    assert [(m["parts"][0]["content"], m["finish_reason"]) for m in output_messages("chat", answer)] == [
        ("a", "stop"),
        ("b", "length"),
    ]
    assert input_messages("embeddings", {"input": "x"}) is None
