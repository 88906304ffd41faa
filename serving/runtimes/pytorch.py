"""TorchScript models (`torch.jit.load`), on CUDA when present, with dynamic batching."""

from __future__ import annotations

import asyncio
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from infertap.serving.batching import DynamicBatcher
from infertap.serving.codec import MetadataTensor, datatype_of
from infertap.serving.errors import InferenceError
from infertap.serving.runtimes.base import Runtime, Tensors
from infertap.serving.runtimes.devices import select_torch_device


class PyTorchRuntime(Runtime):
    """Inputs go to `forward` positionally, in request order; a tuple/list/dict result gives several outputs.

    Floating inputs are cast to float32 (FP16 stays FP16 on CUDA). Model calls run on one
    dedicated thread, so the event loop never waits on the model and calls never contend
    for the device; with `dynamic_batching`, concurrent requests share one call.
    """

    platform = "pytorch_torchscript"

    def _load(self, path: Path) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(select_torch_device(self.settings.device, torch.cuda.is_available()))
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript in favour of torch.export; KServe models still ship as it.
            warnings.simplefilter("ignore", DeprecationWarning)
            self._model = torch.jit.load(str(path), map_location=self.device).eval()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"torch-{self.name}")
        self._batcher = None
        if self.settings.dynamic_batching:
            self._batcher = DynamicBatcher(
                self._run_in_thread,
                self.settings.max_batch_size,
                self.settings.max_batch_wait_ms,
                observe=self._observe,
            )
        # TorchScript carries no input shapes: variable rows and features.
        self.inputs = [MetadataTensor(name="input-0", datatype="FP32", shape=[-1, -1])]
        self.outputs = [MetadataTensor(name="output-0", datatype="FP32", shape=[-1, -1])]

    def _observe(self, rows: int) -> None:
        if self.on_batch is not None:
            self.on_batch(rows)

    async def predict(self, inputs: Tensors, *, proba: bool | None = None) -> Tensors:
        arrays = [self._prepare(name, a) for name, a in inputs.items()]
        try:
            if self._batcher is not None:
                outputs = await self._batcher.submit(arrays)
            else:
                outputs = await self._run_in_thread(arrays)
        except (RuntimeError, ValueError, TypeError) as err:  # shape errors surface as RuntimeError in torch
            raise InferenceError(f"model {self.name!r} rejected the input: {_cause(err)}") from None
        return {f"output-{i}": out for i, out in enumerate(outputs)}

    def _prepare(self, name: str, array: np.ndarray) -> np.ndarray:
        if array.dtype.kind not in "biuf":
            raise InferenceError(f"input {name!r}: model {self.name!r} needs numbers, got {datatype_of(array)} data")
        if array.ndim == 0:
            raise InferenceError(f"input {name!r}: model {self.name!r} needs a batch axis, got a scalar")
        if array.dtype.kind == "f" and not (array.dtype.itemsize == 2 and self.device.type == "cuda"):
            array = array.astype(np.float32, copy=False)
        return array

    async def _run_in_thread(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._forward, arrays)

    def _forward(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            # Buffers from the binary codec are read-only; torch wants writable memory.
            tensors = [
                torch.from_numpy(a if a.flags.writeable else a.copy()).to(self.device, non_blocking=True)
                for a in arrays
            ]
            result = self._model(*tensors)
            if isinstance(result, dict):
                result = list(result.values())
            elif not isinstance(result, (list, tuple)):
                result = [result]
            return [r.detach().to("cpu").numpy() for r in result]

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
        self._executor.shutdown(wait=False)


def _cause(err: Exception) -> str:
    # TorchScript wraps the real cause in an interpreter traceback; its last line names it.
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
