"""alibi AnchorText (BSL 1.1): the words that anchor a text prediction.

The predictor gets strings (V1 `instances` of strings, V2 BYTES). alibi needs a spaCy
pipeline for tokenising: `params.spacy_model` (e.g. `en_core_web_md`) when installed;
otherwise a blank English tokenizer (`spacy.blank("en")`), which needs no download and is
enough for the default `sampling_strategy: unknown` (words replaced by UNK). The
`similarity` strategy needs a model with word vectors, and `language_model` a
transformers masked LM: both need models these machines cannot download.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from infertap.explainers.backends.anchor_base import AnchorExplainer
from infertap.explainers.errors import BadExplainRequest, ExplainerLoadError

log = logging.getLogger("infertap.explainers")


class AnchorTextExplainer(AnchorExplainer):
    type_name = "AnchorText"
    requires = ("alibi", "spacy")

    def build(self) -> Any:
        import spacy
        from alibi.explainers import AnchorText

        params = self.settings.params
        strategy = params.get("sampling_strategy", "unknown")
        name = params.get("spacy_model")
        if name:
            try:
                nlp = spacy.load(name)
            except OSError as err:
                raise ExplainerLoadError(
                    f"spaCy model {name!r} is not installed ({err}); "
                    "leave spacy_model unset to use a blank English tokenizer"
                ) from None
        elif strategy == "unknown":
            nlp = spacy.blank("en")
        else:
            raise ExplainerLoadError(
                f"sampling_strategy {strategy!r} needs params.spacy_model (a spaCy model with vectors)"
            )
        kwargs = {k: params[k] for k in ("sample_proba", "top_n", "temperature", "use_proba") if k in params}
        return AnchorText(self.model_fn(), sampling_strategy=strategy, nlp=nlp, seed=0, **kwargs)

    def check_input(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.dtype.kind not in "UOS":
            raise BadExplainRequest(f"AnchorText explains strings, got {X.dtype} data")
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in X.reshape(-1)], dtype=object)

    def instance(self, x: Any) -> str:
        return str(x)

    def names_for(self, x: Any) -> list[str]:
        return str(x).split()
