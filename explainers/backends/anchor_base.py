"""What the alibi anchor backends share (alibi 0.9.6, Business Source License 1.1: extra `alibi`).

Anchors answer with alibi's Explanation JSON (`{"meta", "data"}`, as KServe's alibi
explainer did) in each instance's `raw`; they give no attribution values. alibi explains
one instance per call, so a batch request loops (MLServer#1018). The anchor search asks the
predictor for `batch_size` samples per round: raise it (`params.batch_size`, default 1000
here, 100 in alibi) for fewer round trips. alibi's `explain` keyword arguments (threshold,
delta, tau, beam_size, coverage_samples, ...) come from `params` in the settings and in
each request; a request's are bounded (`request_params`: sample counts at most
`max_samples`). A saved explainer (`alibi.saving.save_explainer`'s folder, or KServe's: a
folder holding `explainer.dill`, or that file) loads only with `allow_pickle`; its predictor
is reset to the served model, as KServe's alibi explainer does.

Memory: alibi preallocates a sample cache of `batch_size x binary_cache_size` rows (int64,
one column per discretised feature) per explained instance, and grows it when full. With
alibi's default cache (10,000 batches) and our `batch_size` of 1000 that was 916 MiB for
iris, so a server near its memory limit failed every request once one had failed (issue
19). The cache now starts at about `CACHE_ROWS` rows unless `binary_cache_size` is given.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np

from infertap.explainers.backends.base import Explainer, ExplainOptions, Param
from infertap.explainers.backgrounds import load_pickled, require_pickle_opt_in
from infertap.explainers.errors import BadExplainRequest, ExplainerLoadError
from infertap.explainers.explanation import InstanceExplanation

#: The file KServe's alibi explainer unpickles from its storage_uri folder (its samples' train.py writes it).
KSERVE_EXPLAINER_FILE = "explainer.dill"
#: Rows alibi's sample cache starts with (it grows by as many when full): 9 MiB for iris.
CACHE_ROWS = 100_000
#: The most rows a request's own `binary_cache_size x batch_size` may preallocate.
MAX_CACHE_ROWS = 1_000_000
MAX_BEAM_SIZE = 20  # candidates kept per round; each costs predictor calls
MAX_COVERED_EX = 100  # examples per anchor in the answer

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
    requires: ClassVar[tuple[str, ...]] = ("alibi",)
    saved_holds_data = True  # a saved alibi explainer was fitted on its training rows

    def _load(self) -> None:
        if self.settings.explainer_uri:
            path = require_pickle_opt_in(self.settings.explainer_uri, self.settings.allow_pickle)
            if (path / "meta.dill").exists():  # alibi.saving.save_explainer's folder
                from alibi.saving import load_explainer

                self._alibi = load_explainer(str(path), predictor=self.model_fn())
            else:  # KServe's artefact: a folder holding explainer.dill (or the .dill file itself)
                saved = path / KSERVE_EXPLAINER_FILE if path.is_dir() else path
                self._alibi = load_pickled(str(saved), True)
                if not hasattr(self._alibi, "reset_predictor"):
                    raise ExplainerLoadError(f"{saved} holds a {type(self._alibi).__name__}, not an alibi explainer")
                self._alibi.reset_predictor(self.model_fn())  # as KServe's alibi explainer sets it after loading
        else:
            self._alibi = self.build()

    def build(self) -> Any:
        """The alibi explainer, built (and fitted) from settings and background data."""
        raise NotImplementedError

    def request_params(self) -> dict[str, Param]:
        """alibi `explain` keywords a request may set; sample counts at most max_samples."""
        top = self.settings.max_samples
        return {
            "threshold": Param(float, 0.0, 1.0),
            "delta": Param(float, 0.0, 1.0, exclusive=True),
            "tau": Param(float, 0.0, 1.0, exclusive=True),
            "batch_size": Param(int, 1, top, "max_samples"),
            "coverage_samples": Param(int, 1, top, "max_samples"),
            "min_samples_start": Param(int, 1, top, "max_samples"),
            "binary_cache_size": Param(int, 1, top, "max_samples"),
            "cache_margin": Param(int, 1, top, "max_samples"),
            "beam_size": Param(int, 1, MAX_BEAM_SIZE),
            "n_covered_ex": Param(int, 1, MAX_COVERED_EX),
            "max_anchor_size": Param(int, 1, self.max_anchor_size(), nullable=True),
            "stop_on_first": Param(bool),
        }

    def max_anchor_size(self) -> int:
        """Features an anchor can name at most (its instance's size when known)."""
        return int(np.prod(self.feature_shape)) if self.feature_shape else 10_000

    def explain_kwargs(self, options: ExplainOptions) -> dict[str, Any]:
        """alibi `explain` keywords: ours, then the settings' params, then the request's (already bounded)."""
        own = {k: v for k, v in options.params.items() if k in self.request_params()}
        merged = {"batch_size": 1000} | dict(self.settings.params) | own
        kwargs = {k: v for k, v in merged.items() if k in EXPLAIN_KEYS}
        batch = int(kwargs["batch_size"])
        if "binary_cache_size" in own and batch * own["binary_cache_size"] > MAX_CACHE_ROWS:
            raise BadExplainRequest(
                f"parameters binary_cache_size x batch_size must be at most {MAX_CACHE_ROWS} rows "
                f"(alibi preallocates them), got {own['binary_cache_size']} x {batch}"
            )
        kwargs.setdefault("binary_cache_size", max(2, CACHE_ROWS // batch))
        return kwargs

    def check_work(self, n: int, options: ExplainOptions) -> None:
        self.explain_kwargs(options)  # refuses an oversized sample cache before any work starts

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
        n = int(np.size(x))
        saved = None if self.settings.feature_names else getattr(self._alibi, "feature_names", None)
        if isinstance(saved, list) and len(saved) == n:  # a saved explainer's own names (KServe's artefacts)
            return [str(name) for name in saved]
        return self.feature_names(n)
