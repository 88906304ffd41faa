"""What the captum (BSD-3) backends share: a torch model on CUDA when present, targets, baselines.

The model is the TorchScript file the predictor serves (DeepLift, which hooks into
`nn.Module` layers, needs a pickled module instead: see `deeplift.py`). Attribution passes
are chunked by `internal_batch_size`, which bounds memory on the GPU (captum#538).
Baselines: `params.baseline` `zeros` (default) or `mean` (mean of the background rows);
GradientShap samples its baselines from the background.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from infertap.explainers.backends.base import Explainer, ExplainOptions, floats, pick_target
from infertap.explainers.errors import BadExplainRequest
from infertap.explainers.explanation import InstanceExplanation
from infertap.explainers.models import load_torchscript


class CaptumExplainer(Explainer):
    kind = "whitebox"

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

    def explain(self, X: np.ndarray, options: ExplainOptions) -> list[InstanceExplanation]:
        inputs = self.tensor(X)
        outputs = self.forward(inputs)
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
