"""The sidecar understands LLM traffic (issue 16), end to end: the official `openai` client
through the real sidecar process (`python -m infertap.sidecar`) in front of a scripted
OpenAI upstream (tests/sidecar/llm_upstream.py: tool calls, broken chunks, no `[DONE]`, an
endless stream) and of the real Hugging Face runtime serving a tiny LM; events read back
from the real embedded broker with plain kafka-python.

Proves: the stream reaches the client chunk by chunk and unchanged; the response event is
the reassembled `chat.completion` / `text_completion` (`application/json`) equal to what
the client accumulated (redacted), with usage and GenAI extensions; malformed streams are
logged raw with `capturereason`; a client leaving mid-stream gives a partial completion
with `client_disconnected`; the PII corpus reaches neither Kafka nor the file sink, the
spool or the sidecar's log; sampling keeps failures; the GenAI metrics count.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infertap.sidecar.redact import Redactor
from tests.conftest import Child, free_port, unique
from tests.logger.delivery_fixtures import decode, read_topic
from tests.sidecar.pii_corpus import CUSTOM_PATTERN, MESSAGE, leaks

openai = pytest.importorskip("openai")

HERE = Path(__file__).resolve().parent
REDACT = Redactor([CUSTOM_PATTERN])


class Sidecar(Child):
    def __init__(self, component_port: int, log_urls: list[str], folder: Path, extra: list[str] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        args = [
            sys.executable,
            "-m",
            "infertap.sidecar",
            "--port",
            str(self.port),
            "--component-port",
            str(component_port),
            "--inference-service",
            "llm",
            "--spool-dir",
            str(folder / "spool"),
            "--redact-patterns",
            CUSTOM_PATTERN,
            *extra,
        ]
        for url in log_urls:
            args += ["--log-url", url]
        super().__init__(args, folder / "sidecar.log")
        self.wait_http(self.url + "/infertap/metrics")

    def client(self, prefix: str = "/openai/v1"):
        return openai.OpenAI(base_url=self.url + prefix, api_key="unused", max_retries=0, timeout=60)

    def metric(self, name: str, **labels: str) -> float:
        total = 0.0
        for line in httpx.get(self.url + "/infertap/metrics").text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


class Events:
    """The events of one topic, read back with kafka-python, by id."""

    def __init__(self, bootstrap: str, topic: str):
        self.bootstrap, self.topic = bootstrap, topic
        self.records: list[Any] = []

    def pair(self, event_id: str, timeout: float = 30.0) -> tuple[Any, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.records = read_topic(self.bootstrap, self.topic, len(self.records) + 1, timeout=5)
            events = [decode(r) for r in self.records if r.key == event_id.encode()]
            req = [e for e in events if e.get_type().endswith(".request")]
            resp = [e for e in events if e.get_type().endswith(".response")]
            if req and resp:
                return req[0], resp[0]
        raise AssertionError(f"no request/response pair for {event_id} in {self.topic}")


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    port = free_port()
    log = tmp_path_factory.mktemp("llm-upstream") / "upstream.log"
    child = Child([sys.executable, str(HERE / "llm_upstream.py"), "--port", str(port)], log)
    child.port = port  # type: ignore[attr-defined]
    try:
        child.wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
        yield child
    finally:
        child.stop()


@pytest.fixture(scope="module")
def tapped(broker, scripted, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sidecar, Events, Path]]:
    folder = tmp_path_factory.mktemp("llm-sidecar")
    topic = unique("llm-events")
    sink_file = folder / "events.jsonl"
    sidecar = Sidecar(scripted.port, [f"kafka://{broker.bootstrap}/{topic}", f"file://{sink_file}"], folder)
    try:
        yield sidecar, Events(broker.bootstrap, topic), sink_file
    finally:
        sidecar.stop()


def payload(event: Any) -> Any:
    """An event's data as JSON (the SDK's binding already decodes `application/json` data)."""
    data = event.get_data()
    return json.loads(data) if isinstance(data, (bytes, str)) else data


def raw(event: Any) -> bytes:
    data = event.get_data()
    if isinstance(data, str):
        return data.encode()
    return data if isinstance(data, bytes) else json.dumps(data).encode()


def new_id() -> str:
    return str(uuid.uuid4())


def chat(sidecar: Sidecar, model: str, content: str, event_id: str, **kw: Any):
    return sidecar.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], extra_headers={"ce-id": event_id}, **kw
    )


def test_streamed_chat_is_reassembled_and_redacted(tapped):
    sidecar, events, _ = tapped
    eid = new_id()
    stream = chat(sidecar, "echo", MESSAGE, eid, stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage.model_dump(exclude_unset=True)
    assert text == MESSAGE  # the client got the stream as the upstream sent it
    request, response = events.pair(eid)
    assert response.get_attributes()["datacontenttype"] == "application/json"
    logged = payload(response)
    assert logged["object"] == "chat.completion"
    assert logged["choices"][0]["message"] == {"role": "assistant", "content": REDACT.text(text)}
    assert logged["choices"][0]["finish_reason"] == "stop"
    assert logged["usage"] == usage
    attrs = response.get_attributes()
    assert attrs["genaioperationname"] == "chat" and attrs["genairequestmodel"] == "echo"
    assert attrs["genairesponsemodel"] == "echo" and attrs["genairequeststream"] == "true"
    assert int(attrs["genaiusageinputtokens"]) == usage["prompt_tokens"]
    assert int(attrs["genaiusageoutputtokens"]) == usage["completion_tokens"]
    assert attrs["genaiusagesource"] == "runtime"
    assert json.loads(attrs["genairesponsefinishreasons"]) == ["stop"]
    assert 0 < float(attrs["genaiservertimetofirsttoken"]) <= float(attrs["genaiserverrequestduration"])
    assert not leaks(raw(request)) and not leaks(raw(response))
    assert payload(request)["messages"][0]["content"] == REDACT.text(MESSAGE)


def test_non_streamed_and_completions(tapped):
    sidecar, events, _ = tapped
    eid = new_id()
    answer = chat(sidecar, "echo", "hello there", eid)
    _, response = events.pair(eid)
    assert response.get_attributes()["datacontenttype"] == "application/json"
    assert payload(response) == answer.model_dump(exclude_unset=True)
    assert response.get_attributes()["genairequeststream"] == "false"

    eid = new_id()
    stream = sidecar.client().completions.create(
        model="echo", prompt="one two three", stream=True, extra_headers={"ce-id": eid}
    )
    text = "".join(c.choices[0].text for c in stream if c.choices)
    _, response = events.pair(eid)
    logged = payload(response)
    assert logged["object"] == "text_completion" and logged["choices"][0]["text"] == text == "one two three"
    attrs = response.get_attributes()
    assert attrs["genaioperationname"] == "text_completion" and attrs["genaiusagesource"] == "estimate"
    assert int(attrs["genaiusageoutputtokens"]) == 3


def test_tool_calls_assembled(tapped):
    sidecar, events, _ = tapped
    eid = new_id()
    calls: dict[int, dict] = {}
    for chunk in chat(sidecar, "tools", "weather?", eid, stream=True):
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            slot["id"] = tc.id or slot["id"]
            slot["name"] += (tc.function.name or "") if tc.function else ""
            slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
    _, response = events.pair(eid)
    message = payload(response)["choices"][0]["message"]
    assert [(t["id"], t["function"]["name"], t["function"]["arguments"]) for t in message["tool_calls"]] == [
        (c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())
    ]
    assert json.loads(response.get_attributes()["genairesponsefinishreasons"]) == ["tool_calls"]


def test_request_event_logged_while_the_upstream_has_not_answered(tapped):
    """The request event is built after forwarding, at the response head; without a head it
    still goes out (the tap's 5 ms timer), redacted, while the client is still waiting."""
    sidecar, events, _ = tapped
    eid = new_id()
    body = json.dumps({"model": "silent", "messages": [{"role": "user", "content": MESSAGE}]}).encode()
    head = (
        f"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"ce-id: {eid}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=10) as conn:
        conn.sendall(head + body)  # and no read: the client stays connected, waiting
        deadline, logged = time.monotonic() + 20, []
        while not logged and time.monotonic() < deadline:
            events.records = read_topic(events.bootstrap, events.topic, len(events.records) + 1, timeout=2)
            logged = [decode(r) for r in events.records if r.key == eid.encode()]
        assert [e.get_type().rsplit(".", 1)[-1] for e in logged] == ["request"]  # no response yet
        assert not leaks(raw(logged[0]))
        assert payload(logged[0])["messages"][0]["content"] == REDACT.text(MESSAGE)


@pytest.mark.parametrize(("model", "reason"), [("broken-json", "sse_chunk_not_json"), ("no-done", "sse_no_done")])
def test_malformed_stream_passes_unchanged_and_is_logged_raw(tapped, scripted, model, reason):
    sidecar, events, _ = tapped
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    direct = httpx.post(f"http://127.0.0.1:{scripted.port}/v1/chat/completions", json=body).content
    eid = new_id()
    through = httpx.post(sidecar.url + "/v1/chat/completions", json=body, headers={"ce-id": eid})
    assert through.status_code == 200 and through.content == direct
    _, response = events.pair(eid)
    attrs = response.get_attributes()
    assert attrs["datacontenttype"] == "text/event-stream" and attrs["capturereason"] == reason
    assert raw(response) == direct


def test_client_disconnect_logs_partial_completion(tapped):
    sidecar, events, _ = tapped
    eid = new_id()
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    got = b""
    with httpx.stream("POST", sidecar.url + "/openai/v1/chat/completions", json=body, headers={"ce-id": eid}) as r:
        for part in r.iter_raw():
            got += part
            if got.count(b"\n\n") >= 4:
                break
    _, response = events.pair(eid)
    logged = payload(response)
    assert logged["choices"][0]["finish_reason"] == "client_disconnected"
    assert logged["choices"][0]["message"]["content"].startswith(" t0 t1 t2")
    assert json.loads(response.get_attributes()["genairesponsefinishreasons"]) == ["client_disconnected"]


def test_genai_metrics(tapped):
    sidecar, _, _ = tapped
    chat(sidecar, "echo", "count me", new_id(), stream=True, stream_options={"include_usage": True})
    time.sleep(0.1)
    assert sidecar.metric("infertap_gen_ai_server_time_to_first_token_seconds_count", model="echo") >= 1
    assert sidecar.metric("infertap_gen_ai_client_token_usage_total", gen_ai_token_type="output", model="echo") >= 2
    assert sidecar.metric("infertap_gen_ai_server_requests_total", gen_ai_response_finish_reason="stop") >= 1
    assert sidecar.metric("infertap_tap_redactions_total", rule="email") >= 1


def test_pii_reaches_no_sink_no_spool_no_log(broker, scripted, tapped, tmp_path):
    sidecar, events, sink_file = tapped
    eid = new_id()
    chat(sidecar, "echo", MESSAGE, eid, stream=True)
    events.pair(eid)
    for record in events.records:  # every record of the topic: values and headers
        assert not leaks(record.value), leaks(record.value)
        assert not leaks(b"".join(v for _, v in record.headers))
    deadline = time.monotonic() + 20
    while eid.encode() not in (sink_file.read_bytes() if sink_file.exists() else b"") and time.monotonic() < deadline:
        time.sleep(0.1)
    for line in sink_file.read_bytes().splitlines():
        event = json.loads(line)
        data = base64.b64decode(event.get("data_base64", "")) or json.dumps(event.get("data")).encode()
        assert not leaks(data) and not leaks(line)
    assert not leaks(sidecar.log.read_bytes())

    # a sink that is down: the events go to the spool on disk, redacted
    dead = Sidecar(scripted.port, [f"kafka://127.0.0.1:{free_port()}/nowhere"], tmp_path)
    try:
        chat(dead, "echo", MESSAGE, new_id(), stream=True)
        chat(dead, "echo", MESSAGE, new_id())
        spool = tmp_path / "spool"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(p.stat().st_size for p in spool.rglob("*") if p.is_file()) < 1000:
            time.sleep(0.2)
        blobs = b"".join(p.read_bytes() for p in spool.rglob("*") if p.is_file())
        assert b"chat.completion" in blobs  # the spool holds the events...
        assert not leaks(blobs)  # ...without the corpus
        assert not leaks(dead.log.read_bytes())
    finally:
        dead.stop()


def test_sampling_keeps_failures(broker, scripted, tmp_path):
    topic = unique("sampled")
    sidecar = Sidecar(scripted.port, [f"kafka://{broker.bootstrap}/{topic}"], tmp_path, ["--log-sample-rate", "0"])
    try:
        ok, failed = new_id(), new_id()
        chat(sidecar, "echo", "dropped", ok)
        assert httpx.post(sidecar.url + "/v2/models/nope/infer", json={}, headers={"ce-id": failed}).status_code == 404
        events = Events(broker.bootstrap, topic)
        events.pair(failed)
        assert not [r for r in events.records if r.key == ok.encode()]
    finally:
        sidecar.stop()


# --- the real Hugging Face runtime ---------------------------------------------------------


@pytest.fixture(scope="module")
def hf_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    pytest.importorskip("transformers")
    hf_models = pytest.importorskip("examples.hf_models")
    folder = tmp_path_factory.mktemp("tiny-llm")
    hf_models.build_tiny_llm(folder)
    port = free_port()
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [sys.executable, "-m", "infertap.serving", "--http-port", str(port), "--model-format", "huggingface"]
    args += ["--storage-uri", f"file://{folder}", "--model_name", "tiny-llm", "--backend=huggingface"]
    args += ["--dtype=float32", "--max_model_len=512"]
    child = Child(args, tmp_path_factory.mktemp("hf") / "serving.log", env=env)
    child.port = port  # type: ignore[attr-defined]
    try:
        child.wait_http(f"http://127.0.0.1:{port}/v2/health/ready", timeout=300)
        yield child
    finally:
        child.stop()


def test_real_runtime_stream_and_json(broker, hf_runtime, tmp_path):
    topic = unique("hf-events")
    sidecar = Sidecar(hf_runtime.port, [f"kafka://{broker.bootstrap}/{topic}"], tmp_path)
    events = Events(broker.bootstrap, topic)
    try:
        for prefix in ("/openai/v1", "/v1"):
            eid = new_id()
            stream = sidecar.client(prefix).chat.completions.create(
                model="tiny-llm",
                messages=[{"role": "user", "content": "Hello"}],
                max_tokens=12,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers={"ce-id": eid},
            )
            text, usage, finish = "", None, None
            for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
                if chunk.usage is not None:
                    usage = chunk.usage.model_dump(exclude_unset=True)
            _, response = events.pair(eid)
            logged = payload(response)
            assert logged["choices"][0]["message"]["content"] == REDACT.text(text)
            assert logged["choices"][0]["finish_reason"] == finish and logged["usage"] == usage
            assert float(response.get_attributes()["genaiservertimetofirsttoken"]) > 0

        eid = new_id()
        answer = sidecar.client().completions.create(
            model="tiny-llm", prompt="Once", max_tokens=8, extra_headers={"ce-id": eid}
        )
        _, response = events.pair(eid)
        logged = payload(response)
        assert logged["choices"][0]["text"] == REDACT.text(answer.choices[0].text)
        assert int(response.get_attributes()["genaiusageoutputtokens"]) == answer.usage.completion_tokens
    finally:
        sidecar.stop()
