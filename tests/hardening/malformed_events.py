"""Hypothesis strategies for malformed inference CloudEvents, as Kafka records.

Every record these strategies build is one a detector must refuse: bad JSON, JSON of the
wrong shape, wrong feature counts, values that are not numbers, huge bodies, unknown event
types, missing CloudEvent attributes, broken V2 tensors. None is a valid request event of
four numeric features, so a worker that accepts one has a decoding bug.
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

from infertap.detectors.decode import Record
from infertap.logger.events import REQUEST_TYPE, RESPONSE_TYPE

WIDTH = 4  # the detector under test reads four numeric features
GOOD_HEADERS = {
    "ce_specversion": b"1.0",
    "ce_type": REQUEST_TYPE.encode(),
    "ce_source": b"http://fuzz/",
    "content-type": b"application/json",
}

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=True), st.text(max_size=20)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
_numbers = st.floats(allow_nan=False, allow_infinity=False, width=32)
_wrong_width = st.integers(0, 9).filter(lambda n: n != WIDTH)


def _row(width) -> st.SearchStrategy:
    return st.lists(_numbers, min_size=width, max_size=width)


@st.composite
def _bad_json(draw) -> bytes:
    kind = draw(st.sampled_from(["garbage", "truncated", "utf8", "empty_object_prefix", "deep"]))
    if kind == "garbage":
        body = draw(st.binary(min_size=1, max_size=200))
        return body if not _parses(body) else b"\xff" + body
    if kind == "truncated":
        full = json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]]}).encode()
        return full[: draw(st.integers(1, len(full) - 1))]
    if kind == "utf8":
        return b'{"instances": [[1, 2, 3, "\xc3\x28"]]}'
    if kind == "deep":  # nesting beyond any parser's recursion limit
        depth = draw(st.integers(2000, 20000))
        return b"[" * depth + b"]" * depth
    return b'{"instances": [[1, 2, 3, 4]]} trailing'


@st.composite
def _wrong_shape(draw) -> bytes:
    kind = draw(
        st.sampled_from(
            [
                "any_json",
                "no_key",
                "both_keys",
                "empty",
                "scalars",
                "ragged",
                "width",
                "strings",
                "dict_rows",
                "columns",
                "v2",
            ]
        )
    )
    if kind == "any_json":  # arbitrary JSON that is not an object holding instances/inputs
        value = draw(_json.filter(lambda v: not (isinstance(v, dict) and ("instances" in v or "inputs" in v))))
        return json.dumps(value).encode()
    if kind == "no_key":
        return json.dumps({draw(st.sampled_from(["instance", "data", "rows", "x"])): [[1, 2, 3, 4]]}).encode()
    if kind == "both_keys":
        return json.dumps({"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}).encode()
    if kind == "empty":
        return json.dumps(
            {draw(st.sampled_from(["instances", "inputs"])): draw(st.sampled_from([[], {}, None, 0, ""]))}
        ).encode()
    if kind == "scalars":
        return json.dumps({"instances": draw(st.lists(_numbers, min_size=1, max_size=6))}).encode()
    if kind == "ragged":
        rows = [draw(_row(WIDTH)), draw(_row(draw(_wrong_width)))]
        return json.dumps({"instances": draw(st.permutations(rows))}).encode()
    if kind == "width":
        return json.dumps({"instances": draw(st.lists(_row(draw(_wrong_width)), min_size=1, max_size=4))}).encode()
    if kind == "strings":
        row = draw(_row(WIDTH))
        # null (-> NaN) and true (-> 1.0) are accepted by the decoder as numbers: see docs/hardening.md
        row[draw(st.integers(0, WIDTH - 1))] = draw(st.sampled_from(["x", "NaN?", "", "1,5", [1], {"a": 1}, "1e999x"]))
        return json.dumps({"instances": [row]}).encode()
    if kind == "dict_rows":  # rows by feature name, one name missing
        names = ["a", "b", "c", "d"]
        names.remove(draw(st.sampled_from(names)))
        return json.dumps({"instances": [dict.fromkeys(names, 1.0)]}).encode()
    if kind == "columns":
        return json.dumps({"inputs": {"a": [1, 2], "b": [1], "c": "x", "d": [[1]]}}).encode()
    return _bad_v2(draw)


def _bad_v2(draw) -> bytes:
    kind = draw(st.sampled_from(["datatype", "shape", "data", "fields", "binary"]))
    tensor = {"name": "input-0", "shape": [1, WIDTH], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}
    if kind == "datatype":
        tensor["datatype"] = draw(st.sampled_from(["FP99", "", "float", "INT8X", "BYTES?"]))
    elif kind == "shape":
        tensor["shape"] = draw(st.sampled_from([[1, 5], [2, WIDTH], [-1, WIDTH], [], "x", [1, WIDTH, 1, 0]]))
    elif kind == "data":
        tensor["data"] = draw(st.sampled_from([["a", "b", "c", "d"], [1, 2], None, "1234", [[1, 2], [3]]]))
        tensor["datatype"] = draw(st.sampled_from(["FP32", "INT8", "UINT8", "BOOL"]))
    elif kind == "fields":
        del tensor[draw(st.sampled_from(["name", "shape", "data"]))]
    else:
        tensor = {
            "name": "input-0",
            "shape": [1, WIDTH],
            "datatype": "FP32",
            "parameters": {"binary_data_size": draw(st.sampled_from([3, 15, 17, 1000]))},
        }
        return json.dumps({"inputs": [tensor]}).encode() + b"\x00" * 16
    return json.dumps({"inputs": [tensor]}).encode()


@st.composite
def _huge(draw) -> bytes:
    """Bodies of 256 KiB to 1 MiB (a logged event is ~1 KB; 1 MiB is Kafka's default record
    limit): long rows, many bad rows, one huge string."""
    size = draw(st.integers(256 << 10, (1 << 20) - 4096))
    kind = draw(st.sampled_from(["long_row", "string", "many_rows"]))
    if kind == "long_row":
        return b'{"instances": [[' + b"1.5," * (size // 4) + b"1.5]]}"
    if kind == "string":
        return b'{"instances": [["' + b"x" * size + b'", 1, 2, 3]]}'
    row = b"[1.0,2.0,3.0],"  # three features: wrong width
    return b'{"instances": [' + row * (size // len(row)) + b"[1.0,2.0,3.0]]}"


def _parses(body: bytes) -> bool:
    try:
        json.loads(body)
        return True
    except ValueError:
        return False


@st.composite
def malformed_record(draw, offset: int = 0) -> tuple[str, Record]:
    """(category, record): one malformed binary-mode CloudEvent as a Kafka record."""
    category = draw(st.sampled_from(["bad_json", "wrong_shape", "huge", "unknown_type", "missing_attributes"]))
    headers = dict(GOOD_HEADERS)
    headers["ce_id"] = f"fuzz-{draw(st.uuids()).hex}".encode()
    body: bytes | None = b'{"instances": [[1, 2, 3, 4]]}'
    if category == "bad_json":
        body = draw(_bad_json())
    elif category == "wrong_shape":
        body = draw(_wrong_shape())
    elif category == "huge":
        body = draw(_huge())
    elif category == "unknown_type":
        ce_type = draw(st.text(min_size=0, max_size=60).filter(lambda t: t not in (REQUEST_TYPE, RESPONSE_TYPE)))
        headers["ce_type"] = ce_type.encode("utf-8", "surrogatepass")
        if not ce_type:
            category = "missing_attributes"  # an empty type is a missing one
    else:
        for name in draw(st.sets(st.sampled_from(["ce_specversion", "ce_id", "ce_type"]), min_size=1)):
            if draw(st.booleans()):
                del headers[name]
            else:
                headers[name] = b""
        body = draw(st.one_of(st.just(body), st.binary(max_size=50), st.none()))
    return category, Record(topic="fuzz", partition=0, offset=offset, value=body, headers=headers, timestamp=0.0)
