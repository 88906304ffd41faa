"""What the token-attribution backends of text classifiers share (huggingface `sequence_classification`).

An instance is a string (V1 `{"instances": ["text", ...]}`, V2 BYTES). The answer is one
`TextExplanation` per text: the tokenizer's tokens as slices of the text (`offsets`, special
tokens left out), one attribution each towards the target class, and the method's promise
(`base_value + sum(attributions)` against `prediction`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from infertap.explainers.backends.base import ExplainOptions, pick_target
from infertap.explainers.backends.hf_text import HFExplainer
from infertap.explainers.errors import BadExplainRequest
from infertap.explainers.explanation import TextExplanation


@dataclass
class Encoded:
    """A tokenized batch, padded: ids and attention mask (torch), and per text its tokens' offsets."""

    input_ids: object
    attention_mask: object
    special: object  # bool tensor: special tokens and padding (kept at the baseline)
    offsets: list[list[tuple[int, int]]]
    keep: list[list[int]]  # per text, the positions of its own (non-special) tokens


class TextClassifierExplainer(HFExplainer):
    task = "sequence_classification"
    #: The method named in the answers (`TextExplanation.method`).
    method: ClassVar[str] = ""

    def check_input(self, X: np.ndarray) -> np.ndarray:
        texts = self.texts(X, "text")
        for i, text in enumerate(texts):
            if not text.strip():
                raise BadExplainRequest(f"instance {i} holds no text to attribute")
        return np.array(texts, dtype=object)

    def encode(self, texts: list[str], first: int = 0) -> Encoded:
        """Tokenize like the served model (special tokens added); BadExplainRequest past the token limit
        (naming the instance: `first` is the index of texts[0] in the request)."""
        enc = self.tokenizer(
            texts,
            padding=True,
            return_tensors="pt",
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        mask = enc["attention_mask"]
        lengths = mask.sum(1).tolist()
        for i, n in enumerate(lengths):
            if n > self.max_tokens:
                raise self.too_long(first + i, n)
        special = enc["special_tokens_mask"].bool() | (mask == 0)
        offsets = [[(int(a), int(b)) for a, b in row] for row in enc["offset_mapping"].tolist()]
        keep = [[j for j in range(len(row)) if not special[i, j]] for i, row in enumerate(offsets)]
        return Encoded(enc["input_ids"].to(self.device), mask.to(self.device), special.to(self.device), offsets, keep)

    def logits(self, input_ids, attention_mask):
        """The model's logits (what captum differentiates)."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def targets(self, outputs: np.ndarray, options: ExplainOptions) -> list[int]:
        """The class explained per row: the requested one, else the predicted one."""
        return [int(pick_target(row, options.target)[0] or 0) for row in outputs]

    def explanation(
        self,
        text: str,
        offsets: list[tuple[int, int]],
        keep: list[int],
        values: np.ndarray,
        target: int,
        prediction: float,
        base_value: float,
        **fields,
    ) -> TextExplanation:
        """A TextExplanation of `text` from per-position `values` (special positions dropped)."""
        spans = [offsets[j] for j in keep]
        return TextExplanation(
            method=self.method,
            text=text,
            tokens=[text[a:b] for a, b in spans],
            offsets=spans,
            attributions=[float(values[j]) for j in keep],
            target=target,
            target_label=self.labels.get(target),
            prediction=prediction,
            base_value=base_value,
            **fields,
        )
