"""shap.KernelExplainer (MIT) over the HTTP predictor: black-box SHAP values.

Per instance shap evaluates `nsamples x |background|` perturbed rows in one model call,
which the predictor client sends in requests of up to `max_rows_per_request` rows. Keep
the background small (`infertap fit` summarises it with k-means): cost grows with it.
"""

from __future__ import annotations

import numpy as np

from infertap.explainers.backends.base import Explainer, ExplainOptions, floats, pick_target, select
from infertap.explainers.explanation import InstanceExplanation


class KernelShapExplainer(Explainer):
    type_name = "KernelShap"
    kind = "blackbox"
    needs_background = True

    def _load(self) -> None:
        self._explainer = None  # built on the first request: building calls the predictor (expected value)

    def _shap(self):
        if self._explainer is None:
            import shap
            from shap.utils._legacy import DenseData

            bg = self.require_background()
            flat = bg.data.reshape(len(bg.data), -1)
            names = self.feature_names(flat.shape[1])
            data = DenseData(flat, names, None, bg.weights) if bg.weights is not None else flat
            self._explainer = shap.KernelExplainer(self.model_fn(), data, link="identity")
        return self._explainer

    def check_work(self, n: int, options: ExplainOptions) -> None:
        """shap tiles the background nsamples times for each instance (`synth_data`)."""
        rows = len(self.require_background().data)
        m = int(np.prod(self.feature_shape)) if self.feature_shape else 1
        nsamples = options.nsamples or self.settings.nsamples or 2 * m + 2048  # shap's "auto"
        self.check_rows(nsamples * rows, f"KernelShap nsamples {nsamples} x {rows} background rows")

    def explain(self, X: np.ndarray, options: ExplainOptions) -> list[InstanceExplanation]:
        flat = X.reshape(len(X), -1)
        with self._lock:
            self.set_deadline(options.deadline)
            explainer = self._shap()
            outputs = self.model_fn()(flat)  # one request for every instance's prediction
            kwargs = {"nsamples": options.nsamples} if options.nsamples else {}
            values = np.asarray(explainer.shap_values(flat, silent=True, **kwargs))
            expected = np.asarray(explainer.expected_value, dtype=np.float64)
        names = self.feature_names(flat.shape[1])
        out = []
        for i in range(len(flat)):
            target, prediction = pick_target(outputs[i], options.target)
            vals, base = select(values[i], expected, target)
            out.append(
                InstanceExplanation(
                    feature_names=names,
                    values=floats(vals),
                    base_value=base,
                    prediction=prediction,
                    target=target,
                    output_space="probability" if self.require_predictor().predict_proba else "raw",
                    raw={
                        "shap_values": np.asarray(values[i]).T.tolist() if values[i].ndim > 1 else floats(values[i]),
                        "expected_value": floats(expected),
                        "model_output": floats(outputs[i]),
                        "nsamples": int(explainer.nsamples),
                    },
                )
            )
        return out
