"""Schemathesis hooks for tests/hardening/test_schemathesis.py (loaded by `st run` via SCHEMATHESIS_HOOKS).

- `no_server_error` replaces schemathesis' `not_a_server_error` with one exception: a 504
  from a request that set its own `deadline_s`. The explainer documents that answer (the
  client's deadline passed; e.g. the fuzzer's `deadline_s: 5e-324`); every other 5xx fails.
- `flatmap_case` gives about half the generated JSON bodies rows of 4 values (the iris
  model's width) in place of the generated instances or V2 inputs. A JSON schema cannot say
  "as many data elements as the shape's product", so nearly every generated V2 body stopped
  at the codec's 400; with fitting inputs the rest of the body (parameters, outputs,
  explain options) and the values themselves reach the model and the explainer.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import schemathesis
from hypothesis import strategies as st

from infertap.serving.codec import DATATYPES, HEADER_LENGTH, NUMPY_DTYPES

WIDTH = 4  # features of models/sklearn-iris
# Plain values first (hypothesis leans to the first branch), then the extremes: huge floats, 64-bit ints, bools.
VALUE = st.one_of(
    st.floats(-1e3, 1e3),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**64 - 1),
    st.booleans(),
)
DATATYPE = st.one_of(st.sampled_from(("FP32", "FP64")), st.sampled_from(DATATYPES))
ROW = st.lists(VALUE, min_size=WIDTH, max_size=WIDTH)
ROWS = st.one_of(st.lists(ROW, min_size=1, max_size=4), st.just([]))  # []: a tensor of shape [0, 4]


@schemathesis.check
def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    """No 5xx, except 504 on a request that asked for its own deadline."""
    status = response.status_code
    _record(case, status)
    if status < 500 or (status == 504 and asked_deadline(case.body)):
        return None
    raise AssertionError(f"server error {status}: {response.text[:500]}")


ANSWERS_ENV = "INFERTAP_ST_ANSWERS"
"""A file the test names: one line per answer, `PHASE METHOD PATH STATUS`, so it can tell that
generated cases (not the schema's own example) reached the model and came back 2xx. schemathesis'
own `valid_rates` count only cases it still judges schema-valid after the hooks changed them."""


def _record(case: Any, status: int) -> None:
    path = os.environ.get(ANSWERS_ENV)
    meta = getattr(case, "_meta", None)
    if path and meta is not None:
        with open(path, "a") as fh:
            fh.write(f"{meta.phase.name} {case.method.upper()} {case.path} {status}\n")


def asked_deadline(body: Any) -> bool:
    """Whether an explain body sets `deadline_s` where the explainer reads it (V1 `parameters`,
    V2 `parameters` or MLServer's `parameters.explain_parameters`)."""
    params = body.get("parameters") if isinstance(body, dict) else None
    if not isinstance(params, dict):
        return False
    params = params.get("explain_parameters") or params
    return isinstance(params, dict) and params.get("deadline_s") is not None


@schemathesis.hook
def flatmap_case(ctx: Any, case: Any) -> Any:
    """The generated case, or the same case with rows the model can take: V1 instances, V2 inputs as
    JSON (without a generated Inference-Header-Content-Length, which would cut the body), or, where
    schemathesis drew an octet-stream body, a binary-extension body with its header length."""
    fitted = _fitting(case.body, case.media_type)
    if fitted is None:
        return st.just(case)
    return st.one_of(st.just(case), fitted.map(lambda fit: _with_body(case, *fit)))


def _fitting(body: Any, media_type: str | None) -> Any:
    """A strategy of (body, header length or None), or None for bodies left as generated."""
    if media_type == "application/octet-stream":
        return st.builds(_binary, ROWS, DATATYPE, st.booleans())
    if isinstance(body, dict) and "instances" in body:
        return ROWS.map(lambda rows: ({**body, "instances": rows}, None))
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
        return st.builds(_tensor, ROWS, DATATYPE).map(lambda tensor: ({**body, "inputs": [tensor]}, None))
    return None


def _with_body(case: Any, body: Any, header_length: int | None) -> Any:
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != HEADER_LENGTH.lower()}
    if header_length is not None:
        headers[HEADER_LENGTH] = str(header_length)
    fitted = case.derive(headers=headers)
    fitted.body = body
    return fitted


def _tensor(rows: list[list[Any]], datatype: str) -> dict[str, Any]:
    return {
        "name": "input-0",
        "shape": [len(rows), WIDTH],
        "datatype": datatype,
        "data": [v for row in rows for v in row],
    }


def _binary(rows: list[list[Any]], datatype: str, binary_output: bool) -> tuple[bytes, int]:
    """A V2 binary-extension body: JSON header, then the rows as raw `datatype` values."""
    if datatype == "BYTES":
        raw = b"".join(len(t).to_bytes(4, "little") + t for t in (str(v).encode() for row in rows for v in row))
    else:
        with np.errstate(all="ignore"):  # out-of-range values wrap or become inf: more bad input
            raw = np.asarray(rows, dtype=np.float64).reshape(-1, WIDTH).astype(NUMPY_DTYPES[datatype]).tobytes()
    tensor = {
        "name": "input-0",
        "shape": [len(rows), WIDTH],
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": binary_output}}).encode()
    return header + raw, len(header)
