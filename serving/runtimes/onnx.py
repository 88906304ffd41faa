"""ONNX models on onnxruntime; CUDAExecutionProvider first when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infertap.serving.codec import Datatype, MetadataTensor, datatype_of
from infertap.serving.errors import InferenceError
from infertap.serving.runtimes.base import Runtime, Tensors
from infertap.serving.runtimes.devices import select_onnx_providers

# onnxruntime's type strings to V2 datatypes.
_ONNX_DATATYPES: dict[str, Datatype] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
_NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}


class OnnxRuntime(Runtime):
    """Inputs are matched by name (or by position when the names differ but the counts agree)
    and cast to the types the graph declares; all graph outputs are returned unless asked otherwise."""

    platform = "onnxruntime_onnx"

    def _load(self, path: Path) -> None:
        import onnxruntime as ort

        self.providers = select_onnx_providers(self.settings.device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3  # keep provider chatter out of the server log
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=self.providers)
        self.inputs = [_describe(t) for t in self._session.get_inputs()]
        self.outputs = [_describe(t) for t in self._session.get_outputs()]
        self._output_names = [t.name for t in self.outputs]

    async def predict(self, inputs: Tensors, *, proba: bool | None = None) -> Tensors:
        feed = self._feed(inputs)
        try:
            results = await self._in_thread(self._session.run, self._output_names, feed)
        except Exception as err:  # noqa: BLE001 - onnxruntime's Fail/InvalidArgument (bad shapes) are bare Exception subclasses
            raise InferenceError(f"model {self.name!r} rejected the input: {str(err).strip()}") from None
        return dict(zip(self._output_names, results, strict=True))

    def _feed(self, inputs: Tensors) -> dict[str, np.ndarray]:
        expected = [t.name for t in self.inputs]
        if set(inputs) == set(expected):
            pairs = [(spec, inputs[spec.name]) for spec in self.inputs]
        elif len(inputs) == len(expected):
            pairs = list(zip(self.inputs, inputs.values(), strict=True))
        else:
            raise InferenceError(f"model {self.name!r} takes inputs {expected}, got {list(inputs)}")
        feed = {}
        for spec, array in pairs:
            want = spec.datatype
            if (want == "BYTES") != (array.dtype.kind in "OSU"):
                raise InferenceError(f"input {spec.name!r}: model {self.name!r} needs {want}, got {datatype_of(array)}")
            feed[spec.name] = array if want == "BYTES" else array.astype(_NUMPY[want], copy=False)
        return feed


def _describe(node) -> MetadataTensor:
    shape = [d if isinstance(d, int) and d >= 0 else -1 for d in (node.shape or [])]
    return MetadataTensor(name=node.name, datatype=_ONNX_DATATYPES.get(node.type, "FP32"), shape=shape)
