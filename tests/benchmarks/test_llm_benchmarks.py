"""The LLM benchmarks' parts that start no process: the scripted SSE upstream and the client
in one event loop, and how llm_ttft and llm_capture_cpu turn measurements into figures."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from benchmarks import llm_capture_cpu, llm_ttft
from benchmarks.sse_client import StreamConnection, StreamResult, chat_request, run_streams
from benchmarks.sse_upstream import Script, Upstream, _query, token_text
from infertap.sidecar.openai_capture import Capture

pytestmark = pytest.mark.fast  # starts no process (make test-fast)


def _dechunk(framed: bytes) -> list[bytes]:
    """The bodies of HTTP chunks, up to the last (zero) chunk."""
    out = []
    while framed:
        size, rest = framed.split(b"\r\n", 1)
        n = int(size, 16)
        if n == 0:
            break
        out.append(rest[:n])
        assert rest[n : n + 2] == b"\r\n"
        framed = rest[n + 2 :]
    return out


def test_the_script_is_a_stream_the_sidecar_reassembles_into_its_tokens() -> None:
    script = Script("bench-llm", 200, True, 7, 1)
    pieces = _dechunk(script.role()) + _dechunk(script.token(0, (1.5, 2.5)))
    pieces += [p for i in range(1, 200) for p in _dechunk(script.token(i))]
    assert b'"x_bench":[1.5,2.5]' in pieces[1]  # the first token's stamps: ignored by the reassembly
    pieces += _dechunk(script.tail())
    assert script.tail().endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    capture = Capture("chat", b'{"model": "bench-llm", "stream": true}', 1 << 20)
    capture.response_head(b"text/event-stream; charset=utf-8")
    for piece in pieces:
        capture.feed(piece)
    outcome = capture.finish()
    assert outcome.object is not None and capture.reason is None
    message = outcome.object["choices"][0]["message"]
    assert message["content"] == "".join(token_text(i) for i in range(200))
    assert outcome.output_tokens == 200 and outcome.input_tokens == 7 and outcome.usage_source == "runtime"
    assert outcome.finish_reasons == ["length"]
    assert any(c.isdigit() for c in message["content"])  # the redaction's digit rules have work to do


def test_query_overrides_are_bounded_numbers() -> None:
    assert _query(b"/v1/chat/completions?interval_ms=20&first_token_ms=0") == {"interval_ms": 20.0, "first_token_ms": 0}
    assert _query(b"/v1/chat/completions?interval_ms=nan&first_token_ms=x&other=1") == {}
    assert _query(b"/v1/chat/completions?interval_ms=-5&first_token_ms=1e9") == {
        "interval_ms": 0,
        "first_token_ms": 6e4,
    }


async def _serve(first_token_s: float, interval_s: float) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(Upstream(first_token_s, interval_s).handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/chat/completions"


def test_client_times_the_first_token_and_counts_every_chunk() -> None:
    async def go() -> list[StreamResult]:
        server, url = await _serve(0.02, 0.001)
        async with server:
            return await run_streams(url, chat_request(url, 50), 4, 2)

    results = asyncio.run(go())
    assert len(results) == 4 and all(r.ok for r in results)
    for r in results:
        assert r.content_chunks == 50 and r.done and r.status == 200
        assert r.ttft_s is not None and 0.02 <= r.ttft_s < r.total_s  # the prefill comes first
        assert r.total_s >= 0.02 + 49 * 0.001 and r.reads >= 2
        # the upstream's stamps split the TTFT: the way in, the prefill (20 ms), the way out
        assert r.request_leg_s is not None and r.token_leg_s is not None
        assert 0 < r.request_leg_s and 0 < r.token_leg_s and r.request_leg_s + 0.02 + r.token_leg_s <= r.ttft_s + 1e-3


def test_a_query_sets_the_cadence_of_one_request_and_a_404_is_no_success() -> None:
    async def go() -> tuple[StreamResult, StreamResult]:
        server, url = await _serve(0.0, 0.0)
        async with server:
            slow = await run_streams(url + "?first_token_ms=30", chat_request(url + "?first_token_ms=30", 3), 1, 1)
            conn = await StreamConnection.open("127.0.0.1", server.sockets[0].getsockname()[1])
            try:
                missing = await conn.stream(chat_request(url.replace("/chat/completions", "/nothing"), 3))
            finally:
                conn.close()
            return slow[0], missing

    slow, missing = asyncio.run(go())
    assert slow.ok and slow.ttft_s is not None and slow.ttft_s >= 0.03
    assert missing.status == 404 and not missing.ok and missing.ttft_s is None


def test_content_chunks_split_across_reads_are_counted_once() -> None:
    conn = StreamConnection.__new__(StreamConnection)
    conn._reset()
    conn._t0 = 0.0
    first = b'data: {"choices":[{"delta":{"content":" a"}}],"x_bench":[1.25,2.5]}\n\n'
    body = first + b'data: {"choices":[{"delta":{"content":" a"}}]}\n\n' * 2 + b"data: [DONE]\n\n"
    for i in range(0, len(body), 7):  # pieces cutting the marks anywhere
        conn.on_body(body[i : i + 7])
    assert conn._chunks == 3 and conn._done and conn._first is not None
    assert conn._stamps == (1.25, 2.5)  # the first token's stamps, though they came in pieces


def _result(ttft_ms: float | None, ok: bool = True) -> StreamResult:
    ttft = None if ttft_ms is None else ttft_ms / 1e3
    return StreamResult(200 if ok else 502, ttft, (ttft or 0) + 0.01, 16 if ok else 0, ok, 17, 3000)


def test_ttft_summary_subtracts_direct_and_judges_the_goal() -> None:
    rounds = 3
    probes = {
        "direct": [[_result(5.0 + i * 0.001) for i in range(100)] for _ in range(rounds)],
        "nginx": [[_result(5.05 + i * 0.001) for i in range(100)] for _ in range(rounds)],
        "sidecar": [[_result(5.12 + i * 0.001) for i in range(99)] + [_result(None, ok=False)] for _ in range(rounds)],
    }
    s = llm_ttft.summarise(probes)
    side, nginx = s["paths"]["sidecar"], s["paths"]["nginx"]
    assert side["errors"] == rounds and side["probes"] == 99 * rounds and side["error_samples"]
    assert nginx["added_ttft_p50_ms"] == pytest.approx(0.05, abs=1e-9)
    assert side["added_ttft_p50_ms"] == pytest.approx(0.12, abs=0.002)
    assert len(side["added_ttft_p50_ms_by_round"]) == rounds
    assert s["sidecar_minus_nginx_added_p50_ms"] == pytest.approx(0.07, abs=0.002)
    assert s["goal"] == {"p50_within_nginx_plus_0_1_ms": True, "p99_under_1_ms": True, "met": True}
    low, high = s["sidecar_minus_nginx_added_p50_ms_ci95"]
    assert low <= 0.07 + 0.002 and high >= 0.07 - 0.002
    json.dumps(s)  # all of it goes into the JSON

    slow_tail = {**probes, "sidecar": [[_result(5.1 + (3.0 if i >= 97 else 0)) for i in range(100)]] * rounds}
    assert llm_ttft.summarise(slow_tail)["goal"]["p99_under_1_ms"] is False


def test_paired_interval_needs_pairs() -> None:
    assert llm_ttft.paired_diff_ci([1.0] * 10, [0.5] * 10, 50) is None
    a = [1.0 + 0.01 * (i % 7) for i in range(200)]
    b = [x - 0.3 for x in a]
    interval = llm_ttft.paired_diff_ci(a, b, 50)
    assert interval is not None
    low, high = interval
    assert low == pytest.approx(0.3) and high == pytest.approx(0.3)
    assert llm_ttft.paired_diff_ci([1.0, None] * 20, [None, 1.0] * 20, 50) is None  # no probe measured on both


def _cell(cpu_s: float, completions: int = 10, errors: int = 0) -> dict:
    return {
        "completions": completions,
        "errors": errors,
        "error_samples": [],
        "cpu_s": cpu_s,
        "wall_s": 5.0,
        "reads": [1001],
    }


def test_cpu_summary_ratios_and_goal() -> None:
    rounds = [
        {"nginx": _cell(0.10), "sidecar": _cell(0.25), "sidecar_no_log": _cell(0.15)},
        {"nginx": _cell(0.10), "sidecar": _cell(0.40), "sidecar_no_log": _cell(0.15)},
        {"nginx": _cell(0.10), "sidecar": _cell(0.28), "sidecar_no_log": _cell(0.15)},
    ]
    s = llm_capture_cpu.summarise(rounds, tokens=1000, idle={"nginx": 0.0, "sidecar": 0.001})
    assert s["paths"]["nginx"]["cpu_ms_per_completion_pooled"] == pytest.approx(10.0)
    assert s["paths"]["sidecar"]["cpu_ms_per_completion_median_of_rounds"] == pytest.approx(28.0)
    assert s["paths"]["sidecar"]["cpu_us_per_token_pooled"] == pytest.approx(31.0)
    assert s["paths"]["sidecar"]["idle_cpu_ms_per_s"] == pytest.approx(1.0)
    ratio = s["ratio_sidecar_to_nginx"]
    assert ratio["median_of_rounds"] == pytest.approx(2.8) and ratio["pooled"] == pytest.approx(3.1)
    assert s["goal"]["met"] is False  # the pooled ratio is past 3
    assert s["capture_cpu_ms_per_completion"] == pytest.approx(31.0 - 15.0)
    assert math.isnan(s["paths"]["sidecar_no_log"]["idle_cpu_ms_per_s"])  # not measured: said, not made up
    cheap = [{**r, "sidecar": _cell(0.2)} for r in rounds]
    assert llm_capture_cpu.summarise(cheap, 1000, {})["goal"]["met"] is True
