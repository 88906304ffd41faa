"""What the alibi anchor backends share (alibi 0.9.6, Business Source License 1.1: extra `alibi`).

Anchors answer with alibi's Explanation JSON (`{"meta", "data"}`, as KServe's alibi
explainer did) in each instance's `raw`; they give no attribution values. alibi explains
one instance per call, so a batch request loops (MLServer#1018). The anchor search asks the
predictor for `batch_size` samples per round: raise it (`params.batch_size`, default 1000
here, 100 in alibi) for fewer round trips. alibi's `explain` keyword arguments (threshold,
delta, tau, beam_size, coverage_samples, ...) come from `params` in the settings and in
each request. A saved explainer folder (`alibi.saving.save_explainer`, dill inside) loads
only with `allow_pickle`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from infertap.explainers.backends.base import Explainer, ExplainOptions
from infertap.explainers.backgrounds import require_pickle_opt_in
from infertap.explainers.explanation import InstanceExplanation

EXPLAIN_KEYS = (
    "threshold",
    "delta",
    "tau",
    "batch_size",
    "coverage_samples",
    "beam_size",
    "stop_on_first",
    "max_anchor_size",
    "min_samples_start",
    "n_covered_ex",
    "binary_cache_size",
    "cache_margin",
    "p_sample",
    "use_proba",
    "verbose",
    "verbose_every",
)


class AnchorExplainer(Explainer):
    kind = "blackbox"

    def _load(self) -> None:
        if self.settings.explainer_uri:
            from alibi.saving import load_explainer

            path = require_pickle_opt_in(self.settings.explainer_uri, self.settings.allow_pickle)
            self._alibi = load_explainer(str(path), predictor=self.model_fn())
        else:
            self._alibi = self.build()

    def build(self) -> Any:
        """The alibi explainer, built (and fitted) from settings and background data."""
        raise NotImplementedError

    def explain_kwargs(self, options: ExplainOptions) -> dict[str, Any]:
        merged = {"batch_size": 1000} | dict(self.settings.params) | dict(options.params)
        return {k: v for k, v in merged.items() if k in EXPLAIN_KEYS}

    def instance(self, x: np.ndarray) -> Any:
        return x

    def explain(self, X: np.ndarray, options: ExplainOptions) -> list[InstanceExplanation]:
        kwargs = self.explain_kwargs(options)
        out = []
        with self._lock:
            self.set_deadline(options.deadline)
            for x in X:
                result = json.loads(self._alibi.explain(self.instance(x), **kwargs).to_json())
                prediction = result["data"].get("raw", {}).get("prediction")
                label = int(np.asarray(prediction).reshape(-1)[0]) if prediction is not None else None
                out.append(
                    InstanceExplanation(
                        feature_names=self.names_for(x),
                        values=None,
                        base_value=None,
                        prediction=float(label) if label is not None else None,
                        target=label,
                        output_space="label",
                        shape=list(np.shape(x)) if np.ndim(x) > 1 else None,
                        raw=result,
                    )
                )
        return out

    def names_for(self, x: Any) -> list[str]:
        return self.feature_names(int(np.size(x)))
