"""alibi AnchorTabular (BSL 1.1): if-then rules that anchor a tabular prediction.

Fitted at load from the background's training rows (`train` in the `.npz` from
`infertap fit`, or the raw `.npy` rows) with its percentile discretisation (`disc_perc`).
`params.categorical_names` ({column: [names]}) marks categorical columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from infertap.explainers.backends.anchor_base import AnchorExplainer
from infertap.explainers.errors import ExplainerLoadError


class AnchorTabularExplainer(AnchorExplainer):
    type_name = "AnchorTabular"
    needs_background = True

    def build(self) -> Any:
        from alibi.explainers import AnchorTabular

        bg = self.require_background()
        train = bg.train if bg.train is not None else bg.data
        if train.ndim != 2:
            raise ExplainerLoadError(
                f"AnchorTabular needs rows x features training data, got shape {list(train.shape)}"
            )
        categorical = {int(k): v for k, v in (self.settings.params.get("categorical_names") or {}).items()}
        explainer = AnchorTabular(
            self.model_fn(), feature_names=self.feature_names(train.shape[1]), categorical_names=categorical, seed=0
        )
        self.set_deadline(None)
        explainer.fit(np.asarray(train, dtype=np.float32), disc_perc=tuple(bg.disc_perc))
        return explainer
