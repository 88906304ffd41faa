"""OpenAI-compatible endpoints of the model server (huggingface models): protocol models, router, SSE."""

from __future__ import annotations

from infertap.serving.openai.protocol import SCHEMA_MODELS
from infertap.serving.openai.router import openai_router, serves_openai

__all__ = ["SCHEMA_MODELS", "openai_router", "serves_openai"]
