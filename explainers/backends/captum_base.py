"""What the captum (BSD-3) backends share: a torch model on CUDA when present, targets, baselines.

The model is the TorchScript file the predictor serves (DeepLift, which hooks into
`nn.Module` layers, needs a pickled module instead: see `deeplift.py`). Attribution passes
are chunked by `internal_batch_size`, which bounds memory on the GPU (captum#538).
Baselines: `params.baseline` `zeros` (default) or `mean` (mean of the background rows);
GradientShap samples its baselines from the background.

TorchScript carries no input shapes, so without a background or `params.input_shape` the
model itself is the first to see an instance of the wrong shape or rank. Its refusal (a
TorchScript interpreter traceback) is answered 400 with one sentence: the shape given, the
shape the model takes where its error says (a first `nn.Linear`, a reshape), and the model's
own reason; so are outputs that are not one row per instance (`model_outputs`).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from typing import Any

import numpy as np

from infertap.explainers.backends.base import Explainer, ExplainOptions, floats, pick_target
from infertap.explainers.errors import BadExplainRequest
from infertap.explainers.explanation import InstanceExplanation
from infertap.explainers.models import load_torchscript


class CaptumExplainer(Explainer):
    kind = "whitebox"
    requires = ("torch", "captum")

    def _load(self) -> None:
        import torch

        from infertap.serving.runtimes.devices import select_torch_device

        self._torch = torch
        self.device = torch.device(select_torch_device(self.settings.device, torch.cuda.is_available()))
        self.model = self._load_model()
        if self.feature_shape is None and "input_shape" in self.settings.params:
            self.feature_shape = tuple(int(d) for d in self.settings.params["input_shape"])

    def _load_model(self):
        return load_torchscript(self.settings.storage_uri, str(self.device), self.type_name)

    def tensor(self, X: np.ndarray):
        return self._torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(self.device)

    def baseline(self, X) -> object:
        torch = self._torch
        kind = self.settings.params.get("baseline", "zeros")
        if kind == "mean" and self.background is not None:
            return self.tensor(self.background.data.mean(0, keepdims=True)).expand_as(X).contiguous()
        if kind not in ("zeros", "mean"):
            raise BadExplainRequest(f"baseline must be zeros or mean, got {kind!r}")
        return torch.zeros_like(X)

    def forward(self, X) -> np.ndarray:
        with self._torch.no_grad():
            return self.model(X).detach().float().cpu().numpy()

    def model_outputs(self, inputs, X: np.ndarray) -> np.ndarray:
        """The model's outputs for X, one row per instance; BadExplainRequest with a sentence when the
        model refuses X (wrong shape, rank or size) or does not answer one row per instance."""
        try:
            outputs = self.forward(inputs)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            cause = model_cause(err)
            if "out of memory" in cause.lower():
                raise  # not the client's input: the server's out-of-memory handling answers it
            raise BadExplainRequest(self._refused(X, cause)) from None
        given = f"instances of shape {list(X.shape[1:])} (input shape {list(X.shape)})"
        if outputs.ndim == 0 or len(outputs) != len(X):
            rows = 1 if outputs.ndim == 0 else len(outputs)
            raise BadExplainRequest(
                f"{self.type_name}: the model answered {len(X)} instance(s) of shape {list(X.shape[1:])} "
                f"(input shape {list(X.shape)}) with {rows} output row(s); "
                "send instances of the shape it takes (one output row each)"
            )
        if outputs.ndim > 2:
            raise BadExplainRequest(
                f"{self.type_name}: the model answered {given} with outputs of shape {list(outputs.shape[1:])} "
                "each, not one score per class; send instances of the shape it takes (one output row each)"
            )
        return outputs

    def _refused(self, X: np.ndarray, cause: str) -> str:
        given, full = list(X.shape[1:]), list(X.shape)
        expected = expected_shape(cause, X.shape)
        if expected is not None and expected != given:
            values = f" ({int(np.prod(expected))} values)" if len(expected) > 1 else ""
            return (
                f"{self.type_name}: the model takes instances of shape {expected}{values}, got {given} "
                f"(input shape {full}): {cause}"
            )
        hint = (
            ""
            if self.feature_shape is not None
            else "; set params.input_shape (or give a background) to have shapes checked before the model runs"
        )
        return f"{self.type_name}: the model refused instances of shape {given} (input shape {full}): {cause}{hint}"

    def explain(self, X: np.ndarray, options: ExplainOptions) -> list[InstanceExplanation]:
        inputs = self.tensor(X)
        outputs = self.model_outputs(inputs, X)
        targets, predictions = zip(*(pick_target(row, options.target) for row in outputs), strict=True)
        target_arg = None if targets[0] is None else self._torch.tensor(targets, device=self.device)
        attributions, base_values, raw = self.attribute(inputs, target_arg, options)
        attributions = attributions.detach().float().cpu().numpy()
        names = self.feature_names(int(np.prod(X.shape[1:])))
        shape = list(X.shape[1:]) if X.ndim > 2 else None
        return [
            InstanceExplanation(
                feature_names=names,
                values=floats(attributions[i]),
                base_value=float(base_values[i]),
                prediction=predictions[i],
                target=targets[i],
                output_space="logit",
                shape=shape,
                raw={key: value[i] for key, value in raw.items()}
                | {"model_output": floats(outputs[i]), "device": self.device.type},
            )
            for i in range(len(X))
        ]

    @abstractmethod
    def attribute(self, inputs, target, options: ExplainOptions) -> tuple[Any, np.ndarray, dict[str, list]]:
        """(attributions like inputs: a torch tensor, Any as torch is imported lazily; base value per row,
        raw extras per row)."""

    def target_values(self, outputs: np.ndarray, target) -> np.ndarray:
        """The target column of model outputs, per row."""
        if target is None:
            return outputs.reshape(len(outputs), -1)[:, 0]
        return outputs[np.arange(len(outputs)), target.cpu().numpy()]


def model_cause(err: BaseException) -> str:
    """The reason in a torch error: TorchScript puts its interpreter traceback first and the cause last."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return re.sub(r"^\w+(Error|Exception): ", "", lines[-1]) if lines else type(err).__name__


_MATMUL = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
_RESHAPE = re.compile(r"shape '\[([-\d, ]+)\]' is invalid for input of size (\d+)")


def expected_shape(cause: str, shape: tuple[int, ...]) -> list[int] | None:
    """The instance shape a model takes, when its error `cause` says so about the input itself.

    - `mat1 and mat2 shapes cannot be multiplied (AxB and CxD)` where AxB is the input (a first
      `nn.Linear` flattens all but the last axis): instances of C features.
    - `shape '[-1, d1, ...]' is invalid for input of size N` where N is the input's size (the
      model reshapes its input first): instances of shape [d1, ...].
    Otherwise None: the error is about some later layer, and the model's words stand alone.
    """
    if len(shape) < 2:
        return None
    if match := _MATMUL.search(cause):
        rows, cols, features, _out = map(int, match.groups())
        if (rows, cols) == (int(np.prod(shape[:-1])), shape[-1]):
            return [features]
    if match := _RESHAPE.search(cause):
        dims = [int(d) for d in match.group(1).split(",")]
        if int(match.group(2)) == int(np.prod(shape)) and dims[:1] == [-1] and all(d > 0 for d in dims[1:]):
            return dims[1:]
    return None
