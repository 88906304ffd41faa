"""Errors the model server turns into HTTP answers or a startup failure."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message names the file. The server exits with it."""


class InferenceError(ValueError):
    """The inputs do not fit the model (count of features, datatype, names): HTTP 400."""


class ModelNotFoundError(LookupError):
    """No model of that name (or version) is served: HTTP 404."""


class ModelNotReadyError(RuntimeError):
    """The model exists but is not loaded yet: HTTP 503."""


class RequestTooLargeError(ValueError):
    """The body is larger than ServerSettings.max_request_bytes: HTTP 413."""
