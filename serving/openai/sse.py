"""Server-sent events as OpenAI streams them: `data: {json}\n\n` per chunk, `data: [DONE]\n\n` last."""

from __future__ import annotations

from pydantic import BaseModel

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
# No caching, and no buffering by nginx-style proxies: every chunk reaches the client as it is made.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(chunk: BaseModel) -> bytes:
    """One SSE event holding `chunk` as JSON (fields left at None stay out, except where OpenAI sends null)."""
    return b"data: " + chunk.model_dump_json().encode() + b"\n\n"


def raw_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"
