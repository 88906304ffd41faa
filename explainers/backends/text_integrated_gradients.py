"""captum LayerIntegratedGradients (BSD-3) on a text classifier's input embeddings: token attributions.

The path runs from a baseline text, the same tokens with every one of the text's own tokens
replaced by the pad token (special tokens such as [CLS] and [SEP] kept, so they get exactly
0), to the text itself, in the output of the word-embedding layer. A token's attribution is
the sum over the embedding dimensions. Completeness: the attributions add up to the target
logit at the text minus at the baseline (`prediction - base_value`), up to the reported
`convergence_delta`, which shrinks with more steps (`nsamples` = n_steps per request).
"""

from __future__ import annotations

import numpy as np

from infertap.explainers.backends.base import ExplainOptions
from infertap.explainers.backends.ig_steps import check_ig_steps
from infertap.explainers.backends.text_classifier import TextClassifierExplainer
from infertap.explainers.explanation import TextExplanation


class TextIntegratedGradientsExplainer(TextClassifierExplainer):
    type_name = "TextIntegratedGradients"
    method = "LayerIntegratedGradients"

    def _load(self) -> None:
        super()._load()
        from captum.attr import LayerIntegratedGradients

        self._method = LayerIntegratedGradients(self.logits, self.embeddings)

    def check_work(self, n: int, options: ExplainOptions) -> None:
        """Bounded Gauss-Legendre steps; without internal_batch_size captum scales every text n_steps times
        in one pass."""
        n_steps = options.nsamples or self.settings.n_steps
        check_ig_steps(self.type_name, n_steps, self.settings.params.get("method", "gausslegendre"))
        if self.settings.internal_batch_size is None:
            self.check_rows(n_steps * n, f"TextIntegratedGradients nsamples (n_steps) {n_steps} x {n} texts")

    def explain(self, X: np.ndarray, options: ExplainOptions) -> list[TextExplanation]:
        torch = self._torch
        self.set_deadline(options.deadline)
        texts = list(X)
        enc = self.encode(texts)
        ids, mask = enc.input_ids, enc.attention_mask
        baseline = torch.where(enc.special, ids, torch.full_like(ids, self.pad_id))
        n_steps = options.nsamples or self.settings.n_steps
        # captum hooks the embedding layer during the call, which every forward pass of the model (other
        # threads' too) goes through: the model explains one request at a time
        with self._lock:
            with torch.no_grad():
                outputs = self.logits(ids, mask).float().cpu().numpy()
                base_outputs = self.logits(baseline, mask).float().cpu().numpy()
            targets = self.targets(outputs, options)
            attributions, delta = self._method.attribute(
                ids,
                baselines=baseline,
                additional_forward_args=(mask,),
                target=targets,
                n_steps=n_steps,
                method=self.settings.params.get("method", "gausslegendre"),
                internal_batch_size=self.settings.internal_batch_size,
                return_convergence_delta=True,
            )
        per_token = attributions.sum(-1).detach().float().cpu().numpy()
        deltas = delta.detach().float().cpu().numpy().reshape(-1)
        return [
            self.explanation(
                text,
                enc.offsets[i],
                enc.keep[i],
                per_token[i],
                targets[i],
                float(outputs[i, targets[i]]),
                float(base_outputs[i, targets[i]]),
                output_space="logit",
                convergence_delta=float(deltas[i]),
                raw={
                    "model_output": outputs[i].tolist(),
                    "baseline_output": base_outputs[i].tolist(),
                    "n_steps": n_steps,
                    "device": self.device.type,
                },
            )
            for i, text in enumerate(texts)
        ]
