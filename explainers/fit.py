"""Fitting what explainers need before they serve, stored as data (`.npz`, see backgrounds.py).

- KernelShap: k-means summary of the reference rows (centres + cluster sizes as weights),
  as `shap.kmeans` does: KernelSHAP costs nsamples x |background| model rows per instance.
- PermutationShap, GradientShap, IntegratedGradients (mean baseline), DeepLift, TreeShap
  (interventional): a seeded sample of the reference rows.
- AnchorTabular: the training rows its sampler draws from and the percentiles of its
  discretisation (`disc_perc`); the quantile bins are recomputed from them at load (fast).

    python -m infertap.explainers.fit --explainer-type KernelShap --reference models/sklearn-iris/reference.npy \
        --out models/sklearn-iris/background.npz --size 20
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from infertap.explainers.backgrounds import Background, load_background, sample_rows, save_background
from infertap.explainers.settings import canonical_type

KMEANS = ("KernelShap",)
ANCHORS = ("AnchorTabular",)


def fit_background(
    explainer_type: str,
    reference: str,
    out: Path,
    size: int = 50,
    feature_names: list[str] | None = None,
    disc_perc: tuple[float, ...] = (25.0, 50.0, 75.0),
    train_rows: int = 5000,
    progress: Callable[[str], None] | None = None,
) -> Background:
    """Prepare and save the data `explainer_type` loads; returns what was written."""
    step = progress or (lambda _msg: None)
    explainer_type = canonical_type(explainer_type)
    rows = load_background(reference, size=10**9).data  # every row; sampling happens below
    step(f"read {len(rows)} reference rows of shape {list(rows.shape[1:])}")
    meta = {
        "explainer_type": explainer_type,
        "reference": str(reference),
        "reference_rows": int(len(rows)),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if explainer_type in KMEANS:
        from infertap.explainers.backgrounds import kmeans_background

        centres, weights = kmeans_background(rows, size)
        background = Background(
            centres, weights, feature_names, meta=meta | {"method": "kmeans", "k": int(len(centres))}
        )
        step(f"k-means: {len(centres)} weighted centres")
    else:
        background = Background(sample_rows(rows, size), None, feature_names, meta=meta | {"method": "sample"})
        step(f"sampled {len(background.data)} background rows")
    if explainer_type in ANCHORS:
        background.train = sample_rows(rows, train_rows)
        background.disc_perc = tuple(disc_perc)
        # Checked now so a bad reference fails at fit time, not in the server.
        np.percentile(background.train, disc_perc, axis=0)
        step(f"anchor discretisation at percentiles {list(disc_perc)} over {len(background.train)} rows")
    save_background(out, background)
    step(f"wrote {out}")
    return background


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m infertap.explainers.fit", description="Prepare an explainer's background (.npz)."
    )
    p.add_argument("--explainer-type", required=True)
    p.add_argument("--reference", required=True, help="reference rows: .npy, .csv or an .npz with `background`")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--size", type=int, default=50, help="background rows (k-means centres for KernelShap)")
    p.add_argument("--feature-names")
    a = p.parse_args(argv)
    names = [n.strip() for n in a.feature_names.split(",")] if a.feature_names else None
    fit_background(a.explainer_type, a.reference, a.out, a.size, names, progress=print)


if __name__ == "__main__":
    main()
