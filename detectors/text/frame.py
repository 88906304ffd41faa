"""A window of events as a text frame: one row per prompt (or answer), one column per text field.

The text detectors' counterpart of `infertap.detectors.decode.Decoder`, with the same result
type (`DecodedWindow`): `x` is a numpy object array of shape (rows, columns) whose cells are
the texts as logged (redaction placeholders included), `row_event[i]` the event of row `i`,
rejects with reasons of the decoder's closed set. Columns:

- text columns (features of `type: text`): `source: input` reads the request (the messages
  the feature's `messages` names, a completion's prompt, an embeddings input, V1/V2 strings),
  `source: output` the answer (the content of each choice of a reassembled `chat.completion`,
  a completion's text, V1/V2 strings). No feature listed: one column, `prompt` (requests) or
  `response` (responses); `prompt` and `response` when joined.
- the LLM response layout (`LLM_COLUMNS`, the LLMResponseSignals detector): the answer's text,
  finish reason, refusal, tool calls, output tokens (the `genaiusageoutputtokens` extension,
  else the body's `usage`) and status. Failed answers (status >= 400) are rows here (the error
  share counts them); the text layout leaves them out and counts them, as the numeric decoder.

Which layout a worker uses is the backend's (`frame_of` in the registry).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from infertap.detectors.decode import (
    DecodedWindow,
    DecodeError,
    Event,
    Record,
    Reject,
    _codec_reason,
    _is_v2,
    _parse,
)
from infertap.detectors.settings import EventMode, FeatureSettings, TextMessages
from infertap.detectors.text import extract
from infertap.serving.codec import CodecError, decode_v2_request, decode_v2_response

#: the LLM response layout's columns, in order
LLM_COLUMNS = ("response", "finish_reason", "refusal", "tool_calls", "output_tokens", "status")


@dataclass(frozen=True, slots=True)
class TextColumn:
    """One text column: its name, where its text comes from, which chat messages."""

    name: str
    source: str = "input"  # input: the request; output: the answer
    messages: TextMessages = "last_user"


def text_columns(features: Sequence[FeatureSettings], events: EventMode) -> list[TextColumn]:
    """The text columns of a spec's features (defaults when none is of type text)."""
    listed = [f for f in features if f.type == "text"]
    if listed:
        source = (lambda f: "output") if events == "response" else (lambda f: f.source)
        return [TextColumn(f.name, source(f), f.messages) for f in listed]
    if events == "request":
        return [TextColumn("prompt")]
    if events == "response":
        return [TextColumn("response", "output")]
    return [TextColumn("prompt"), TextColumn("response", "output")]


class TextDecoder:
    """Turns a window of events into a text frame (see the module docstring)."""

    def __init__(
        self,
        features: Sequence[FeatureSettings],
        events: EventMode = "request",
        input_name: str | None = None,
        output_name: str | None = None,
        llm: bool = False,
    ):
        if llm and events == "request":
            raise ValueError("the LLM response signals read answers: set source.events to response or joined")
        self.events_mode = events
        self.input_name, self.output_name = input_name, output_name
        self.llm = llm
        if llm:
            prompt = [c for c in text_columns(features, events) if c.source == "input"] if events == "joined" else []
            self.columns = prompt
            self.feature_names = list(LLM_COLUMNS) + [c.name for c in prompt]
        else:
            self.columns = text_columns(features, events)
            self.feature_names = [c.name for c in self.columns]

    def decode(self, events: Sequence[Event]) -> DecodedWindow:
        """One frame for the window; undecodable events become rejects, failed answers are
        left out (text layout) or rows with their status (LLM layout)."""
        rows: list[list[Any]] = []
        owners: list[int] = []
        kept: list[Event] = []
        rejects: list[Reject] = []
        failed: list[Event] = []
        for event in events:
            if event.failed and not self.llm:
                failed.append(event)
                continue
            try:
                event_rows = self._rows(event)
            except DecodeError as err:
                rejects.append(Reject(event.records[0], err.reason, err.message))
                continue
            owners += [len(kept)] * len(event_rows)
            rows += event_rows
            kept.append(event)
        width = len(self.feature_names)
        x = np.empty((len(rows), width), dtype=object)
        for i, row in enumerate(rows):  # assigned row by row: a list of lists would become a 2-D str array
            x[i, :] = row
        window = DecodedWindow(x, np.asarray(owners, dtype=np.int64), kept, list(self.feature_names), rejects)
        window.excluded["failed_response"] = len(failed)
        window.left_out += failed
        start, end = getattr(events, "start", None), getattr(events, "end", None)  # a time window's span
        if start is not None and end is not None:
            window.bounds = (start, end)
        return window

    # --- one event ----------------------------------------------------------------------

    def _rows(self, event: Event) -> list[list[Any]]:
        if self.events_mode == "request":
            return self._zip([self._request(event.records[0], c) for c in self.columns])
        if self.events_mode == "response":
            return self._answer_rows(event.records[0], [])
        request, response = event.request, event.response
        if request is None or response is None:
            raise DecodeError("no_response", "request without its response")
        prompts = [self._request(request, c) for c in self.columns if c.source == "input"]
        return self._answer_rows(response, prompts)

    def _zip(self, columns: list[list[str]]) -> list[list[Any]]:
        counts = {len(c) for c in columns}
        if len(counts) > 1:
            raise DecodeError("wrong_shape", f"text columns of one request have different row counts {sorted(counts)}")
        return [list(r) for r in zip(*columns, strict=True)]

    def _answer_rows(self, record: Record, prompts: list[list[str]]) -> list[list[Any]]:
        """Rows of an answer (and, joined, the prompts beside it)."""
        status = _status(record)
        if self.llm:
            facts = self._llm_rows(record, status)
            inputs = [extract.repeat_to(p, len(facts)) for p in prompts]
            if any(len(p) != len(facts) for p in inputs):
                raise DecodeError("wrong_shape", f"request has {len(inputs[0])} prompts, its answer {len(facts)}")
            return [f + [p[i] for p in inputs] for i, f in enumerate(facts)]
        outputs = [c for c in self.columns if c.source == "output"]
        texts = self._response_texts(record, outputs[0]) if outputs else []
        n = len(texts) if outputs else max((len(p) for p in prompts), default=0)
        repeated = iter([extract.repeat_to(p, n) for p in prompts])
        columns = [texts if c.source == "output" else next(repeated) for c in self.columns]
        return self._zip(columns)

    def _request(self, record: Record, column: TextColumn) -> list[str]:
        body = record.value or b""
        obj, header_length = _parse(body, record)
        if extract.is_openai_request(obj):
            return extract.request_texts(obj, column.messages, column.name)
        if isinstance(obj, dict) and _is_v2(obj.get("inputs")):
            try:
                request = decode_v2_request(body, header_length)
            except CodecError as err:
                raise DecodeError(_codec_reason(err), str(err)) from None
            return extract.tensor_texts({t.name: t.data for t in request.inputs}, self.input_name, column.name, "input")
        if header_length is not None:
            raise DecodeError("not_json", "binary body that is not a V2 request")
        return extract.v1_texts(obj, column.name)

    def _response_texts(self, record: Record, column: TextColumn) -> list[str]:
        body = record.value or b""
        obj, header_length = _parse(_sse_checked(record, body), record)
        if extract.is_openai_answer(obj):
            return [a.text for a in extract.answers(obj)]
        if isinstance(obj, dict) and isinstance(obj.get("outputs"), list):
            try:
                response = decode_v2_response(body, header_length)
            except CodecError as err:
                raise DecodeError(_codec_reason(err), str(err)) from None
            return extract.tensor_texts(
                {t.name: t.data for t in response.outputs}, self.output_name, column.name, "output"
            )
        return extract.v1_prediction_texts(obj, column.name)

    def _llm_rows(self, record: Record, status: int | None) -> list[list[Any]]:
        """[text, finish_reason, refusal, tool_calls, output_tokens, status] per choice."""
        failed = status is not None and status >= 400
        if failed:  # an error object, not an answer: one row that counts as an error
            return [["", None, None, 0, math.nan, status]]
        obj, _ = _parse(_sse_checked(record, record.value or b""), record)
        found = extract.answers(obj)
        tokens = _output_tokens(record, obj)
        share = tokens / len(found) if tokens is not None else math.nan
        return [[a.text, a.finish_reason, a.refusal, a.tool_calls, share, status] for a in found]


def _sse_checked(record: Record, body: bytes) -> bytes:
    """The body, unless the sidecar logged a stream it could not reassemble (raw SSE)."""
    reason = record.header("ce_capturereason")
    if reason is not None or (record.header("content-type") or "").startswith("text/event-stream"):
        raise DecodeError("not_json", f"a raw SSE stream the sidecar could not reassemble ({reason or 'no reason'})")
    return body


def _status(record: Record) -> int | None:
    raw = record.header("ce_statuscode")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _output_tokens(record: Record, obj: Any) -> float | None:
    """Output tokens of an answer: the sidecar's extension, else the body's usage."""
    raw = record.header("ce_genaiusageoutputtokens")
    if raw is not None:
        try:
            return float(int(raw))
        except ValueError:
            pass
    usage = obj.get("usage") if isinstance(obj, dict) else None
    if isinstance(usage, dict):
        for key in ("completion_tokens", "output_tokens"):
            value = usage.get(key)
            if isinstance(value, int):
                return float(value)
    return None
