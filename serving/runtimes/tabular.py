"""What the sklearn, xgboost and lightgbm runtimes share: one 2-D feature matrix in, one output tensor out."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from infertap.serving.codec import MetadataTensor, datatype_of
from infertap.serving.errors import InferenceError
from infertap.serving.runtimes.base import Runtime, Tensors

INPUT_NAME = "input-0"
OUTPUT_NAME = "output-0"
# Inputs up to this many numbers are predicted on the event loop itself. A call this small
# takes about as long as the hop to a worker thread, and the libraries' Python-side input
# checks hold the GIL anyway, so the thread only added a handoff and GIL contention with the
# loop (measured: benchmarks/README.md, serving_throughput). Larger inputs go to a thread.
INLINE_MAX_ELEMENTS = 1024


class TabularRuntime(Runtime):
    """A runtime over a feature matrix (rows x features); subclasses say how to predict."""

    n_features: int | None = None
    has_proba: bool = True

    @abstractmethod
    def _predict_sync(self, X: np.ndarray, proba: bool) -> np.ndarray:
        """Labels or values per row, or class probabilities when `proba` (runs in a worker thread)."""

    async def predict(self, inputs: Tensors, *, proba: bool | None = None) -> Tensors:
        X = self._matrix(inputs)
        proba = self.settings.predict_proba if proba is None else proba
        if proba and not self.has_proba:
            raise InferenceError(f"model {self.name!r} gives no class probabilities (predict_proba)")
        try:
            if X.size <= INLINE_MAX_ELEMENTS:
                result = self._predict_sync(X, proba)
            else:
                result = await self._in_thread(self._predict_sync, X, proba)
        except ValueError as err:  # the library's own input checks
            raise InferenceError(f"model {self.name!r} rejected the input: {err}") from None
        return {OUTPUT_NAME: result}

    def _matrix(self, inputs: Tensors) -> np.ndarray:
        if len(inputs) != 1:
            raise InferenceError(f"model {self.name!r} takes one input tensor (rows x features), got {len(inputs)}")
        ((name, X),) = inputs.items()
        if X.dtype.kind not in "biuf":
            raise InferenceError(f"input {name!r}: model {self.name!r} needs numbers, got {datatype_of(X)} data")
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.ndim != 2:
            raise InferenceError(
                f"input {name!r}: model {self.name!r} needs a 2-D tensor (rows x features), got shape {list(X.shape)}"
            )
        if self.n_features is not None and X.shape[1] != self.n_features:
            raise InferenceError(
                f"input {name!r}: model {self.name!r} expects {self.n_features} features per row, got {X.shape[1]}"
            )
        if X.dtype.kind != "f" or X.dtype.itemsize < 4:
            X = X.astype(np.float32)  # FP16, ints and bools: the libraries want float32/64
        return X

    def _describe(self) -> None:
        """Fill metadata from one warm-up call on a zero row (also proves the model runs)."""
        width = self.n_features if self.n_features is not None else -1
        self.inputs = [MetadataTensor(name=INPUT_NAME, datatype="FP32", shape=[-1, width])]
        if self.n_features is None:
            self.outputs = [MetadataTensor(name=OUTPUT_NAME, datatype="FP64", shape=[-1])]
            return
        out = self._predict_sync(
            np.zeros((1, self.n_features), dtype=np.float32), self.settings.predict_proba and self.has_proba
        )
        self.outputs = [MetadataTensor(name=OUTPUT_NAME, datatype=datatype_of(out), shape=[-1, *out.shape[1:]])]


def labels_and_probabilities(raw: np.ndarray, proba: bool) -> np.ndarray:
    """Turn a booster's probability output into what sklearn's predict / predict_proba give.

    Binary models give P(class 1) per row: labels threshold it at 0.5, probabilities become
    two columns. Multi-class models give one column per class: labels are the argmax.
    """
    if raw.ndim == 1:
        return np.column_stack([1.0 - raw, raw]) if proba else (raw > 0.5).astype(np.int64)
    return raw if proba else raw.argmax(axis=1).astype(np.int64)
