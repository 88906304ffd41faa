"""captum DeepLift: needs a Python `nn.Module` (it hooks each layer's forward).

TorchScript modules cannot take those hooks ("register_forward_pre_hook is not supported
on ScriptModules"), so DeepLift reads a whole pickled module (`torch.save(model)`) from
`explainer_uri`, and only with `allow_pickle` (the class must be importable here).
"""

from __future__ import annotations

from infertap.explainers.backends.base import ExplainOptions
from infertap.explainers.backends.captum_base import CaptumExplainer
from infertap.explainers.backgrounds import require_pickle_opt_in
from infertap.explainers.errors import ExplainerLoadError


class DeepLiftExplainer(CaptumExplainer):
    type_name = "DeepLift"

    def _load_model(self):
        if not self.settings.explainer_uri:
            raise ExplainerLoadError(
                "DeepLift needs a Python nn.Module, which TorchScript cannot give: save it with "
                "torch.save(model, PATH), pass explainer_uri PATH and --allow-pickle"
            )
        path = require_pickle_opt_in(self.settings.explainer_uri, self.settings.allow_pickle)
        torch = self._torch
        try:
            model = torch.load(str(path), map_location=self.device, weights_only=False)
        except Exception as err:  # noqa: BLE001
            raise ExplainerLoadError(
                f"cannot load nn.Module from {self.settings.explainer_uri}: {type(err).__name__}: {err}"
            ) from None
        if not isinstance(model, torch.nn.Module) or isinstance(model, torch.jit.ScriptModule):
            raise ExplainerLoadError(
                f"{self.settings.explainer_uri} holds a {type(model).__name__}, not a Python nn.Module"
            )
        return model.eval()

    def _load(self) -> None:
        super()._load()
        from captum.attr import DeepLift

        self._method = DeepLift(self.model)

    def attribute(self, inputs, target, options: ExplainOptions):
        baselines = self.baseline(inputs)
        attributions, delta = self._method.attribute(
            inputs, baselines=baselines, target=target, return_convergence_delta=True
        )
        base = self.target_values(self.forward(baselines), target)
        return attributions, base, {"convergence_delta": delta.detach().cpu().numpy().tolist()}
