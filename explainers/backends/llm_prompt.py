"""An LLM prompt cut into the segments an explanation attributes: words, sentences or whole messages.

A chat is rendered with the model's chat template (with the generation prompt, as the model
server renders it), with a marker in place of every message's content; the markers split the
rendered text into fixed pieces (role markers, special tokens) and contents. Each content of
an attributed role is cut into segments that cover it exactly (whitespace goes with the segment
before it), so the prompt is `pieces[0] + seg_0 + ... + pieces[-1]`, and a segment removed is
exactly that text gone. A template that does not place contents verbatim (one that trims or
rewrites them) is refused: what would be attributed would not be what the model saw.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infertap.explainers.errors import BadExplainRequest

SEGMENTATIONS = ("words", "sentences", "messages")
ROLES = ("system", "developer", "user", "assistant", "tool", "prompt")
_WORD = re.compile(r"\s*\S+\s*")
# a sentence ends at . ! ? (and closing quotes or brackets) before whitespace, or at a line break
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+|\n\s*")


@dataclass
class Segment:
    """One attributed part of the prompt."""

    text: str
    role: str
    message: int
    start: int  # offset in the message's content


@dataclass
class Prompt:
    """A prompt as fixed pieces around its segments, and how its text is tokenized."""

    pieces: list[str]  # len(segments) + 1
    segments: list[Segment]
    add_special_tokens: bool  # a chat template writes its own special tokens; a plain prompt gets the tokenizer's
    spans: list[tuple[int, int]] = field(default_factory=list)  # each segment's (start, end) in `text`

    def __post_init__(self) -> None:
        position, self.spans = len(self.pieces[0]), []
        for segment, piece in zip(self.segments, self.pieces[1:], strict=True):
            self.spans.append((position, position + len(segment.text)))
            position += len(segment.text) + len(piece)

    def render(self, *values: str) -> str:
        """The prompt with `values` in place of the segments (the template captum perturbs)."""
        out = [self.pieces[0]]
        for value, piece in zip(values, self.pieces[1:], strict=True):
            out += [value, piece]
        return "".join(out)

    @property
    def text(self) -> str:
        return self.render(*(s.text for s in self.segments))


def split(content: str, how: str) -> list[tuple[int, int]]:
    """(start, end) of each segment of `content`, covering it exactly; none for blank content."""
    if not content.strip():
        return []
    if how == "messages":
        return [(0, len(content))]
    if how == "words":
        ends = [m.end() for m in _WORD.finditer(content)]
    elif how == "sentences":
        ends = [m.end() for m in _SENTENCE_END.finditer(content)] + [len(content)]
    else:
        raise BadExplainRequest(f"segments must be one of {', '.join(SEGMENTATIONS)}, got {how!r}")
    ends[-1] = len(content)  # trailing whitespace belongs to the last segment
    out, start = [], 0
    for end in ends:
        if end > start:
            out.append((start, end))
            start = end
    return out


def _cut(content: str, role: str, message: int, how: str) -> tuple[list[Segment], list[str]]:
    """Segments of one content and the (empty) pieces between them; the content whole when not attributed."""
    spans = split(content, how)
    segments = [Segment(content[a:b], role, message, a) for a, b in spans]
    return segments, [""] * max(0, len(segments) - 1)


def plain_prompt(prompt: str, how: str) -> Prompt:
    """A completions prompt (role `prompt`), tokenized with the tokenizer's special tokens, as the server does."""
    segments, between = _cut(prompt, "prompt", 0, how)
    if not segments:
        return Prompt([prompt], [], add_special_tokens=True)
    return Prompt(["", *between, ""], segments, add_special_tokens=True)


def chat_prompt(
    render: Callable[[list[dict[str, Any]]], str], messages: list[dict[str, Any]], how: str, roles: set[str]
) -> Prompt:
    """A chat rendered by `render` (the chat template with the generation prompt), cut at its contents.

    Messages of roles outside `roles` stay fixed text. BadExplainRequest when the template does not
    put each content in the prompt verbatim, once.
    """
    markers = [f"\x00infertap-content-{i}\x00" for i in range(len(messages))]
    marked = render([m | {"content": marker} for m, marker in zip(messages, markers, strict=True)])
    parts = re.split("\x00infertap-content-(\\d+)\x00", marked)
    order = [int(i) for i in parts[1::2]]
    if order != list(range(len(messages))):
        raise BadExplainRequest(
            "the model's chat template does not place every message's content in the prompt once, in order; "
            "it cannot be segmented (explain a completions prompt instead)"
        )
    pieces, segments = [parts[0]], []
    for i, after in zip(order, parts[2::2], strict=True):
        content, role = str(messages[i].get("content") or ""), str(messages[i]["role"])
        cut, between = _cut(content, role, i, how) if role in roles else ([], [])
        if not cut:
            pieces[-1] += content + after
            continue
        segments += cut
        pieces += [*between, after]
    prompt = Prompt(pieces, segments, add_special_tokens=False)
    if prompt.text != render(messages):
        raise BadExplainRequest(
            "the model's chat template changes message content (it trims or rewrites it), so the prompt "
            "cannot be cut into segments the model sees verbatim"
        )
    return prompt
