"""Reading request bodies with the size limit (413) and the encodings a V2 client may use."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from infertap.serving.codec import CodecError
from infertap.serving.errors import RequestTooLargeError

T = TypeVar("T")

#: Bodies larger than this are inflated and decoded in a worker thread, not on the event loop:
#: a 57 MiB V2 binary body decoded inline stalled every other client for 12.5 s (issue 19).
#: Below it decoding takes about a millisecond or less, less than a thread hand-off costs.
OFF_LOOP_BYTES = 256 * 1024


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
    if not encoding or encoding == "identity":
        return body
    return await off_loop(_decompress, len(body), body, encoding, limit)


async def off_loop(work: Callable[..., T], size: int, *args: object) -> T:
    """`work(*args)` for a body of `size` bytes: inline when small, in Starlette's thread pool when
    larger than OFF_LOOP_BYTES, so one large body cannot stall the event loop (and other clients)."""
    if size <= OFF_LOOP_BYTES:
        return work(*args)
    return await run_in_threadpool(work, *args)


async def decode_body(decode: Callable[..., T], body: bytes, *args: object) -> T:
    """`decode(body, *args)` (a codec's decode function), off the event loop for large bodies."""
    return await off_loop(decode, len(body), body, *args)


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
