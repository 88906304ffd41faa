"""Every failure as `{"error": "..."}` with the right status: 400 bad input, 404, 413, 503, 500."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from infertap.serving.codec import CodecError
from infertap.serving.errors import InferenceError, ModelNotFoundError, ModelNotReadyError, RequestTooLargeError

log = logging.getLogger("infertap.serving")

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (CodecError, 400),
    (InferenceError, 400),
    (RequestTooLargeError, 413),
    (ModelNotFoundError, 404),
    (ModelNotReadyError, 503),
)


def status_for(err: BaseException) -> int:
    """HTTP status for an exception raised while serving a request."""
    for cls, status in _STATUS:
        if isinstance(err, cls):
            return status
    if isinstance(err, HTTPException):
        return err.status_code
    return 500


def error_response(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status, media_type="application/json")


async def _known_error(request: Request, err: Exception) -> Response:
    return error_response(status_for(err), str(err))


# Starlette types every handler as taking `Exception`; each is registered for one class (below).
async def _http_error(request: Request, err: Exception) -> Response:
    assert isinstance(err, HTTPException)
    return error_response(err.status_code, str(err.detail))


async def _validation_error(request: Request, err: Exception) -> Response:
    assert isinstance(err, RequestValidationError)
    return error_response(400, f"invalid request: {err.errors()}")


async def _unexpected(request: Request, err: Exception) -> Response:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(err).__name__}: {err}")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that keep every error reply in the `{"error": ...}` shape."""
    for cls, _status in _STATUS:
        app.add_exception_handler(cls, _known_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
