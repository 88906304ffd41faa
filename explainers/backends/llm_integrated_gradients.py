"""captum LLMGradientAttribution with LayerIntegratedGradients (BSD-3) on the input embeddings, summed per segment.

captum attributes each completion token's log-probability (given the prompt and the
completion tokens before it) to the prompt tokens' embeddings, integrating from a baseline
prompt, the pad token in place of every token of an attributed segment (role markers and
special tokens stay, so they get 0), to the prompt itself; per token it sums over the
embedding dimensions and over the completion's tokens. A segment's score is the sum over its
tokens (a token belongs to the segment holding its first non-space character). Completeness:
the scores add up to `target_log_prob - base_value` (the log-probability at the baseline),
and `convergence_delta` says by how much they miss; more steps (`nsamples`) shrink it. Cost:
n_steps forward and backward passes per completion token.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from infertap.explainers.backends.base import ExplainOptions
from infertap.explainers.backends.ig_steps import check_ig_steps
from infertap.explainers.backends.llm_base import LLMExplainer
from infertap.explainers.backends.llm_prompt import Prompt
from infertap.explainers.errors import BadExplainRequest


class LLMIntegratedGradientsExplainer(LLMExplainer):
    type_name = "LLMIntegratedGradients"
    method = "LayerIntegratedGradients"

    def check_work(self, n: int, options: ExplainOptions) -> None:
        """Bounded Gauss-Legendre steps; without internal_batch_size captum scales the prompt n_steps times
        in one pass."""
        n_steps = options.nsamples or self.settings.n_steps
        check_ig_steps(self.type_name, n_steps, self.settings.params.get("method", "gausslegendre"))
        if self.settings.internal_batch_size is None:
            self.check_rows(n_steps * n, f"LLMIntegratedGradients nsamples (n_steps) {n_steps} x {n} prompts")

    def explain(self, X: np.ndarray, options: ExplainOptions):
        # captum hooks the embedding layer during the call, which every forward pass of the model (other
        # threads' generation too) goes through: the model explains one request at a time
        with self._lock:
            return super().explain(X, options)

    def attribute(
        self,
        prompt: Prompt,
        prompt_ids: list[int],
        target_ids: list[int],
        token_log_probs: np.ndarray,
        options: ExplainOptions,
    ) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
        from captum.attr import LayerIntegratedGradients, LLMGradientAttribution

        torch = self._torch
        owner = segment_of_tokens(self.tokenizer, prompt, len(prompt_ids))
        ids = torch.tensor([prompt_ids], device=self.device)
        if all(o < 0 for o in owner):
            raise BadExplainRequest("no prompt token falls in a segment to attribute")
        mask = torch.tensor([[o >= 0 for o in owner]], device=self.device)
        inp = _token_input(ids, mask, self.tokenizer, self.pad_id)
        method = LLMGradientAttribution(LayerIntegratedGradients(self.model, self.embeddings), self.tokenizer)
        n_steps = options.nsamples or self.settings.n_steps
        with warnings.catch_warnings():  # captum's pretty-printing of byte-level BPE tokens warns
            warnings.simplefilter("ignore")
            result = method.attribute(
                inp,
                target=torch.tensor(target_ids, device=self.device),
                n_steps=n_steps,
                method=self.settings.params.get("method", "gausslegendre"),
                internal_batch_size=self.settings.internal_batch_size,
            )
        per_token = result.token_attr.detach().float().cpu().numpy().astype(np.float64)  # (completion, prompt tokens)
        owners = np.array([o for o in owner if o >= 0], dtype=np.int64)
        # (segments, prompt tokens) one-hot: summing a segment's tokens is one matrix product
        membership = np.zeros((len(prompt.segments), len(owners)))
        membership[owners, np.arange(len(owners))] = 1.0
        per_segment = per_token @ membership.T
        baseline = ids.clone()
        baseline[mask] = self.pad_id
        base_value = float(self.log_probs(baseline, target_ids).sum())
        scores = per_segment.sum(0)
        delta = float(scores.sum() - (token_log_probs.sum() - base_value))
        fields = {
            "base_value": base_value,
            "convergence_delta": delta,
            "raw": {"n_steps": n_steps, "attributed_tokens": int(len(owners))},
        }
        return scores, fields, per_segment


def segment_of_tokens(tokenizer: Any, prompt: Prompt, n: int) -> list[int]:
    """For each of the prompt's n tokens, the index of the segment holding its first non-space character
    (-1: a fixed piece, such as a role marker or a special token)."""
    text = prompt.text
    enc = tokenizer(text, add_special_tokens=prompt.add_special_tokens, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if len(offsets) != n:
        raise RuntimeError(f"the prompt tokenized to {len(offsets)} tokens, then to {n}")
    special = set(tokenizer.all_special_ids)
    owner = []
    for token, (a, b) in zip(enc["input_ids"], offsets, strict=True):
        if token in special or b <= a:
            owner.append(-1)
            continue
        first = a + (len(text[a:b]) - len(text[a:b].lstrip()) if text[a:b].strip() else 0)
        owner.append(next((k for k, (s, e) in enumerate(prompt.spans) if s <= first < e), -1))
    return owner


def _token_input(ids: Any, mask: Any, tokenizer: Any, baseline: int):
    """captum's TextTokenInput over the prompt's token ids as the server tokenizes them, with the tokens
    of fixed pieces left out by position (captum's own skip_tokens skips by token id, everywhere)."""
    from captum.attr import TextTokenInput

    class PromptTokens(TextTokenInput):
        def __init__(self) -> None:  # noqa: D107 - the fields captum's TextTokenInput sets, set by position
            self.inp_tensor = ids
            self.itp_mask = mask
            self.itp_tensor = ids[mask].unsqueeze(0)
            self.skip_tokens = None
            self.values = tokenizer.convert_ids_to_tokens(self.itp_tensor[0].tolist())
            self.tokenizer = tokenizer
            self.n_itp_features = len(self.values)
            self.baselines = baseline

    return PromptTokens()
