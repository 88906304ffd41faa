"""Out-of-distribution texts: how far a prompt's embedding lies from the reference's.

Two scores (`method`):

- `knn` (default): the mean cosine distance (1 - cosine similarity; embeddings are
  normalised) to the `k` nearest reference embeddings (torch, on CUDA when present);
- `mahalanobis`: the Mahalanobis distance in the space of the reference's first
  `components` principal components (PCA by SVD of the centred reference), plus the
  squared norm off those components over the reference's mean variance per remaining
  dimension (probabilistic PCA), so a text unlike anything in the reference is not hidden by
  the projection.

The threshold is fitted by `infertap fit`: the `quantile` (default 0.99) of the scores of the
held-out part of the reference (texts the score was not fitted on), so about 1 % of texts like
the reference are flagged. A detection lists the flagged texts (as logged, redacted) with their
scores, highest first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from infertap.detectors.backends.text_base import TextBackend, TextParams, shown
from infertap.detectors.result import DetectionKind, DetectionResult


class OODParams(TextParams):
    method: Literal["knn", "mahalanobis"] = Field(
        default="knn", description="knn mean distance, or Mahalanobis on PCA."
    )
    k: int = Field(default=5, ge=1, le=100, description="knn: neighbours averaged.")
    components: int = Field(default=32, ge=1, le=1024, description="mahalanobis: principal components kept.")
    quantile: float = Field(default=0.99, gt=0.5, lt=1, description="Threshold: this quantile of held-out scores.")
    threshold: float | None = Field(default=None, gt=0, description="A fixed threshold instead of the fitted one.")
    max_flagged: int = Field(default=50, ge=0, le=1000, description="Flagged texts listed in a detection.")


class TextOOD(TextBackend):
    """Out-of-distribution texts by embedding distance; params: `OODParams`."""

    kind: ClassVar[DetectionKind] = "outlier"
    Params: ClassVar[type[TextParams]] = OODParams

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(feature_names, params)
        self.state: dict[str, np.ndarray] = {}
        self.threshold: float | None = None
        self._ref_on_device: Any = None

    def fit(self, x_ref: Any) -> None:
        texts = self.sample(self.texts(x_ref))
        emb, _ = self.embed(texts, reference=True)
        fit_rows, held = self.split(len(texts))
        ref = emb[fit_rows]
        if self.p.method == "knn":
            if len(ref) <= self.p.k:
                raise ValueError(f"knn with k={self.p.k} needs more than {self.p.k} fitting texts (got {len(ref)})")
            self.state = {"x_ref": ref}
        else:
            self.state = _pca(ref, self.p.components)
        self._ref_on_device = None
        scores = self.score(emb[held])
        self.threshold = self.p.threshold or float(np.quantile(scores, self.p.quantile))
        self.summary = {
            "method": self.p.method,
            "threshold": self.threshold,
            "held_out": len(held),
            "flagged_share_of_held_out": round(float((scores > self.threshold).mean()), 4),
        }

    def score(self, emb: np.ndarray) -> np.ndarray:
        """The out-of-distribution score of each embedding (higher: further from the reference)."""
        if not self.state:
            self.require(None)
        if self.p.method == "knn":
            return self._knn(emb)
        s = self.state
        centred = np.asarray(emb, dtype=np.float64) - s["mean"]
        z = centred @ s["components"].T
        inside = ((z / s["scale"]) ** 2).sum(1)
        # off the kept components: isotropic, with the reference's mean variance per remaining dimension
        # (probabilistic PCA), so a text unlike the reference counts even where the axes do not see it
        per_dimension = max(float(s["residual"]) / max(emb.shape[1] - z.shape[1], 1), 1e-12)
        rest = np.maximum((centred**2).sum(1) - (z**2).sum(1), 0.0) / per_dimension
        return np.sqrt(inside + rest)

    def _knn(self, emb: np.ndarray) -> np.ndarray:
        import torch

        from infertap.detectors.text.embed import torch_device

        device = torch_device(self.p.device)
        if self._ref_on_device is None:
            self._ref_on_device = torch.as_tensor(self.state["x_ref"], dtype=torch.float32, device=device)
        ref = self._ref_on_device
        out = np.empty(len(emb))
        for start in range(0, len(emb), 4096):  # a (rows x reference) similarity block at a time
            cur = torch.as_tensor(np.asarray(emb[start : start + 4096], dtype=np.float32), device=device)
            similarity = cur @ ref.T
            nearest = similarity.topk(min(self.p.k, ref.shape[0]), dim=1).values
            out[start : start + len(cur)] = (1.0 - nearest).mean(1).double().cpu().numpy()
        return out

    def predict(self, x: Any) -> DetectionResult:
        threshold = self.require(self.threshold)
        texts = self.texts(x)
        emb, _ = self.embed(texts)
        scores = self.score(emb)
        flags = scores > threshold
        order = [int(i) for i in np.argsort(-scores, kind="stable") if flags[i]][: self.p.max_flagged]
        flagged = [{"row": i, "score": round(float(scores[i]), 6), "text": shown(texts[i])} for i in order]
        return DetectionResult(
            kind="outlier",
            detector="TextOOD",
            n=len(texts),
            is_outlier=flags.tolist(),
            instance_scores=scores.tolist(),
            threshold=threshold,
            raw={"field": self.field, "method": self.p.method, "flagged": flagged, "flagged_count": int(flags.sum())},
        )

    def save(self, path: Path) -> None:
        self.save_state(path, {**self.state, "threshold": np.array(self.require(self.threshold))})

    def load(self, path: Path) -> None:
        arrays, _ = self.load_state(path)
        self.threshold = float(arrays.pop("threshold"))
        self.state = arrays
        self._ref_on_device = None


def _pca(ref: np.ndarray, components: int) -> dict[str, np.ndarray]:
    """Mean, principal axes, their standard deviations and the mean residual squared norm of `ref`."""
    x = np.asarray(ref, dtype=np.float64)
    mean = x.mean(0)
    centred = x - mean
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    c = min(components, len(x) - 1, x.shape[1])
    axes = axes[:c]
    scale = np.maximum(singular[:c] / np.sqrt(max(len(x) - 1, 1)), 1e-9)
    z = centred @ axes.T
    residual = float(np.maximum((centred**2).sum(1) - (z**2).sum(1), 0.0).mean())
    return {"mean": mean, "components": axes, "scale": scale, "residual": np.array(residual)}
