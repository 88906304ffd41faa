"""shap's partition explainer (MIT) over a text classifier's tokenizer: token attributions that add up exactly.

`shap.maskers.Text` with the model's own tokenizer hides runs of tokens (its mask token, e.g.
[MASK]), following the hierarchy shap builds over the tokens; `shap.Explainer` picks the
partition explainer for it (Owen values). The attributions of one text plus the base value
(the output with every token masked) equal the model's output for that text, per class.

The model is the served one when `predictor_url` is set (the black-box path: every masked
batch is one request, V2 BYTES with `predict_proba`, marked `infertap-skip-logging`), else
the folder's model run here. Either way the tokenizer comes from the folder (`storage_uri`),
and outputs are class probabilities. `nsamples` is shap's `max_evals` (default 500);
`batch_size` (masked texts per model call, default 64) may be set per request.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from infertap.explainers.backends.base import ExplainOptions, Param
from infertap.explainers.backends.text_classifier import TextClassifierExplainer
from infertap.explainers.explanation import TextExplanation

DEFAULT_MAX_EVALS = 500
DEFAULT_BATCH = 64
MAX_BATCH = 4096


class TextShapExplainer(TextClassifierExplainer):
    type_name = "TextShap"
    method = "PartitionShap"
    requires = ("torch", "transformers", "shap")

    def _load(self) -> None:
        super()._load()
        import shap

        names = [self.labels.get(i, str(i)) for i in range(int(getattr(self.config, "num_labels", 0) or 0))]
        self._shap = shap.Explainer(self.model_outputs, shap.maskers.Text(self.tokenizer), output_names=names or None)

    def request_params(self) -> dict[str, Param]:
        return {"batch_size": Param(int, 1, MAX_BATCH)}

    def model_outputs(self, texts: Any) -> np.ndarray:
        """Class probabilities of `texts`: the predictor's when there is one, else the folder's model's."""
        texts = [str(t) for t in np.asarray(texts, dtype=object).reshape(-1)]
        if self.predictor is not None:
            out = self.model_fn()(np.array(texts, dtype=object))
            return np.asarray(out, dtype=np.float64).reshape(len(texts), -1)
        torch = self._torch
        rows = []
        for start in range(0, len(texts), DEFAULT_BATCH):
            enc = self.tokenizer(
                texts[start : start + DEFAULT_BATCH],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            ).to(self.device)
            with torch.no_grad():
                logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            rows.append(torch.softmax(logits.float(), -1).cpu().numpy())
        return np.concatenate(rows).astype(np.float64)

    def explain(self, X: np.ndarray, options: ExplainOptions) -> list[TextExplanation]:
        texts = list(X)
        # one text at a time, unpadded: the token limit, and the offsets shap's token rows line up with
        encoded = [self.encode([text], i) for i, text in enumerate(texts)]
        max_evals = options.nsamples or self.settings.nsamples or DEFAULT_MAX_EVALS
        batch = int(options.params.get("batch_size", self.settings.params.get("batch_size", DEFAULT_BATCH)))
        with self._lock:  # the shap explainer keeps per-call state
            self.set_deadline(options.deadline)
            outputs = self.model_outputs(texts)
            result = self._shap(texts, max_evals=max_evals, batch_size=batch, silent=True)
        targets = self.targets(outputs, options)
        out = []
        for i, text in enumerate(texts):
            values = np.asarray(result.values[i], dtype=np.float64)  # (tokens with specials, classes)
            base = np.asarray(result.base_values[i], dtype=np.float64).reshape(-1)
            t, enc = targets[i], encoded[i]
            if len(values) != len(enc.offsets[0]):
                raise RuntimeError(f"shap returned {len(values)} token rows for {len(enc.offsets[0])} tokens")
            out.append(
                self.explanation(
                    text,
                    enc.offsets[0],
                    enc.keep[0],
                    values[:, t],
                    t,
                    float(outputs[i, t]),
                    float(base[t] if base.size > 1 else base[0]),
                    output_space="probability",
                    raw={
                        "model_output": outputs[i].tolist(),
                        "base_values": base.tolist(),
                        "max_evals": max_evals,
                        "predictor": self.predictor is not None,
                    },
                )
            )
        return out
