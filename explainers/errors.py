"""Errors the explainer server turns into HTTP answers (or a startup failure)."""

from __future__ import annotations


class ExplainerError(Exception):
    """Base class; `status` is the HTTP status the server answers with."""

    status = 500


class BadExplainRequest(ExplainerError):
    """The request does not fit the explainer (shape, feature count, limits, parameters): HTTP 400."""

    status = 400


class ModelNotFound(ExplainerError):
    """No explainer for that model name: HTTP 404."""

    status = 404


class DeadlineExceeded(ExplainerError):
    """The explanation did not finish within the request's deadline: HTTP 504."""

    status = 504


class OutOfMemory(ExplainerError):
    """The explanation ran out of memory: HTTP 503 (the server frees it and keeps serving)."""

    status = 503


class PredictorError(ExplainerError):
    """The predictor behind a black-box explainer failed or could not be reached: HTTP 502."""

    status = 502


class ExplainerLoadError(RuntimeError):
    """The explainer cannot start (missing file, refused pickle, missing extra); the process exits with it."""


class MissingExtra(ExplainerLoadError):
    """A library the backend needs is not installed: one sentence naming the extra; the process exits 2."""
