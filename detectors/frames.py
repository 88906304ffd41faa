"""Which frame a detector judges: numbers, text columns, or the LLM response layout.

A leaf module (it imports nothing of ours), so the settings can check a spec with it: a
registry backend's frame is `FRAMES` (nothing imported to know it); a
`package.module:Class` backend of one's own judges text when the spec lists features of
`type: text`. A spec that pairs text features with a numeric detector (or the reverse) fails
with one sentence when its settings are built, before any process starts. The decoder of
each frame: `infertap.detectors.framing.make_decoder`.
"""

from __future__ import annotations

from typing import Any, Literal

Frame = Literal["numeric", "text", "llm_response", "quality"]

#: registry backends that judge something other than numbers
FRAMES: dict[str, Frame] = {
    **dict.fromkeys(("TextMMDDrift", "TextClassifierDrift", "TextDescriptorDrift", "TextOOD", "TextSuite"), "text"),
    "LLMResponseSignals": "llm_response",
    "DataQuality": "quality",  # the values as sent, nulls and all (docs/data-quality.md)
}
TEXT_DETECTORS = tuple(name for name, frame in FRAMES.items() if frame in ("text", "llm_response"))


def frame_of(settings: Any) -> Frame:
    """The frame a `WorkerSettings`' detector judges; ValueError when its features do not fit it."""
    return check_frame(settings.detector, settings.features, settings.events)


def check_frame(detector: str, features: Any, events: str) -> Frame:
    """The frame `detector` judges, given features (objects with `name` and `type`) and the event mode;
    ValueError in one sentence when they do not fit (also the spec's check: `stack/specs/detector.py`)."""
    texts = [f.name for f in features if f.type == "text"]
    others = [f.name for f in features if f.type != "text"]
    if ":" in detector:
        frame: Frame = "text" if texts else "numeric"
    else:
        frame = FRAMES.get(detector, "numeric")
    if frame == "numeric" and texts:
        raise ValueError(
            f"features {texts} are of type text, but {detector} judges numbers: use a text detector "
            f"({', '.join(TEXT_DETECTORS)})"
        )
    if frame in ("text", "llm_response") and others:
        raise ValueError(f"{detector} judges text: features {others} must be of type text (or left out)")
    if frame == "llm_response" and events == "request":
        raise ValueError(f"{detector} reads answers: set source.events to response or joined")
    return frame
