"""What the tap knows of the OpenAI protocol: which paths are OpenAI calls, an incremental
Server-Sent Events parser, and the reassembly of a streamed answer into the one object a
non-streamed call would have returned. See docs/llm-capture.md.

- **Detection** is one dict lookup on the request path (`operation_of`), done once per
  request in `Tap.begin`: `/openai/v1/...` (KServe's prefix) and `/v1/...` (vLLM's)
  `chat/completions`, `completions` and `embeddings`. Everything else keeps the tap's
  byte-copy path and costs nothing more.
- **Streams** (`text/event-stream`) still go to the client chunk by chunk, as they come: the
  forwarding path writes each chunk to the client first and feeds a copy to `Capture.feed`.
  The parser keeps only the unfinished tail of a line; the reassembled content is capped at
  the tap's `max_event_body_bytes` (then `bodytruncated`), so memory stays bounded whatever
  the stream's length.
- **Reassembly** (`StreamAssembler`): `chat.completion.chunk` -> `chat.completion`
  (per choice: role, content, tool calls assembled from their deltas by index, finish
  reason, refusal), `text_completion` chunks -> `text_completion` (text per choice);
  `usage` from the last chunk that carries it (`stream_options.include_usage`, or a
  runtime reporting it on every chunk). Without any, output tokens are estimated as the
  number of chunks that carried content (one token per chunk, as vLLM and our runtime
  send them) and the event says `genaiusagesource: "estimate"`.
- **Malformed streams** (a chunk that is not JSON, no `data: [DONE]`, a line longer than the
  cap): the client got the bytes as they came; the event carries the raw SSE (content type
  `text/event-stream`) and `capturereason` says why. Never an exception on the hop.
- **Interrupted streams**: when the client leaves (or the upstream breaks) mid-stream, the
  partial completion is logged, with `client_disconnected` (`upstream_error`) as the finish
  reason of every choice that had none yet.
"""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["OPERATIONS", "Capture", "SSEParser", "StreamAssembler", "operation_of"]

#: path -> gen_ai.operation.name
OPERATIONS: dict[str, str] = {}
for _prefix in ("/openai/v1/", "/v1/"):
    OPERATIONS[_prefix + "chat/completions"] = "chat"
    OPERATIONS[_prefix + "completions"] = "text_completion"
    OPERATIONS[_prefix + "embeddings"] = "embeddings"

CLIENT_DISCONNECTED = "client_disconnected"
UPSTREAM_ERROR = "upstream_error"


def operation_of(path: str) -> str | None:
    """`chat`, `text_completion`, `embeddings` for an OpenAI path, else None (one dict lookup)."""
    return OPERATIONS.get(path)


class MalformedStream(ValueError):
    """The stream cannot be reassembled; the message is the `capturereason`."""


_DECODER = json.JSONDecoder()  # what `json.loads` decodes with when given no options


def _chunk_json(data: bytes) -> Any:
    """`json.loads(data)`, with what it does before decoding skipped for the common chunk.

    A chunk starting `{` then a non-zero byte is UTF-8 to `json.detect_encoding`, so it is
    decoded as `json.loads` would (`surrogatepass`) and handed to the decoder's `raw_decode`;
    anything else (a BOM, UTF-16, whitespace around the value, no value) takes `json.loads`
    itself, which accepts or raises exactly as before. Saves about a fifth of the cost of a
    chunk's parse (`benchmarks/llm_capture_cpu.py`)."""
    if data[:1] == b"{" and data[1:2] != b"\x00":
        text = data.decode("utf-8", "surrogatepass")
        obj, end = _DECODER.raw_decode(text)
        if end == len(text):
            return obj
    return json.loads(data)


class SSEParser:
    """Incremental `text/event-stream` parser (WHATWG rules for `data:` lines): `feed(bytes)`
    returns the data payloads of the events completed by those bytes. Only the unfinished
    line is buffered, at most `max_line` bytes (past that: `MalformedStream`)."""

    __slots__ = ("_tail", "_data", "max_line")

    def __init__(self, max_line: int = 16 * 1024 * 1024):
        self._tail = b""
        self._data: list[bytes] = []
        self.max_line = max_line

    def feed(self, chunk: bytes) -> list[bytes]:
        if (  # one whole `data: ...` event and nothing else, as runtimes send a token: no split, no loop
            not self._tail
            and not self._data
            and chunk.startswith(b"data: ")
            and chunk.find(b"\n") == len(chunk) - 2
            and chunk.endswith(b"\n\n")
            and chunk[-3:-2] != b"\r"
        ):
            return [chunk[6:-2]]
        buf = self._tail + chunk if self._tail else chunk
        lines = buf.split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > self.max_line:
            raise MalformedStream("sse_line_too_long")
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:  # a blank line dispatches the event
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data = self._data = []
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # comments (":...") and other fields (event, id, retry) carry nothing we assemble
        return events

    def close(self) -> list[bytes]:
        """Events left at the end of the stream (a last event without its blank line)."""
        tail, self._tail = self._tail, b""
        events = self.feed(tail + b"\n\n") if tail or self._data else []
        return events

    @property
    def pending(self) -> bool:
        return bool(self._tail.strip() or self._data)


class _Choice:
    __slots__ = ("index", "role", "parts", "refusal", "tools", "finish_reason", "logprobs")

    def __init__(self, index: int):
        self.index = index
        self.role: str | None = None
        self.parts: list[str] = []
        self.refusal: list[str] = []
        self.tools: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.logprobs: list[Any] = []


class StreamAssembler:
    """Chunks of a streamed chat or text completion -> the non-streamed object."""

    def __init__(self, max_chars: int, started: float):
        self.max_chars = max_chars
        self.started = started
        self.object: str | None = None
        self.head: dict[str, Any] = {}
        self.choices: dict[int, _Choice] = {}
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.chars = 0
        self.truncated = False
        self.content_chunks = 0  # chunks carrying content: the token estimate without usage
        self.first_token: float | None = None
        self.last_token: float | None = None

    def event(self, data: bytes, t: float) -> None:
        """One event's data, `t` the `perf_counter()` arrival of the chunk that completed it."""
        if self.done:
            return
        if data[:1] != b"{" and data.strip() == b"[DONE]":
            self.done = True
            return
        try:
            chunk = _chunk_json(data)
        except ValueError:
            raise MalformedStream("sse_chunk_not_json") from None
        if not isinstance(chunk, dict):
            raise MalformedStream("sse_chunk_not_object")
        if "error" in chunk and "choices" not in chunk:  # an error event mid-stream (vLLM, OpenAI)
            self.head.setdefault("error", chunk["error"])
            return
        if self.object is None:
            self.object = chunk.get("object") or "chat.completion.chunk"
            for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
                if key in chunk:
                    self.head[key] = chunk[key]
        elif "model" in chunk and "model" not in self.head:
            self.head["model"] = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            if choices is None:
                return
            raise MalformedStream("sse_choices_not_list")
        token = False
        for c in choices:
            if not isinstance(c, dict):
                raise MalformedStream("sse_choice_not_object")
            index = c.get("index", 0)
            if not isinstance(index, int):
                raise MalformedStream("sse_choice_index")
            choice = self.choices.get(index)
            if choice is None:
                choice = self.choices[index] = _Choice(index)
            if c.get("finish_reason"):
                choice.finish_reason = c["finish_reason"]
            logprobs = c.get("logprobs")
            if logprobs:
                choice.logprobs.append(logprobs)
            delta = c.get("delta")
            if isinstance(delta, dict):  # chat
                if delta.get("role"):
                    choice.role = delta["role"]
                content = delta.get("content")
                if content:
                    token = True
                    if content.__class__ is str and len(content) <= self.max_chars - self.chars:
                        choice.parts.append(content)  # `_append`'s common case, without the call
                        self.chars += len(content)
                    else:
                        self._append(choice.parts, content)
                refusal = delta.get("refusal")
                if refusal:
                    token = True
                    self._append(choice.refusal, refusal)
                calls = delta.get("tool_calls")
                if calls:
                    token = True
                    self._tool_calls(choice, calls)
            else:  # text completion
                text = c.get("text")
                if text:
                    token = True
                    self._append(choice.parts, text)
        if token:
            self.content_chunks += 1
            if self.first_token is None:
                self.first_token = t
            self.last_token = t

    def _append(self, parts: list[str], text: Any) -> None:
        if not isinstance(text, str):
            raise MalformedStream("sse_content_not_string")
        room = self.max_chars - self.chars
        if len(text) > room:
            self.truncated = True
            text = text[: max(room, 0)]
        if text:
            parts.append(text)
            self.chars += len(text)

    def _tool_calls(self, choice: _Choice, calls: Any) -> None:
        if not isinstance(calls, list):
            raise MalformedStream("sse_tool_calls_not_list")
        for call in calls:
            if not isinstance(call, dict):
                raise MalformedStream("sse_tool_call_not_object")
            index = call.get("index", len(choice.tools))
            slot = choice.tools.get(index)
            if slot is None:
                slot = choice.tools[index] = {"id": None, "type": "function", "name": "", "arguments": []}
            if call.get("id"):
                slot["id"] = call["id"]
            if call.get("type"):
                slot["type"] = call["type"]
            fn = call.get("function")
            if isinstance(fn, dict):
                if fn.get("name"):
                    slot["name"] += fn["name"]
                if fn.get("arguments"):
                    self._append(slot["arguments"], fn["arguments"])

    def interrupt(self, reason: str) -> None:
        """The stream ended early: every choice without a finish reason gets `reason`."""
        if not self.choices:
            self.choices[0] = _Choice(0)
        for choice in self.choices.values():
            if choice.finish_reason is None:
                choice.finish_reason = reason

    @property
    def finish_reasons(self) -> list[str]:
        return [str(self.choices[i].finish_reason) for i in sorted(self.choices) if self.choices[i].finish_reason]

    def result(self) -> dict[str, Any]:
        chat = self.object != "text_completion"
        out: dict[str, Any] = {"id": self.head.get("id"), "object": "chat.completion" if chat else "text_completion"}
        for key in ("created", "model", "system_fingerprint", "service_tier"):
            if key in self.head:
                out[key] = self.head[key]
        choices = []
        for i in sorted(self.choices):
            c = self.choices[i]
            item: dict[str, Any] = {"index": i}
            if chat:
                message: dict[str, Any] = {"role": c.role or "assistant", "content": "".join(c.parts) or None}
                if c.refusal:
                    message["refusal"] = "".join(c.refusal)
                if c.tools:
                    message["tool_calls"] = [
                        {
                            "id": t["id"],
                            "type": t["type"],
                            "function": {"name": t["name"], "arguments": "".join(t["arguments"])},
                        }
                        for _, t in sorted(c.tools.items())
                    ]
                item["message"] = message
            else:
                item["text"] = "".join(c.parts)
            if c.logprobs:
                item["logprobs"] = _merge_logprobs(c.logprobs)
            item["finish_reason"] = c.finish_reason
            choices.append(item)
        out["choices"] = choices
        if self.usage is not None:
            out["usage"] = self.usage
        if "error" in self.head:
            out["error"] = self.head["error"]
        return out


def _merge_logprobs(pieces: list[Any]) -> Any:
    """Chat logprobs `{"content": [...]}` concatenated; anything else kept as the list of pieces."""
    if all(isinstance(p, dict) and isinstance(p.get("content"), list) for p in pieces):
        return {"content": [t for p in pieces for t in p["content"]]}
    return pieces


def usage_counts(usage: Any) -> tuple[int | None, int | None]:
    """(input, output) tokens of an OpenAI `usage` (vLLM's deprecated names taken too)."""
    if not isinstance(usage, dict):
        return None, None
    inp = usage.get("prompt_tokens", usage.get("input_tokens", usage.get("gen_ai.usage.prompt_tokens")))
    out = usage.get("completion_tokens", usage.get("output_tokens", usage.get("gen_ai.usage.completion_tokens")))
    return (inp if isinstance(inp, int) else None), (out if isinstance(out, int) else None)


class Capture:
    """One OpenAI exchange as the tap sees it: what the request asked for, the response fed
    chunk by chunk, and at the end the event body and the GenAI facts (`Capture.finish`)."""

    __slots__ = (
        "operation",
        "request",
        "started",
        "max_body",
        "stream",
        "parser",
        "assembler",
        "reason",
        "interrupted",
        "ended",
        "json_parts",
        "json_size",
        "trace",
        "pending",
        "stamps",
        "pending_size",
    )

    def __init__(self, operation: str, request_body: bytes, max_body: int, started: float | None = None):
        self.operation = operation
        self.started = time.perf_counter() if started is None else started
        self.max_body = max_body
        try:
            request = json.loads(request_body) if request_body else {}
        except ValueError:
            request = {}
        self.request: dict[str, Any] = request if isinstance(request, dict) else {}
        self.stream: bool | None = None  # decided by the response's content type (or its first bytes)
        self.parser: SSEParser | None = None
        self.assembler: StreamAssembler | None = None
        self.reason: str | None = None  # why the stream could not be reassembled
        self.interrupted: str | None = None
        self.ended: float | None = None
        self.json_parts: list[bytes] | None = None
        self.json_size = 0
        # the request's W3C trace context ({"traceparent": ..., "tracestate": ...}), kept only
        # when spans are exported (`infertap.sidecar.llm_otel`): the call's span is its child
        self.trace: dict[str, str] | None = None
        # stream chunks not parsed yet and their arrival times (`feed`, `_drain`)
        self.pending: list[bytes] = []
        self.stamps: list[float] = []
        self.pending_size = 0

    # --- facts of the request ---------------------------------------------------------------

    @property
    def request_model(self) -> str | None:
        model = self.request.get("model")
        return model if isinstance(model, str) else None

    @property
    def request_stream(self) -> bool:
        return self.request.get("stream") is True

    # --- the response, as it streams --------------------------------------------------------

    def response_head(self, content_type: bytes | None) -> None:
        if content_type is not None:
            self.stream = content_type.split(b";", 1)[0].strip().lower() == b"text/event-stream"

    # a stream is parsed in batches of this many chunks, or of this many bytes buffered
    BATCH_CHUNKS = 64
    BATCH_BYTES = 64 * 1024

    def feed(self, chunk: bytes) -> None:
        """One body chunk as it went to the client; never raises.

        A stream's chunk is only recorded with its arrival time: the parser and the assembler
        run over a batch at a time (`_drain`), in one loop with its lookups hoisted, not once
        per chunk on the way to the client. TTFT and time per output token use the recorded
        arrival times, so they measure what they did."""
        if chunk.__class__ is not bytes:
            chunk = bytes(chunk)
        if self.stream is None:  # no content type seen (a response passed as is): sniff
            head = chunk.lstrip()[:6]
            self.stream = head.startswith((b"data:", b":", b"event:", b"id:")) if head else None
            if self.stream is None:
                return
        if not self.stream:
            if self.json_parts is None:
                self.json_parts = []
            if self.json_size < self.max_body:
                self.json_parts.append(chunk)
                self.json_size += len(chunk)
            return
        if self.reason is not None:
            return
        self.pending.append(chunk)
        self.stamps.append(time.perf_counter())
        self.pending_size += len(chunk)
        if len(self.pending) >= self.BATCH_CHUNKS or self.pending_size >= self.BATCH_BYTES:
            self._drain()

    def _drain(self) -> None:
        """Parse and assemble the chunks `feed` recorded, in order; a malformed one stops it
        there (`reason`), as it stopped the per-chunk parse."""
        pending, stamps = self.pending, self.stamps
        if not pending:
            return
        self.pending, self.stamps, self.pending_size = [], [], 0
        if self.reason is not None:
            return
        if self.parser is None:
            self.parser = SSEParser(max(self.max_body, 1 << 20))  # one line (one chunk) at most
            self.assembler = StreamAssembler(self.max_body, self.started)
        parse, assembler = self.parser.feed, self.assembler
        assert assembler is not None
        event = assembler.event
        try:
            for chunk, t in zip(pending, stamps, strict=True):
                for data in parse(chunk):
                    event(data, t)
        except MalformedStream as exc:
            self.reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - whatever a stream holds, the hop goes on
            self.reason = f"sse_unexpected: {type(exc).__name__}"

    def interrupt(self, reason: str) -> None:
        if self.interrupted is None:
            self.interrupted = reason

    # --- the end ----------------------------------------------------------------------------

    def finish(self) -> Outcome:
        """The response's body to log and its GenAI facts."""
        self.ended = time.perf_counter()
        self._drain()
        out = Outcome(self)
        if self.stream and self.reason is None and self.assembler is not None and self.parser is not None:
            assembler = self.assembler
            try:  # an interrupted stream's unfinished last line is dropped, not parsed
                for data in self.parser.close() if self.interrupted is None else ():
                    assembler.event(data, self.ended)
            except MalformedStream as exc:
                self.reason = str(exc)
            if self.reason is None:
                if self.interrupted is not None:
                    assembler.interrupt(self.interrupted)
                elif not assembler.done:
                    self.reason = "sse_no_done"
            if self.reason is None:
                out.object = assembler.result()
                out.truncated = assembler.truncated
                out.finish_reasons = assembler.finish_reasons
                out.first_token = assembler.first_token
                out.last_token = assembler.last_token
                out.response_model = assembler.head.get("model")
                out.response_id = assembler.head.get("id")
                out.input_tokens, out.output_tokens = usage_counts(assembler.usage)
                if out.output_tokens is None and self.operation != "embeddings":
                    out.output_tokens, out.usage_source = assembler.content_chunks, "estimate"
                elif out.output_tokens is not None:
                    out.usage_source = "runtime"
            return out
        if self.stream:  # a stream that could not be reassembled, or had nothing in it
            if self.reason is None:
                self.reason = "sse_empty"
            return out
        if self.json_parts is not None and self.json_size <= self.max_body:
            try:
                answer = json.loads(b"".join(self.json_parts))
            except ValueError:
                return out
            if isinstance(answer, dict):
                out.parsed = answer
                out.response_model = answer.get("model") if isinstance(answer.get("model"), str) else None
                out.response_id = answer.get("id") if isinstance(answer.get("id"), str) else None
                out.input_tokens, out.output_tokens = usage_counts(answer.get("usage"))
                if out.input_tokens is not None or out.output_tokens is not None:
                    out.usage_source = "runtime"
                choices = answer.get("choices")
                if isinstance(choices, list):
                    out.finish_reasons = [
                        str(c["finish_reason"]) for c in choices if isinstance(c, dict) and c.get("finish_reason")
                    ]
                if self.interrupted is not None:
                    out.finish_reasons = [self.interrupted]
        elif self.interrupted is not None:
            out.finish_reasons = [self.interrupted]
        return out


class Outcome:
    """What `Capture.finish` found: the reassembled object (None: log the bytes as they came)
    and the GenAI facts for the event's extensions and the metrics."""

    __slots__ = (
        "capture",
        "object",
        "parsed",
        "truncated",
        "finish_reasons",
        "first_token",
        "last_token",
        "response_model",
        "response_id",
        "input_tokens",
        "output_tokens",
        "usage_source",
    )

    def __init__(self, capture: Capture):
        self.capture = capture
        self.object: dict[str, Any] | None = None  # a reassembled stream
        self.parsed: dict[str, Any] | None = None  # a non-streamed JSON answer, as parsed
        self.truncated = False
        self.finish_reasons: list[str] = []
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.usage_source: str | None = None

    @property
    def ttft(self) -> float | None:
        """Seconds from the request's arrival at the sidecar to the first content chunk."""
        return None if self.first_token is None else self.first_token - self.capture.started

    @property
    def tpot(self) -> float | None:
        """Seconds per output token after the first (OTel's `time_per_output_token`)."""
        n = self.output_tokens
        if self.first_token is None or self.last_token is None or not n or n < 2:
            return None
        return (self.last_token - self.first_token) / (n - 1)

    @property
    def duration(self) -> float:
        ended = self.capture.ended or time.perf_counter()
        return ended - self.capture.started

    def extensions(self) -> dict[str, Any]:
        """The response event's GenAI extensions (docs/llm-capture.md has the mapping)."""
        c = self.capture
        ext: dict[str, Any] = {"genaioperationname": c.operation, "genairequeststream": _bool(c.request_stream)}
        if c.request_model:
            ext["genairequestmodel"] = c.request_model
        if self.response_model:
            ext["genairesponsemodel"] = str(self.response_model)
        if self.response_id:
            ext["genairesponseid"] = str(self.response_id)
        if self.finish_reasons:
            ext["genairesponsefinishreasons"] = json.dumps(self.finish_reasons, separators=(",", ":"))
        if self.input_tokens is not None:
            ext["genaiusageinputtokens"] = self.input_tokens
        if self.output_tokens is not None:
            ext["genaiusageoutputtokens"] = self.output_tokens
        if self.usage_source:
            ext["genaiusagesource"] = self.usage_source
        ttft, tpot = self.ttft, self.tpot
        if ttft is not None:
            ext["genaiservertimetofirsttoken"] = f"{ttft:.6f}"
        if tpot is not None:
            ext["genaiservertimeperoutputtoken"] = f"{tpot:.6f}"
        ext["genaiserverrequestduration"] = f"{self.duration:.6f}"
        if c.reason is not None:
            ext["capturereason"] = c.reason
        return ext


def request_extensions(capture: Capture) -> dict[str, Any]:
    """The request event's GenAI extensions."""
    ext: dict[str, Any] = {"genaioperationname": capture.operation, "genairequeststream": _bool(capture.request_stream)}
    if capture.request_model:
        ext["genairequestmodel"] = capture.request_model
    return ext


def _bool(value: bool) -> str:
    """CloudEvents booleans on the wire are `true`/`false` (the Kafka binding would write `True`)."""
    return "true" if value else "false"
