"""Drift of a text column: on sentence embeddings (MMD, a domain classifier) and on per-text
descriptors (univariate tests). All permissive: torch, scikit-learn, scipy.

- `TextMMDDrift`: MMD² between the reference's embeddings and the window's, Gaussian kernel
  with σ fixed at fit (median heuristic on the reference), permutation p-value (torch, on
  CUDA when present). Written here rather than through alibi-detect's MMDDrift: that one is
  BSL-licensed and optional, and all permutations come out of one matrix product here
  (`infertap.detectors.text.mmd`).
- `TextClassifierDrift`: Evidently's method for text, on embeddings: a classifier learns to
  tell reference texts from the window's; its cross-validated ROC AUC (out-of-fold
  probabilities) is compared with a threshold, and with the AUC a random classifier reaches
  (each fold's Mann-Whitney null, one-sided, the folds' p-values merged by their median, a merge valid
  whatever their dependence). Drift when both say so. The detection shows the most
  telling examples: the window's texts it was surest were new, the reference's it was surest
  were old (as logged: redacted).
- `TextDescriptorDrift`: each descriptor of `infertap.detectors.text.descriptors` (length in
  characters, tokens and words, non-ASCII and non-letter shares, out-of-vocabulary share,
  redactions, script), KS or chi-squared against the reference, Bonferroni or FDR; the
  detection names the descriptors that moved, with the window's and the reference's means.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from infertap.detectors.backends.text_base import TextBackend, TextParams, shown
from infertap.detectors.result import DetectionResult, FeatureScore
from infertap.detectors.text import descriptors as desc

log = logging.getLogger(__name__)


# --- MMD ----------------------------------------------------------------------------------


class MMDParams(TextParams):
    p_val: float = Field(default=0.05, gt=0, lt=1, description="Drift when the permutation p-value is below.")
    permutations: int = Field(default=100, ge=10, le=100_000, description="Permutations of the test.")
    sigma: float | None = Field(default=None, gt=0, description="Kernel bandwidth; default the reference median.")
    n_reference: int = Field(default=1000, ge=10, description="Reference embeddings in each test (a seeded sample).")


class TextMMDDrift(TextBackend):
    """MMD on sentence embeddings; params: `MMDParams`."""

    Params: ClassVar[type[TextParams]] = MMDParams

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(feature_names, params)
        self.x_ref: np.ndarray | None = None
        self.sigma: float | None = None
        self._ref_on_device: Any = None

    def fit(self, x_ref: Any) -> None:
        from infertap.detectors.text.embed import torch_device
        from infertap.detectors.text.mmd import median_sigma

        texts = self.sample(self.texts(x_ref))
        emb, _ = self.embed(texts, reference=True)
        fit_rows, held = self.split(len(texts))
        ref = emb[fit_rows]
        if len(ref) > self.p.n_reference:
            ref = ref[np.sort(np.random.default_rng(self.p.seed).choice(len(ref), self.p.n_reference, replace=False))]
        self.x_ref = ref
        self.sigma = self.p.sigma or median_sigma(ref, torch_device(self.p.device), seed=self.p.seed)
        check = self._judge(emb[held])
        self.summary = {"held_out": len(held), "held_out_p_val": check.p_val, "drift_on_held_out": check.is_drift}

    def predict(self, x: Any) -> DetectionResult:
        emb, _ = self.embed(self.texts(x))
        return self._judge(emb)

    def _judge(self, emb: np.ndarray) -> DetectionResult:
        from infertap.detectors.text.embed import torch_device
        from infertap.detectors.text.mmd import mmd_test

        ref, sigma = self.require(self.x_ref), self.require(self.sigma)
        device = torch_device(self.p.device)
        if self._ref_on_device is None:  # uploaded once, not every window
            import torch

            self._ref_on_device = torch.as_tensor(ref, dtype=torch.float32, device=device)
        result = mmd_test(self._ref_on_device, emb, sigma, self.p.permutations, self.p.p_val, device, self.p.seed)
        drift = result.p_val < self.p.p_val
        return DetectionResult(
            kind="drift",
            detector="TextMMDDrift",
            n=len(emb),
            is_drift=drift,
            p_val=result.p_val,
            distance=result.mmd2,
            threshold=self.p.p_val,
            features=[FeatureScore(name="embedding_mmd", p_val=result.p_val, distance=result.mmd2, is_drift=drift)],
            raw={
                "field": self.field,
                "distance_threshold": result.distance_threshold,
                "sigma": sigma,
                "reference_rows": len(ref),
                "device": str(device),
            },
        )

    def save(self, path: Path) -> None:
        self.save_state(path, {"x_ref": self.require(self.x_ref), "sigma": np.array(self.require(self.sigma))})

    def load(self, path: Path) -> None:
        arrays, _ = self.load_state(path)
        self.x_ref, self.sigma = arrays["x_ref"].astype(np.float32), float(arrays["sigma"])


# --- domain classifier --------------------------------------------------------------------


class ClassifierParams(TextParams):
    auc_threshold: float = Field(default=0.55, gt=0.5, lt=1, description="Drift needs the AUC above this.")
    p_val: float = Field(default=0.05, gt=0, lt=1, description="... and above a random classifier's AUC at this level.")
    folds: int = Field(default=5, ge=2, le=20, description="Cross-validation folds.")
    C: float = Field(default=1.0, gt=0, description="Inverse regularisation of the logistic regression.")
    examples: int = Field(default=5, ge=0, le=50, description="Examples of each side in the detection.")
    n_reference: int | None = Field(
        default=None, ge=10, description="Reference texts per window (default: as many as the window, 50 at least)."
    )


class TextClassifierDrift(TextBackend):
    """A domain classifier on sentence embeddings; params: `ClassifierParams`."""

    Params: ClassVar[type[TextParams]] = ClassifierParams

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(feature_names, params)
        self.x_ref: np.ndarray | None = None
        self.ref_texts: list[str] | None = None

    def fit(self, x_ref: Any) -> None:
        texts = self.sample(self.texts(x_ref))
        emb, _ = self.embed(texts, reference=True)
        fit_rows, held = self.split(len(texts))
        self.x_ref = emb[fit_rows]
        self.ref_texts = [texts[i] for i in fit_rows.tolist()]
        check = self._judge(emb[held], [texts[i] for i in held.tolist()])
        self.summary = {"held_out": len(held), "held_out_auc": check.distance, "drift_on_held_out": check.is_drift}

    def predict(self, x: Any) -> DetectionResult:
        texts = self.texts(x)
        emb, _ = self.embed(texts)
        return self._judge(emb, texts)

    def _judge(self, emb: np.ndarray, texts: list[str]) -> DetectionResult:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import StratifiedKFold

        ref, ref_texts = self.require(self.x_ref), self.require(self.ref_texts)
        n = len(emb)
        m = min(len(ref), self.p.n_reference or max(n, 50))
        picked = np.sort(np.random.default_rng(self.p.seed).choice(len(ref), m, replace=False))
        x = np.vstack([ref[picked], emb])
        y = np.r_[np.zeros(m, dtype=np.int64), np.ones(n, dtype=np.int64)]
        folds = min(self.p.folds, m, n)
        if folds < 2:
            raise ValueError(f"TextClassifierDrift needs 2 texts on each side (window {n}, reference {m})")
        # each fold's AUC comes from one model on texts it did not see, so its Mann-Whitney p-value is valid;
        # pooling the folds' probabilities into one AUC is not (its null spread is about 30 % wider, measured)
        p_new = np.empty(len(y))
        aucs, p_folds = [], []
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=self.p.seed).split(x, y):
            model = LogisticRegression(C=self.p.C, max_iter=1000).fit(x[train], y[train])
            p_new[test] = model.predict_proba(x[test])[:, 1]
            aucs.append(float(roc_auc_score(y[test], p_new[test])))
            p_folds.append(_auc_p_value(aucs[-1], int((y[test] == 0).sum()), int((y[test] == 1).sum())))
        auc = float(np.mean(aucs))
        p = _merged(p_folds)
        drift = auc > self.p.auc_threshold and p < self.p.p_val
        k = self.p.examples
        newest = np.argsort(-p_new[m:], kind="stable")[:k]
        oldest = np.argsort(p_new[:m], kind="stable")[:k]
        examples = {
            "current": [{"text": shown(texts[i]), "p_current": round(float(p_new[m + i]), 4)} for i in newest.tolist()],
            "reference": [
                {"text": shown(ref_texts[int(picked[i])]), "p_current": round(float(p_new[i]), 4)}
                for i in oldest.tolist()
            ],
        }
        return DetectionResult(
            kind="drift",
            detector="TextClassifierDrift",
            n=n,
            is_drift=drift,
            p_val=p,
            distance=auc,
            threshold=self.p.auc_threshold,
            features=[FeatureScore(name="domain_classifier", p_val=p, distance=auc, is_drift=drift)],
            raw={
                "field": self.field,
                "auc": auc,
                "fold_aucs": aucs,
                "folds": folds,
                "reference_rows": m,
                "examples": examples,
            },
        )

    def save(self, path: Path) -> None:
        self.save_state(path, {"x_ref": self.require(self.x_ref)}, texts=self.require(self.ref_texts))

    def load(self, path: Path) -> None:
        arrays, texts = self.load_state(path)
        self.x_ref, self.ref_texts = arrays["x_ref"].astype(np.float32), texts or []


def _merged(p_values: list[float]) -> float:
    """One valid p-value from the folds' (which depend on each other: their models share training texts):
    the r-th smallest times K/r, r the median's rank (Rüschendorf; valid under any dependence)."""
    k = len(p_values)
    r = (k + 1) // 2
    return float(min(1.0, sorted(p_values)[r - 1] * k / r))


def _auc_p_value(auc: float, m: int, n: int) -> float:
    """P(AUC >= auc) for a classifier that cannot tell the sides apart (Mann-Whitney, normal approximation)."""
    sd = math.sqrt((m + n + 1) / (12.0 * m * n))
    return float(0.5 * math.erfc((auc - 0.5) / sd / math.sqrt(2.0)))


# --- descriptors --------------------------------------------------------------------------

Descriptor = Literal[
    "chars",
    "tokens",
    "words",
    "mean_word_length",
    "non_ascii_share",
    "non_letter_share",
    "oov_share",
    "redactions",
    "script",
]


class DescriptorParams(TextParams):
    p_val: float = Field(default=0.05, gt=0, lt=1, description="Level of the tests, before correction.")
    correction: Literal["bonferroni", "fdr"] = Field(default="bonferroni", description="Across descriptors.")
    descriptors: list[Descriptor] | None = Field(
        default=None, description="Which descriptors (default all; `tokens` when a model folder is there)."
    )
    examples: int = Field(default=3, ge=0, le=20, description="Window texts shown per moved descriptor.")


class TextDescriptorDrift(TextBackend):
    """Univariate tests on per-text descriptors; params: `DescriptorParams`."""

    Params: ClassVar[type[TextParams]] = DescriptorParams
    embeds: ClassVar[bool] = False

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(feature_names, params)
        wanted = list(self.p.descriptors or desc.DESCRIPTORS)
        if "tokens" in wanted and not self._has_tokenizer():
            if self.p.descriptors is not None:
                raise ValueError("TextDescriptorDrift: descriptor 'tokens' needs a model folder (parameter model)")
            wanted.remove("tokens")
        self.which = wanted
        self.vocab: set[str] | None = None
        self.ref: dict[str, np.ndarray] = {}

    def _has_tokenizer(self) -> bool:
        from infertap.detectors.text.embed import default_model

        return self.p.model is not None or default_model() is not None

    def _describe(self, texts: list[str]) -> dict[str, np.ndarray]:
        tokens = self.embedder.count_tokens(texts, self.field) if "tokens" in self.which else None
        return desc.describe(texts, self.vocab, tokens, self.which)

    def fit(self, x_ref: Any) -> None:
        texts = self.sample(self.texts(x_ref))
        fit_rows, held = self.split(len(texts))
        fitted = [texts[i] for i in fit_rows.tolist()]
        held_texts = [texts[i] for i in held.tolist()]
        self.vocab = desc.vocabulary(fitted) if "oov_share" in self.which else None
        # the reference's own distribution: out-of-vocabulary shares of texts the vocabulary did not see
        ref = self._describe(fitted)
        if "oov_share" in self.which:
            ref["oov_share"] = desc.describe(held_texts, self.vocab, which=["oov_share"])["oov_share"]
        self.ref = ref
        check = self._judge(held_texts, ref_only=[k for k in ref if k != "oov_share"])
        self.summary = {
            "descriptors": list(ref),
            "vocabulary": len(self.vocab or ()),
            "held_out": len(held_texts),
            "moved_on_held_out": check.raw["moved"],
        }

    def predict(self, x: Any) -> DetectionResult:
        return self._judge(self.texts(x))

    def _judge(self, texts: list[str], ref_only: list[str] | None = None) -> DetectionResult:
        from scipy.stats import chi2_contingency, ks_2samp

        from infertap.detectors.backends.scipy_drift import ScipyKS

        if not self.ref:
            self.require(None)
        names = [k for k in self.ref if ref_only is None or k in ref_only]
        cur = self._describe(texts)
        p_vals, stats, values, refs = [], [], [], []
        for name in names:
            a, b = self.ref[name], cur[name]
            if name == "script":
                p, stat, value, reference = _script_test(a, b, chi2_contingency)
            else:
                test = ks_2samp(a, b, method="asymp")
                p, stat, value, reference = float(test.pvalue), float(test.statistic), float(b.mean()), float(a.mean())
            p_vals.append(p)
            stats.append(stat)
            values.append(value)
            refs.append(reference)
        cut = ScipyKS(names, {"p_val": self.p.p_val, "correction": self.p.correction}).threshold(np.array(p_vals))
        features = [
            FeatureScore(name=n, p_val=p, distance=s, is_drift=bool(p < cut), value=v, reference=r)
            for n, p, s, v, r in zip(names, p_vals, stats, values, refs, strict=True)
        ]
        moved = [f.name for f in features if f.is_drift]
        return DetectionResult(
            kind="drift",
            detector="TextDescriptorDrift",
            n=len(texts),
            is_drift=bool(moved),
            p_val=float(min(p_vals)),
            distance=float(max(stats)),
            threshold=float(cut),
            features=features,
            raw={"field": self.field, "moved": moved, "examples": self._examples(texts, cur, moved)},
        )

    def _examples(self, texts: list[str], cur: dict[str, np.ndarray], moved: list[str]) -> dict[str, list[str]]:
        """Per moved descriptor, the window's texts furthest from the reference's mean."""
        out = {}
        for name in moved:
            if name == "script":
                majority = np.bincount(self.ref[name].astype(np.int64)).argmax()
                far = np.nonzero(cur[name] != majority)[0]
            else:
                far = np.argsort(-np.abs(cur[name] - self.ref[name].mean()), kind="stable")
            out[name] = [shown(texts[i]) for i in far[: self.p.examples].tolist()]
        return out

    def save(self, path: Path) -> None:
        if not self.ref:
            self.require(None)
        arrays = {f"ref_{k}": v for k, v in self.ref.items()}
        vocab = sorted(self.vocab) if self.vocab is not None else None
        self.save_state(path, arrays, texts=vocab)  # texts.json holds the vocabulary

    def load(self, path: Path) -> None:
        arrays, vocab = self.load_state(path)
        self.ref = {k.removeprefix("ref_"): v for k, v in arrays.items()}
        self.which = [k for k in self.which if k in self.ref]
        self.vocab = set(vocab) if vocab is not None else None


def _script_test(ref: np.ndarray, cur: np.ndarray, chi2_contingency: Any) -> tuple[float, float, float, float]:
    """(p, Cramér's V, the window's and the reference's share outside the reference's main script)."""
    k = len(desc.SCRIPTS)
    a = np.bincount(ref.astype(np.int64), minlength=k)
    b = np.bincount(cur.astype(np.int64), minlength=k)
    majority = int(a.argmax())
    share = lambda counts: float(1 - counts[majority] / max(1, counts.sum()))  # noqa: E731
    used = (a + b) > 0
    if used.sum() < 2:
        return 1.0, 0.0, share(b), share(a)
    table = np.vstack([a[used], b[used]])
    stat, p, _, _ = chi2_contingency(table)
    v = math.sqrt(stat / table.sum() / (min(table.shape) - 1))
    return float(p), float(v), share(b), share(a)
