"""captum LLMAttribution with FeatureAblation (BSD-3): what removing each prompt segment does to the completion.

The prompt is a `TextTemplateInput` whose features are its segments, removed (the empty
string) one at a time; each attribution is the completion's log-probability with the full
prompt minus with that segment removed, so a positive score means the segment made the
completion likelier. One forward pass per segment plus one (captum's sequence forward: the
completion teacher-forced after the prompt), tokenized as the model server tokenizes prompts.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from infertap.explainers.backends.base import ExplainOptions
from infertap.explainers.backends.llm_base import LLMExplainer
from infertap.explainers.backends.llm_prompt import Prompt


class LLMFeatureAblationExplainer(LLMExplainer):
    type_name = "LLMFeatureAblation"
    method = "FeatureAblation"

    def attribute(
        self,
        prompt: Prompt,
        prompt_ids: list[int],
        target_ids: list[int],
        token_log_probs: np.ndarray,
        options: ExplainOptions,
    ) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
        from captum.attr import FeatureAblation, LLMAttribution

        torch = self._torch
        inp = _template_input(prompt, self.tokenizer, self.device)
        method = LLMAttribution(FeatureAblation(self.model), self.tokenizer, attr_target="log_prob")
        with warnings.catch_warnings():  # captum's pretty-printing of the completion's tokens warns on byte-level BPE
            warnings.simplefilter("ignore")
            result = method.attribute(inp, target=torch.tensor(target_ids, device=self.device), forward_in_tokens=False)
        scores = result.seq_attr.detach().float().cpu().numpy().astype(np.float64)
        per_token = result.token_attr.detach().float().cpu().numpy() if result.token_attr is not None else np.empty(0)
        return scores, {"raw": {"forward_passes": len(prompt.segments) + 1}}, per_token


def _template_input(prompt: Prompt, tokenizer: Any, device: Any):
    """captum's TextTemplateInput over the prompt's segments, whose model input is token ids tokenized
    as the server tokenizes the prompt (a chat template's text holds its own special tokens)."""
    import torch
    from captum.attr import TextTemplateInput

    # a prompt with every segment removed may tokenize to nothing: the model then reads one start token
    start = next(
        (t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None), 0
    )

    class PromptInput(TextTemplateInput):
        def to_model_input(self, perturbed_tensor=None):
            text = super().to_model_input(perturbed_tensor)
            ids = tokenizer(text, add_special_tokens=prompt.add_special_tokens)["input_ids"] or [start]
            return torch.tensor([ids], dtype=torch.long, device=device)

    return PromptInput(prompt.render, [s.text for s in prompt.segments])
