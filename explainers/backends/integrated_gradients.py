"""captum IntegratedGradients: attributions that sum to f(x) - f(baseline) (completeness), up to `convergence_delta`."""

from __future__ import annotations

from infertap.explainers.backends.base import ExplainOptions
from infertap.explainers.backends.captum_base import CaptumExplainer
from infertap.explainers.backends.ig_steps import check_ig_steps


class IntegratedGradientsExplainer(CaptumExplainer):
    type_name = "IntegratedGradients"

    def _load(self) -> None:
        super()._load()
        from captum.attr import IntegratedGradients

        self._method = IntegratedGradients(self.model)

    def check_work(self, n: int, options: ExplainOptions) -> None:
        """Bounded Gauss-Legendre steps; without internal_batch_size captum scales every instance n_steps
        times in one pass."""
        n_steps = options.nsamples or self.settings.n_steps
        check_ig_steps(self.type_name, n_steps, self.settings.params.get("method", "gausslegendre"))
        if self.settings.internal_batch_size is None:
            self.check_rows(n_steps * n, f"IntegratedGradients nsamples (n_steps) {n_steps} x {n} instances")

    def attribute(self, inputs, target, options: ExplainOptions):
        baselines = self.baseline(inputs)
        n_steps = options.nsamples or self.settings.n_steps
        attributions, delta = self._method.attribute(
            inputs,
            baselines=baselines,
            target=target,
            n_steps=n_steps,
            method=self.settings.params.get("method", "gausslegendre"),
            internal_batch_size=self.settings.internal_batch_size,
            return_convergence_delta=True,
        )
        base = self.target_values(self.forward(baselines), target)
        return (
            attributions,
            base,
            {"convergence_delta": delta.detach().cpu().numpy().tolist(), "n_steps": [n_steps] * len(inputs)},
        )
