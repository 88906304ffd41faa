"""Text out of the bodies the logger writes: OpenAI requests and answers, V1 and V2 tensors.

Pure functions over parsed JSON (and decoded V2 tensors); each returns the texts of one body,
one per row, or raises `DecodeError` with a reason of the decoder's closed set. Nothing here
changes a text: the placeholders the sidecar's redaction wrote (`[REDACTED:email]`) stay as
they are, so every text a detection shows is the text as logged.

Requests:
- chat/completions (`messages`): the messages a text column asks for (`messages`): the last
  user message (default), every user message, the system (and `developer`) messages, or the
  whole conversation in order; content as a string or as parts (`{"type": "text", ...}`,
  other parts such as images are skipped). One row.
- completions (`prompt`): a string is one row, a list of strings one row each; token-id
  prompts carry no text (`wrong_shape`).
- embeddings (`input`): a string or a list of strings, one row each.
- V1 `instances` / `inputs`: strings, one-string rows, or objects with the column's key
  (or `text`); columnar `inputs: {name: [...]}`. V2 `inputs`: a BYTES tensor (UTF-8).

Answers (`choices`, the reassembled `chat.completion` / `text_completion`): one row per
choice, in index order, with its finish reason and refusal. V1 `predictions` of strings and
V2 BYTES outputs give their texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from infertap.detectors.decode import DecodeError
from infertap.detectors.settings import TextMessages

#: keys of a V1 row object that hold its text, after the column's own name
TEXT_KEYS = ("text", "prompt", "input", "content")


@dataclass(slots=True)
class Answer:
    """One choice of an OpenAI answer: its text and what else the response signals need."""

    text: str
    finish_reason: str | None = None
    refusal: str | None = None
    tool_calls: int = 0


# --- requests -----------------------------------------------------------------------------


def is_openai_request(obj: Any) -> bool:
    """A chat, completions or embeddings request body (as opposed to V1/V2 tensors)."""
    return isinstance(obj, dict) and (
        isinstance(obj.get("messages"), list) or "prompt" in obj or ("input" in obj and "inputs" not in obj)
    )


def request_texts(obj: Any, messages: TextMessages = "last_user", column: str = "text") -> list[str]:
    """The texts of an OpenAI request body (chat, completions, embeddings), one per row."""
    if not isinstance(obj, dict):
        raise DecodeError("wrong_shape", "a request body must be a JSON object")
    if isinstance(obj.get("messages"), list):
        return [chat_text(obj["messages"], messages)]
    if "prompt" in obj:
        return _strings(obj["prompt"], "prompt")
    if "input" in obj:
        return _strings(obj["input"], "input")
    raise DecodeError("wrong_shape", 'not an OpenAI request: no "messages", "prompt" or "input"')


def chat_text(messages: list[Any], which: TextMessages) -> str:
    """The text of the chat messages `which` selects; `wrong_shape` when there is none."""
    picked: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            raise DecodeError("wrong_shape", "chat messages must be objects with a role and content")
        role = message.get("role")
        text = content_text(message.get("content"))
        if text is None:
            continue
        if which == "conversation" or (which == "system" and role in ("system", "developer")):
            picked.append(text)
        elif role == "user" and which in ("user", "last_user"):
            picked.append(text)
    if not picked:
        wanted = {"last_user": "user", "user": "user", "system": "system", "conversation": "any"}[which]
        raise DecodeError("wrong_shape", f"the chat request has no {wanted} message with text")
    return picked[-1] if which == "last_user" else "\n".join(picked)


def content_text(content: Any) -> str | None:
    """A message's content as text: a string, or its text parts joined (None: no text)."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text") and "text" in p
        ]
        if not all(isinstance(p, str) for p in parts):
            raise DecodeError("bad_value", "a text part of a message holds something other than a string")
        return "\n".join(parts) if parts else None
    raise DecodeError("bad_value", f"message content must be a string or a list of parts, got {type(content).__name__}")


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list) and value and all(isinstance(v, (int, list)) for v in value):
        raise DecodeError("wrong_shape", f"{what!r} holds token ids, not text")
    raise DecodeError("wrong_shape", f"{what!r} must be a string or a non-empty list of strings")


def v1_texts(obj: Any, column: str) -> list[str]:
    """The texts of a V1 body: `instances` or `inputs` as strings, one-string rows, objects or columns."""
    if not isinstance(obj, dict):
        raise DecodeError("wrong_shape", "a V1 body must be a JSON object")
    has_instances, has_inputs = "instances" in obj, "inputs" in obj
    if has_instances == has_inputs:
        raise DecodeError("wrong_shape", 'V1 body needs exactly one of "instances" or "inputs"')
    value = obj["instances" if has_instances else "inputs"]
    if isinstance(value, dict):  # columnar V1 inputs: {name: [values]}
        key = _text_key(value, column)
        return _each_string(value[key], f"inputs[{key!r}]")
    if not isinstance(value, list) or not value:
        raise DecodeError("wrong_shape", "instances must be a non-empty list")
    rows = []
    for row in value:
        if isinstance(row, dict):
            row = row[_text_key(row, column)]
        elif isinstance(row, list):
            if len(row) != 1:
                raise DecodeError("wrong_feature_count", f"a text row holds one string, got {len(row)} values")
            row = row[0]
        rows.append(row)
    return _each_string(rows, "instances")


def _text_key(row: dict, column: str) -> str:
    for key in (column, *TEXT_KEYS):
        if key in row:
            return key
    strings = [k for k, v in row.items() if isinstance(v, (str, list))]
    if len(strings) == 1:
        return strings[0]
    raise DecodeError("wrong_feature_count", f"no text field {column!r} (nor {', '.join(TEXT_KEYS)}) in {sorted(row)}")


def _each_string(values: Any, what: str) -> list[str]:
    if not isinstance(values, list) or not values:
        raise DecodeError("wrong_shape", f"{what} must be a non-empty list of strings")
    for v in values:
        if not isinstance(v, str):
            raise DecodeError("bad_value", f"{what} holds a {type(v).__name__}, not text")
    return list(values)


def tensor_texts(tensors: dict[str, np.ndarray], name: str | None, column: str, what: str) -> list[str]:
    """The strings of a V2 BYTES tensor (by name, else the column's name, else the first BYTES one)."""
    if name is not None and name not in tensors:
        raise DecodeError("wrong_shape", f"no {what} tensor named {name!r} (got {sorted(tensors)})")
    if name is None:
        texts = [n for n, t in tensors.items() if t.dtype == object]
        name = column if column in texts else (texts[0] if texts else None)
        if name is None:
            raise DecodeError("wrong_shape", f"no BYTES {what} tensor (got {sorted(tensors)})")
    out = []
    for item in np.asarray(tensors[name]).reshape(-1).tolist():
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError("bad_value", f"{what} tensor {name!r} holds bytes that are not UTF-8") from None
        if not isinstance(item, str):
            raise DecodeError("bad_value", f"{what} tensor {name!r} holds numbers, not text")
        out.append(item)
    if not out:
        raise DecodeError("wrong_shape", f"{what} tensor {name!r} is empty")
    return out


# --- answers ------------------------------------------------------------------------------


def is_openai_answer(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("choices"), list)


def answers(obj: Any) -> list[Answer]:
    """The choices of an OpenAI answer (chat.completion or text_completion), in index order."""
    if not is_openai_answer(obj):
        raise DecodeError("wrong_shape", 'not an OpenAI answer: no "choices"')
    choices = [c for c in obj["choices"] if isinstance(c, dict)]
    if not choices:
        raise DecodeError("wrong_shape", "the answer has no choices")
    out = []
    for choice in sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0):
        message = choice.get("message")
        refusal = None
        tools = 0
        if isinstance(message, dict):
            text = content_text(message.get("content")) or ""
            refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
            calls = message.get("tool_calls")
            tools = len(calls) if isinstance(calls, list) else 0
        else:
            raw = choice.get("text", "")
            if not isinstance(raw, str):
                raise DecodeError("bad_value", "a completion choice's text is not a string")
            text = raw
        reason = choice.get("finish_reason")
        out.append(Answer(text, reason if isinstance(reason, str) else None, refusal, tools))
    return out


def v1_prediction_texts(obj: Any, column: str) -> list[str]:
    """The texts of a V1 answer: `predictions` of strings, one-string rows or objects."""
    if not isinstance(obj, dict) or "predictions" not in obj:
        raise DecodeError(
            "wrong_shape", 'response has neither "choices" (OpenAI), "predictions" (V1) nor "outputs" (V2)'
        )
    return v1_texts({"instances": obj["predictions"]}, column)


def repeat_to(rows: Sequence[str], n: int) -> list[str]:
    """A request's one row beside an answer of `n` choices: the prompt of each of them."""
    return list(rows) * n if len(rows) == 1 else list(rows)
