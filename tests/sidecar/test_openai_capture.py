"""Unit tests of the OpenAI capture (SSE parser, reassembly, malformed streams) and of the
redaction rules; no process, no socket."""

from __future__ import annotations

import json

import pytest

from infertap.sidecar.openai_capture import Capture, SSEParser, operation_of
from infertap.sidecar.redact import Redactor
from tests.sidecar.pii_corpus import CORPUS, CUSTOM_PATTERN, INNOCENT, MESSAGE, leaks

pytestmark = pytest.mark.fast


def sse(*objs: object) -> bytes:
    return b"".join(b"data: " + (o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n\n" for o in objs)


HEAD = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def chat_stream(usage: bool = True) -> bytes:
    chunks = [
        {**HEAD, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]},
        {**HEAD, "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]},
        {**HEAD, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": None}]},
        {**HEAD, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    if usage:
        chunks.append({**HEAD, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})
    return sse(*chunks, b"[DONE]")


def feed_in_pieces(capture: Capture, data: bytes, size: int) -> None:
    capture.response_head(b"text/event-stream; charset=utf-8")
    for i in range(0, len(data), size):
        capture.feed(data[i : i + size])


def test_paths():
    assert operation_of("/openai/v1/chat/completions") == "chat"
    assert operation_of("/v1/completions") == "text_completion"
    assert operation_of("/v1/embeddings") == "embeddings"
    assert operation_of("/v1/models/iris:predict") is None
    assert operation_of("/v2/models/iris/infer") is None


def test_parser_across_any_split():
    data = b"data: a\r\n\r\n: comment\n\nevent: x\ndata: b1\ndata: b2\n\ndata:c"
    for size in (1, 2, 3, 7, len(data)):
        p = SSEParser()
        got = []
        for i in range(0, len(data), size):
            got += p.feed(data[i : i + size])
        got += p.close()
        assert got == [b"a", b"b1\nb2", b"c"], size


@pytest.mark.parametrize("size", [1, 5, 64, 100000])
def test_chat_reassembled(size):
    c = Capture("chat", json.dumps({"model": "m", "stream": True}).encode(), 1 << 20)
    feed_in_pieces(c, chat_stream(), size)
    out = c.finish()
    assert out.object == {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    ext = out.extensions()
    assert ext["genaiusageinputtokens"] == 5 and ext["genaiusageoutputtokens"] == 2
    assert ext["genaiusagesource"] == "runtime" and ext["genairesponsefinishreasons"] == '["stop"]'
    assert ext["genairequeststream"] == "true" and float(ext["genaiservertimetofirsttoken"]) >= 0


def test_estimate_without_usage():
    c = Capture("chat", b'{"model": "m", "stream": true}', 1 << 20)
    feed_in_pieces(c, chat_stream(usage=False), 10)
    ext = c.finish().extensions()
    assert ext["genaiusageoutputtokens"] == 2 and ext["genaiusagesource"] == "estimate"
    assert "genaiusageinputtokens" not in ext


def test_tool_calls_and_text_completion():
    calls = [
        {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"x": '}},
        {"index": 0, "function": {"arguments": "1}"}},
    ]
    stream = sse(
        *({**HEAD, "choices": [{"index": 0, "delta": {"tool_calls": [p]}}]} for p in calls),
        {**HEAD, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        b"[DONE]",
    )
    c = Capture("chat", b"{}", 1 << 20)
    feed_in_pieces(c, stream, 3)
    msg = c.finish().object["choices"][0]["message"]
    assert msg["tool_calls"] == [{"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]

    head = {"id": "t", "object": "text_completion", "model": "m"}
    stream = sse(
        {**head, "choices": [{"index": 0, "text": "ab", "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "text": "c", "finish_reason": "length"}]},
        b"[DONE]",
    )
    c = Capture("text_completion", b"{}", 1 << 20)
    feed_in_pieces(c, stream, 4)
    obj = c.finish().object
    assert obj["object"] == "text_completion" and obj["choices"][0]["text"] == "abc"


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (sse({**HEAD, "choices": []}) + b"data: {broken\n\n" + sse(b"[DONE]"), "sse_chunk_not_json"),
        (sse({**HEAD, "choices": [{"index": 0, "delta": {"content": "x"}}]}), "sse_no_done"),
        (sse([1, 2]), "sse_chunk_not_object"),
    ],
)
def test_malformed_falls_back_to_raw(stream, reason):
    c = Capture("chat", b"{}", 1 << 20)
    feed_in_pieces(c, stream, 7)
    out = c.finish()
    assert out.object is None and c.reason == reason and out.extensions()["capturereason"] == reason


def test_interrupted_and_bounded():
    c = Capture("chat", b"{}", 2)
    feed_in_pieces(c, chat_stream()[:400], 50)
    c.interrupt("client_disconnected")
    out = c.finish()
    assert out.finish_reasons == ["client_disconnected"]
    assert out.object["choices"][0]["message"]["content"] == "He" and out.truncated  # "Hel" came, capped at 2


def test_non_streamed_json():
    body = {
        "id": "x",
        "model": "m",
        "choices": [{"finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 9},
    }
    c = Capture("chat", b"{}", 1 << 20)
    c.response_head(b"application/json")
    c.feed(json.dumps(body).encode())
    out = c.finish()
    assert out.object is None and out.parsed == body
    assert (out.input_tokens, out.output_tokens, out.finish_reasons) == (3, 9, ["length"])


def test_vllm_deprecated_usage_names():
    c = Capture("chat", b"{}", 1 << 20)
    c.feed(json.dumps({"usage": {"gen_ai.usage.prompt_tokens": 4, "gen_ai.usage.completion_tokens": 6}}).encode())
    out = c.finish()
    assert (out.input_tokens, out.output_tokens) == (4, 6)


def test_every_rule_redacts_the_corpus():
    r = Redactor([CUSTOM_PATTERN])
    for rule, value in CORPUS:
        assert r.text(f"x {value} y") == f"x [REDACTED:{rule}] y", (rule, value)
    out = r.body(json.dumps({"messages": [{"role": "user", "content": MESSAGE}]}).encode())
    assert not leaks(out), leaks(out)
    for text in INNOCENT:
        assert r.text(text) == text


def test_metrics_cost_and_bounded_labels():
    from infertap.logger.metrics import REGISTRY
    from infertap.sidecar.llm_metrics import GenAIMetrics
    from infertap.sidecar.tap import ModelNames

    metrics = GenAIMetrics("cost-test", "predictor", ModelNames(), {"priced": "1:3"})
    c = Capture("chat", b'{"model": "priced"}', 1 << 20)
    c.feed(
        json.dumps(
            {
                "model": "priced",
                "choices": [{"finish_reason": "weird"}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 2000},
            }
        ).encode()
    )
    metrics.observe(c.finish(), 200)
    labels = {
        "inference_service": "cost-test",
        "component": "predictor",
        "model": "priced",
        "gen_ai_operation_name": "chat",
    }
    cost_in = REGISTRY.get_sample_value(
        "infertap_gen_ai_client_cost_usd_total", {**labels, "gen_ai_token_type": "input"}
    )
    cost_out = REGISTRY.get_sample_value(
        "infertap_gen_ai_client_cost_usd_total", {**labels, "gen_ai_token_type": "output"}
    )
    assert cost_in == pytest.approx(0.001) and cost_out == pytest.approx(0.006)
    assert (
        REGISTRY.get_sample_value(
            "infertap_gen_ai_server_requests_total", {**labels, "gen_ai_response_finish_reason": "other", "code": "200"}
        )
        == 1
    )
    for i in range(40):  # names the server answered 404 for never get a label
        c = Capture("chat", json.dumps({"model": f"m{i}"}).encode(), 1 << 20)
        metrics.observe(c.finish(), 404)
    assert (
        REGISTRY.get_sample_value(
            "infertap_gen_ai_server_requests_total",
            {**labels, "model": "_unknown", "gen_ai_response_finish_reason": "none", "code": "404"},
        )
        == 40
    )
