"""alibi AnchorImage (BSL 1.1): the superpixels that anchor an image prediction.

`params.image_shape` ([H, W, C]) is the shape alibi sees; instances of the same size in
another layout (a flat row of 64 pixels for the digits model) are reshaped to it and back
for the predictor, which gets rows shaped as the background (or as sent). Segmentation:
`params.segmentation_fn` `slic`, `quickshift`, `felzenszwalb` (scikit-image, with
`segmentation_kwargs`) or `grid` (squares of `params.grid_size` pixels: small images such
as 8x8 digits give too few pixels for the others).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from infertap.explainers.backends.anchor_base import AnchorExplainer
from infertap.explainers.backends.base import Param, finite_float32
from infertap.explainers.errors import BadExplainRequest, ExplainerLoadError


def grid_segmentation(size: int):
    def segment(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        rows, cols = np.arange(h)[:, None] // size, np.arange(w)[None, :] // size
        return rows * ((w + size - 1) // size) + cols

    return segment


class AnchorImageExplainer(AnchorExplainer):
    type_name = "AnchorImages"

    def build(self) -> Any:
        from alibi.explainers import AnchorImage

        params = self.settings.params
        if "image_shape" not in params:
            raise ExplainerLoadError("AnchorImages needs params.image_shape, e.g. [8, 8, 1]")
        self.image_shape = tuple(int(d) for d in params["image_shape"])
        self.row_shape = self.feature_shape or self.image_shape
        self.feature_shape = self.image_shape
        segmentation = params.get("segmentation_fn", "slic")
        kwargs = params.get("segmentation_kwargs") or {}
        if segmentation == "grid":
            segmentation, kwargs = grid_segmentation(int(params.get("grid_size", 2))), None
        predict = self.model_fn()

        def images_to_rows(images: np.ndarray) -> np.ndarray:
            return predict(np.asarray(images).reshape((len(images), *self.row_shape)))

        return AnchorImage(
            images_to_rows,
            image_shape=self.image_shape,
            segmentation_fn=segmentation,
            segmentation_kwargs=kwargs or None,
            seed=0,
        )

    def request_params(self) -> dict[str, Param]:
        """The anchor keywords plus `p_sample`, the share of superpixels kept per sample."""
        return super().request_params() | {"p_sample": Param(float, 0.0, 1.0)}

    def check_input(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise BadExplainRequest(f"AnchorImages explains numbers, got {X.dtype} data")
        per_image = int(np.prod(self.image_shape))
        if X.ndim < 2 or int(np.prod(X.shape[1:])) != per_image:
            raise BadExplainRequest(
                f"expected images of shape {list(self.image_shape)} ({per_image} values each), "
                f"got input shape {list(X.shape)}"
            )
        return finite_float32(X.reshape((len(X), *self.image_shape)))
