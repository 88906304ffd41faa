"""Reading request bodies with the size limit (413) and the encodings a V2 client may use."""

from __future__ import annotations

import zlib

from starlette.requests import Request

from infertap.serving.codec import CodecError
from infertap.serving.errors import RequestTooLargeError


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes before reading them where the length is declared."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = request.headers.get("content-encoding")
    return _decompress(body, encoding, limit) if encoding and encoding != "identity" else body


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    # tritonclient can send gzip or deflate bodies (request_compression_algorithm).
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding.lower())
    if wbits is None:
        raise CodecError(f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or none")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise CodecError(f"request body is not valid {encoding}: {err}") from None
    if len(out) > limit:
        raise RequestTooLargeError(f"decompressed request body exceeds the limit of {limit} bytes")
    return out


def header_length(request: Request) -> int | None:
    """The Inference-Header-Content-Length header as an int, None when absent."""
    value = request.headers.get("inference-header-content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise CodecError(f"Inference-Header-Content-Length must be an integer, got {value!r}") from None
