"""Open Inference Protocol datatypes and their numpy counterparts.

Binary tensors are little-endian, so every fixed-size dtype here names its byte order
explicitly; BYTES tensors are numpy object arrays holding `bytes`.
"""

from __future__ import annotations

from typing import Literal, cast

import numpy as np

from infertap.serving.codec.errors import CodecError

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]

NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
DATATYPES: tuple[str, ...] = tuple(NUMPY_DTYPES)


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype of a V2 datatype name (CodecError for names the protocol lacks)."""
    try:
        return NUMPY_DTYPES[datatype]
    except KeyError:
        raise CodecError(f"unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}") from None


def datatype_of(array: np.ndarray) -> Datatype:
    """The V2 datatype name of a numpy array (object, bytes and str arrays are BYTES)."""
    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind == "b":
        return "BOOL"
    if kind in "iu" and size in (1, 2, 4, 8):
        return cast(Datatype, f"{'UINT' if kind == 'u' else 'INT'}{size * 8}")
    if kind == "f" and size in (2, 4, 8):
        return cast(Datatype, f"FP{size * 8}")
    if kind in "OSU":
        return "BYTES"
    raise CodecError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")


def element_count(shape: list[int] | tuple[int, ...]) -> int:
    """Number of elements in a tensor of `shape` (1 for a scalar shape [])."""
    count = 1
    for dim in shape:
        count *= dim
    return count
