"""captum GradientShap: expected gradients against baselines drawn from the background.

The base value is the mean model output over those baselines, so `base_value + sum(values)`
approximates the prediction in expectation (it is a sampling method: `nsamples` draws).
"""

from __future__ import annotations

import numpy as np

from infertap.explainers.backends.base import ExplainOptions
from infertap.explainers.backends.captum_base import CaptumExplainer


class GradientShapExplainer(CaptumExplainer):
    type_name = "GradientShap"

    def _load(self) -> None:
        super()._load()
        from captum.attr import GradientShap

        self._method = GradientShap(self.model)

    def check_work(self, n: int, options: ExplainOptions) -> None:
        """captum repeats every instance n_samples times in one pass (it takes no internal batch size)."""
        n_samples = options.nsamples or self.settings.nsamples or 50
        self.check_rows(n_samples * n, f"GradientShap nsamples {n_samples} x {n} instances")

    def attribute(self, inputs, target, options: ExplainOptions):
        torch = self._torch
        if self.background is not None:
            baselines = self.tensor(self.background.data.reshape((len(self.background.data), *inputs.shape[1:])))
        else:
            baselines = torch.zeros((1, *inputs.shape[1:]), device=self.device)
        n_samples = options.nsamples or self.settings.nsamples or 50
        torch.manual_seed(0)  # same request, same answer
        attributions, delta = self._method.attribute(
            inputs,
            baselines=baselines,
            target=target,
            n_samples=n_samples,
            stdevs=float(self.settings.params.get("stdevs", 0.0)),
            return_convergence_delta=True,
        )
        outputs = self.forward(baselines)
        if target is None:
            base = np.full(len(inputs), outputs.reshape(len(outputs), -1)[:, 0].mean())
        else:
            base = outputs.mean(0)[target.cpu().numpy()]
        delta = delta.detach().cpu().numpy().reshape(len(inputs), n_samples).mean(1)
        return attributions, base, {"mean_convergence_delta": delta.tolist(), "n_samples": [n_samples] * len(inputs)}
