"""Open Inference Protocol (V2) REST payloads: pydantic models, JSON tensors and binary tensor data.

The models describe the protocol; the functions move bodies to and from numpy. Decoding
validates the small JSON envelope with pydantic but never walks tensor data through
pydantic: `data` stays as parsed by orjson and goes to numpy in one call, binary chunks go
through `np.frombuffer` without a copy. After decoding, every tensor's `data` is an
`np.ndarray` of its declared shape and datatype (BYTES: object array of `bytes`).

Binary tensor data extension (as Triton): the body is a JSON header of
`Inference-Header-Content-Length` bytes followed by the raw tensors, in the order of the
tensors whose `parameters.binary_data_size` gives their length. Values are little-endian;
BYTES elements carry a 4-byte little-endian length prefix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infertap.serving.codec.datatypes import NUMPY_DTYPES, Datatype, datatype_of, element_count
from infertap.serving.codec.errors import CodecError

HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
_DUMP = orjson.OPT_SERIALIZE_NUMPY

Parameters = dict[str, Any]
Dim = Annotated[int, Field(ge=-1)]


class _Tensor(BaseModel):
    # `data` is Any so pydantic hands the parsed list through untouched; numpy does the work.
    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Datatype
    parameters: Parameters | None = None
    data: Any = None


class RequestInput(_Tensor):
    """One input tensor of an inference request."""


class RequestOutput(BaseModel):
    """An output the client asks for; `parameters.binary_data` asks for it in binary."""

    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    """`POST /v2/models/{name}/infer` body."""

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Tensor):
    """One output tensor of an inference response."""


class InferenceResponse(BaseModel):
    """`POST /v2/models/{name}/infer` reply."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    """Name, datatype and shape (-1 for a variable dimension) of a model input or output."""

    name: str
    datatype: Datatype
    shape: list[Dim]


class ModelMetadata(BaseModel):
    """`GET /v2/models/{name}` reply."""

    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ServerMetadata(BaseModel):
    """`GET /v2` reply."""

    name: str
    version: str
    extensions: list[str]


# ---------------------------------------------------------------- decoding


def decode_v2_request(body: bytes, header_length: int | None = None) -> InferenceRequest:
    """Parse an infer request body; `header_length` is the Inference-Header-Content-Length value.

    Raises CodecError naming what is wrong (bad JSON, unknown datatype, element or byte count
    that does not match the shape, binary data left over).
    """
    envelope, binary = _split(body, header_length)
    request = _validate(InferenceRequest, envelope, "request")
    _decode_tensors(request.inputs, binary, "input")
    return request


def decode_v2_response(body: bytes, header_length: int | None = None) -> InferenceResponse:
    """Parse an infer response body (JSON or binary), e.g. a logged one; tensors become numpy."""
    envelope, binary = _split(body, header_length)
    response = _validate(InferenceResponse, envelope, "response")
    _decode_tensors(response.outputs, binary, "output")
    return response


def binary_header_length(body: bytes) -> int:
    """Length of the JSON header leading a V2 binary-extension body, found by parsing it.

    For bodies kept without their `Inference-Header-Content-Length` request header (the
    logger keeps bodies byte-exact, not that header): the header is the leading JSON value.
    """
    try:
        # latin-1 maps one byte to one character, so the end index is a byte count
        _, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise CodecError("body is neither JSON nor a V2 binary body with a JSON header") from None
    return end


def _split(body: bytes, header_length: int | None) -> tuple[Any, memoryview]:
    view = memoryview(body)
    if header_length is None:
        header, binary = view, view[:0]
    else:
        if header_length < 0 or header_length > len(view):
            raise CodecError(f"{HEADER_LENGTH} is {header_length} but the body has {len(view)} bytes")
        header, binary = view[:header_length], view[header_length:]
    try:
        envelope = orjson.loads(header)
    except orjson.JSONDecodeError as err:
        where = "JSON header" if header_length is not None else "body"
        raise CodecError(f"request {where} is not valid JSON: {err}") from None
    return envelope, binary


def _validate(model: type[BaseModel], envelope: Any, what: str) -> Any:
    if not isinstance(envelope, dict):
        raise CodecError(f"V2 {what} must be a JSON object, got {type(envelope).__name__}")
    try:
        return model.model_validate(envelope)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in err.errors()[:5])
        raise CodecError(f"invalid V2 {what}: {problems}") from None


def _decode_tensors(tensors: Iterable[_Tensor], binary: memoryview, kind: str) -> None:
    offset = 0
    for tensor in tensors:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            if tensor.data is None:
                raise CodecError(f"{kind} {tensor.name!r} has neither data nor a binary_data_size parameter")
            tensor.data = _from_json(tensor, kind)
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise CodecError(f"{kind} {tensor.name!r}: binary_data_size must be a non-negative integer, got {size!r}")
        if offset + size > len(binary):
            raise CodecError(
                f"{kind} {tensor.name!r}: binary_data_size {size} runs past the end of the body "
                f"({len(binary) - offset} binary bytes left)"
            )
        tensor.data = _from_binary(tensor, binary[offset : offset + size], kind)
        offset += size
    if offset != len(binary):
        raise CodecError(f"{len(binary) - offset} bytes of binary data left over after the last binary {kind}")


def _from_binary(tensor: _Tensor, chunk: memoryview, kind: str) -> np.ndarray:
    count = element_count(tensor.shape)
    if tensor.datatype == "BYTES":
        return _reshape(_bytes_from_binary(tensor, chunk, count, kind), tensor, kind)
    dtype = NUMPY_DTYPES[tensor.datatype]
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise CodecError(
            f"{kind} {tensor.name!r}: shape {tensor.shape} of {tensor.datatype} needs {expected} bytes, "
            f"binary_data_size is {len(chunk)}"
        )
    return _reshape(np.frombuffer(chunk, dtype=dtype), tensor, kind)


def _reshape(array: np.ndarray, tensor: _Tensor, kind: str) -> np.ndarray:
    try:
        return array.reshape(tensor.shape)
    except ValueError as err:  # more dimensions than numpy allows, or an empty shape whose other dims overflow
        raise CodecError(f"{kind} {tensor.name!r}: shape {tensor.shape} is not possible here: {err}") from None


def _bytes_from_binary(tensor: _Tensor, chunk: memoryview, count: int, kind: str) -> np.ndarray:
    # Every element takes at least its 4-byte prefix: a chunk that cannot hold `count` of them,
    # or holds bytes past the `count`-th, is refused before (or as soon as) that is seen. Walking
    # all of 15 M empty elements for a shape of [1] took 12.6 s (issue 19).
    if count * 4 > len(chunk):
        raise CodecError(
            f"{kind} {tensor.name!r}: shape {tensor.shape} needs {count} BYTES elements "
            f"(at least {count * 4} bytes with their length prefixes), binary_data_size is {len(chunk)}"
        )
    items: list[bytes] = []
    pos, end = 0, len(chunk)
    while pos < end:
        if len(items) == count:
            raise CodecError(
                f"{kind} {tensor.name!r}: shape {tensor.shape} needs {count} BYTES elements, "
                f"but its binary data goes on past element {count} (at byte {pos} of {end})"
            )
        if pos + 4 > end:
            raise CodecError(f"{kind} {tensor.name!r}: BYTES element at offset {pos} lacks its 4-byte length prefix")
        length = int.from_bytes(chunk[pos : pos + 4], "little")
        pos += 4
        if pos + length > end:
            raise CodecError(f"{kind} {tensor.name!r}: BYTES element of {length} bytes runs past its binary data")
        items.append(bytes(chunk[pos : pos + length]))
        pos += length
    if len(items) != count:
        raise CodecError(f"{kind} {tensor.name!r}: shape {tensor.shape} needs {count} BYTES elements, got {len(items)}")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def _from_json(tensor: _Tensor, kind: str) -> np.ndarray:
    count = element_count(tensor.shape)
    try:
        if tensor.datatype == "BYTES":
            array = _bytes_from_json(tensor, count, kind)
        else:
            array = _numbers_from_json(tensor, kind)
    except (ValueError, TypeError, OverflowError) as err:
        if isinstance(err, CodecError):
            raise
        raise CodecError(f"{kind} {tensor.name!r}: data does not fit datatype {tensor.datatype}: {err}") from None
    if array.size != count:
        raise CodecError(f"{kind} {tensor.name!r}: shape {tensor.shape} needs {count} elements, data has {array.size}")
    return _reshape(array, tensor, kind)


def _numbers_from_json(tensor: _Tensor, kind: str) -> np.ndarray:
    dtype = NUMPY_DTYPES[tensor.datatype]
    if dtype.kind == "f":
        return np.asarray(tensor.data, dtype=dtype)
    # Ints and bools: read first, then check, so 1.5 or "x" is an error rather than truncated.
    raw = np.asarray(tensor.data)
    if raw.size == 0:
        return raw.astype(dtype)
    if dtype.kind == "b":
        if raw.dtype.kind != "b":
            raise CodecError(f"{kind} {tensor.name!r}: BOOL data must be true/false, got {raw.dtype.name} values")
        return raw
    if raw.dtype.kind in "fO":
        # Integers beyond int64 (UINT64's upper half) make numpy guess float64 or object;
        # read the Python ints exactly instead (rare path, so the walk is affordable).
        exact = np.asarray(tensor.data, dtype=object)
        if all(type(v) is int for v in exact.flat):
            return np.array(exact.tolist(), dtype=dtype)  # OverflowError if they do not fit
    if raw.dtype.kind not in "iub":
        raise CodecError(f"{kind} {tensor.name!r}: {tensor.datatype} data holds non-integer values")
    info = np.iinfo(dtype)
    if raw.dtype.kind != "b" and (raw.min() < info.min or raw.max() > info.max):
        raise CodecError(f"{kind} {tensor.name!r}: values outside the range of {tensor.datatype}")
    return raw.astype(dtype)


def _bytes_from_json(tensor: _Tensor, count: int, kind: str) -> np.ndarray:
    """The strings of BYTES `data`, flat or nested no deeper than the shape (walked without recursion).

    A recursive walk of 1,000 nested lists was a 500 RecursionError (issue 19); nesting
    beyond the shape's dimensions, or more strings than it holds, is a CodecError as soon
    as it is seen.
    """
    name, max_depth = tensor.name, max(1, len(tensor.shape))
    items: list[bytes] = []
    stack: list[tuple[Any, int]] = [(tensor.data, 0)]  # (node, lists around it)
    while stack:
        node, depth = stack.pop()
        if isinstance(node, list):
            if depth == max_depth:
                raise CodecError(
                    f"{kind} {name!r}: BYTES data is nested deeper than its shape {tensor.shape} allows "
                    f"({max_depth} level{'s' if max_depth > 1 else ''} of lists)"
                )
            stack.extend((child, depth + 1) for child in reversed(node))
        elif isinstance(node, str):
            if len(items) == count:
                raise CodecError(f"{kind} {name!r}: shape {tensor.shape} needs {count} elements, data has more")
            items.append(node.encode())
        else:
            raise CodecError(f"{kind} {name!r}: BYTES data in JSON must be strings, got {type(node).__name__}")
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


# ---------------------------------------------------------------- encoding


def wants_binary(request: InferenceRequest | None, output_name: str) -> bool:
    """Whether the client asked for this output as binary data.

    A requested output's `binary_data` parameter wins; otherwise the request-level
    `binary_data_output` parameter decides.
    """
    if request is None:
        return False
    for wanted in request.outputs or ():
        if wanted.name == output_name and wanted.parameters and "binary_data" in wanted.parameters:
            return bool(wanted.parameters["binary_data"])
    return bool((request.parameters or {}).get("binary_data_output", False))


def encode_v2_response(
    response: InferenceResponse,
    request: InferenceRequest | None = None,
    binary_outputs: bool | Iterable[str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Serialise a response whose outputs hold numpy arrays; returns (body, headers).

    Which outputs go binary follows the request's `binary_data_output` and per-output
    `binary_data` parameters, unless `binary_outputs` (True, False or a set of names) says.
    """
    if binary_outputs is None:
        binary = {out.name for out in response.outputs if wants_binary(request, out.name)}
    elif isinstance(binary_outputs, bool):
        binary = {out.name for out in response.outputs} if binary_outputs else set()
    else:
        binary = set(binary_outputs)
    head: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        head["model_version"] = response.model_version
    if response.id is not None:
        head["id"] = response.id
    if response.parameters:
        head["parameters"] = response.parameters
    head["outputs"], chunks = _encode_tensors(response.outputs, binary)
    return _finish(head, chunks)


def encode_v2_request(
    inputs: Mapping[str, np.ndarray] | list[RequestInput],
    *,
    binary: bool = False,
    outputs: list[str] | None = None,
    binary_outputs: bool = False,
    id: str | None = None,
    parameters: Parameters | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Serialise an infer request from numpy arrays (a client's side); returns (body, headers)."""
    tensors = (
        [RequestInput(name=n, shape=list(a.shape), datatype=datatype_of(a), data=a) for n, a in inputs.items()]
        if isinstance(inputs, Mapping)
        else inputs
    )
    head: dict[str, Any] = {}
    if id is not None:
        head["id"] = id
    params = dict(parameters or {})
    if binary_outputs:
        params["binary_data_output"] = True
    if params:
        head["parameters"] = params
    head["inputs"], chunks = _encode_tensors(tensors, {t.name for t in tensors} if binary else set())
    if outputs is not None:
        head["outputs"] = [{"name": n, "parameters": {"binary_data": binary_outputs}} for n in outputs]
    return _finish(head, chunks)


def _encode_tensors(tensors: Iterable[_Tensor], binary: set[str]) -> tuple[list[dict[str, Any]], list[bytes]]:
    heads, chunks = [], []
    for tensor in tensors:
        array = np.asarray(tensor.data) if tensor.datatype != "BYTES" else _as_object(tensor.data)
        item: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(array.shape)}
        params = dict(tensor.parameters or {})
        params.pop("binary_data_size", None)
        if tensor.name in binary:
            chunk = _to_binary(array, tensor.datatype)
            params["binary_data_size"] = len(chunk)
            chunks.append(chunk)
        else:
            item["data"] = _to_json(array, tensor.datatype)
        if params:
            item["parameters"] = params
        heads.append(item)
    return heads, chunks


def _as_object(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data
    array = np.empty(len(data), dtype=object)
    array[:] = list(data)
    return array


def _to_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype]).tobytes()
    parts = []
    for item in array.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode()
        parts.append(len(raw).to_bytes(4, "little"))
        parts.append(raw)
    return b"".join(parts)


def _to_json(array: np.ndarray, datatype: str) -> Any:
    if datatype != "BYTES":
        # orjson writes numpy arrays natively (C-contiguous, native byte order).
        return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype].newbyteorder("=")).reshape(-1)
    out = []
    for item in array.reshape(-1):
        if isinstance(item, bytes):
            try:
                item = item.decode()
            except UnicodeDecodeError:
                raise CodecError("BYTES output is not UTF-8 text; ask for it as binary data") from None
        out.append(str(item))
    return out


def _finish(head: dict[str, Any], chunks: list[bytes]) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(head, option=_DUMP)
    if not chunks:
        return header, {"content-type": JSON_TYPE}
    return b"".join([header, *chunks]), {"content-type": BINARY_TYPE, HEADER_LENGTH.lower(): str(len(header))}
