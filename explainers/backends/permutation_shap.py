"""Permutation SHAP over the HTTP predictor: black-box SHAP values from feature orderings.

The estimator of `shap.PermutationExplainer` (MIT): walk random orderings of the features
(each with its reverse, antithetic sampling as shap's forward and backward pass), switch
features from the background to the instance one at a time, and credit each feature with
the change in the mean output. Values add up exactly: base value (mean output over the
background) plus the sum of values is the prediction.

shap's own class makes one model call per permutation, so behind HTTP an instance costs
`max_evals / (2M+1)` round trips. Here every masked row of one instance is built with
numpy and sent at once: one model call per instance, which the predictor client splits only
by `max_rows_per_request`. `nsamples` plays shap's `max_evals`: masked evaluations per
instance, each against every background row.
"""

from __future__ import annotations

import numpy as np

from infertap.explainers.backends.base import Explainer, ExplainOptions, floats, pick_target, select
from infertap.explainers.errors import BadExplainRequest
from infertap.explainers.explanation import InstanceExplanation

DEFAULT_MAX_EVALS = 500


def permutation_shap(
    f, x: np.ndarray, background: np.ndarray, max_evals: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values (M[, K]), base value ([K]), f(x) ([K])) for one instance x (M,) against background (N, M)."""
    m, n = x.shape[0], len(background)
    pairs = max(1, (max_evals - 2) // max(1, 2 * (m - 1)))
    forward = np.stack([rng.permutation(m) for _ in range(pairs)])
    perms = np.concatenate([forward, forward[:, ::-1]])  # antithetic: each ordering and its reverse
    rank = np.argsort(perms, axis=1)  # rank[p, j]: position of feature j in ordering p
    steps = np.arange(1, m)  # prefixes of 1..M-1 features from x; 0 and M are shared by all orderings
    masks = rank[:, None, :] < steps[None, :, None]  # (P, M-1, M)
    middle = np.where(masks[:, :, None, :], x, background[None, None])  # (P, M-1, N, M)
    rows = np.concatenate([background, middle.reshape(-1, m), np.broadcast_to(x, (1, m))])
    out = np.asarray(f(rows), dtype=np.float64)
    out = out.reshape(len(rows), -1)
    k = out.shape[1]
    base = out[:n].mean(0)
    fx = out[-1]
    mid = out[n:-1].reshape(len(perms), m - 1, n, k).mean(2)  # (P, M-1, K)
    curve = np.concatenate(
        [np.broadcast_to(base, (len(perms), 1, k)), mid, np.broadcast_to(fx, (len(perms), 1, k))], axis=1
    )  # (P, M+1, K)
    gains = np.diff(curve, axis=1)  # gains[p, s]: credit of feature perms[p, s]
    per_feature = np.take_along_axis(gains, rank[:, :, None], axis=1)  # (P, M, K)
    values = per_feature.mean(0)
    return (values[:, 0], base[0], fx[0]) if k == 1 else (values, base, fx)


def masked_rows(m: int, n: int, max_evals: int) -> int:
    """Rows `permutation_shap` evaluates at once for M features, N background rows and max_evals."""
    pairs = max(1, (max_evals - 2) // max(1, 2 * (m - 1)))
    return n + 2 * pairs * (m - 1) * n + 1


class PermutationShapExplainer(Explainer):
    type_name = "PermutationShap"
    kind = "blackbox"
    needs_background = True

    def check_work(self, n: int, options: ExplainOptions) -> None:
        """Every masked row of one instance is built at once (P x (M-1) x N rows)."""
        rows = len(self.require_background().data)
        m = int(np.prod(self.feature_shape)) if self.feature_shape else 1
        max_evals = options.nsamples or self.settings.nsamples or max(DEFAULT_MAX_EVALS, 2 * m + 1)
        self.check_rows(
            masked_rows(m, rows, max_evals), f"PermutationShap nsamples {max_evals} x {rows} background rows"
        )

    def explain(self, X: np.ndarray, options: ExplainOptions) -> list[InstanceExplanation]:
        flat = X.reshape(len(X), -1).astype(np.float64)
        data = self.require_background().data
        background = data.reshape(len(data), -1).astype(np.float64)
        m = flat.shape[1]
        max_evals = options.nsamples or self.settings.nsamples or max(DEFAULT_MAX_EVALS, 2 * m + 1)
        if max_evals < 2 * m:
            raise BadExplainRequest(f"PermutationShap needs nsamples >= 2 x features = {2 * m}, got {max_evals}")
        self.set_deadline(options.deadline)
        f = self.model_fn()
        rng = np.random.default_rng(0)  # same request, same answer
        names = self.feature_names(m)
        out = []
        for row in flat:
            values, base, fx = permutation_shap(f, row, background, max_evals, rng)
            target, prediction = pick_target(fx, options.target)
            vals, base_value = select(values, base, target)
            out.append(
                InstanceExplanation(
                    feature_names=names,
                    values=floats(vals),
                    base_value=base_value,
                    prediction=prediction,
                    target=target,
                    output_space="probability" if self.require_predictor().predict_proba else "raw",
                    raw={
                        "shap_values": np.asarray(values).T.tolist() if np.ndim(values) > 1 else floats(values),
                        "base_values": floats(base),
                        "model_output": floats(fx),
                        "max_evals": max_evals,
                    },
                )
            )
        return out
