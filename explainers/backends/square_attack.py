"""ART's SquareAttack (adversarial-robustness-toolbox, MIT: extra `art`): an adversarial example per image.

What KServe's ART explainer (`spec.explainer.art: {type: SquareAttack}`) answers, over the
predictor as a black box: a query-efficient random-search attack (Andriushchenko et al.,
2020) looks for a small perturbation that changes the predicted class. Each instance's
`raw` holds KServe's keys: `adversarial_example` (the perturbed instance, in the shape it
came in), `L2 error` (the perturbation's L2 norm), `adversarial_prediction` and
`prediction` (class indices); `values` are the perturbation, flattened, and `target` the
class attacked (the model's prediction; ART's default when no labels are given).

Instances are images: `[H, W, C]` (channels last, as in KServe's MNIST sample), `[H, W]`, or
flat rows folded by `params.image_shape` (e.g. `[8, 8, 1]`) or, for a square number of
values, into `[n, n, 1]`. SquareAttack draws squares inside the picture, so tabular rows are
refused with a sentence. Parameters (settings `params`, and per request, bounded):
`max_iter` (iterations, default 100 as ART's; at most `max_samples`; KServe's image
defaulted to 1000), `eps` (the largest change per value, default 0.3), `p_init`,
`nb_restarts`, `norm` (settings only: `inf`, 1 or 2), `nb_classes` (settings only;
default: the width of the predictor's output), `clip_values` (settings only: `[low, high]`,
default the background's range, else unbounded, as KServe's).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from infertap.explainers.backends.base import Explainer, ExplainOptions, Param
from infertap.explainers.errors import BadExplainRequest, ExplainerLoadError
from infertap.explainers.explanation import InstanceExplanation

MAX_RESTARTS = 10


class SquareAttackExplainer(Explainer):
    type_name = "SquareAttack"
    kind = "blackbox"
    requires = ("art",)

    def _load(self) -> None:
        params = self.settings.params
        norm = params.get("norm", "inf")
        if norm not in ("inf", 1, 2, "1", "2"):
            raise ExplainerLoadError(f"SquareAttack params norm must be inf, 1 or 2 (got {norm!r})")
        self._norm: float | int = np.inf if norm == "inf" else int(norm)
        nb = params.get("nb_classes")
        if nb is not None and (not isinstance(nb, int) or isinstance(nb, bool) or nb < 2):
            raise ExplainerLoadError(f"SquareAttack params nb_classes must be an integer of at least 2 (got {nb!r})")
        self._nb_classes: int | None = nb
        shape = params.get("image_shape")
        if shape is not None and not (
            isinstance(shape, list) and len(shape) in (2, 3) and all(isinstance(d, int) and d > 0 for d in shape)
        ):
            raise ExplainerLoadError(f"SquareAttack params image_shape must be [H, W] or [H, W, C] (got {shape!r})")
        self._image_shape = tuple(shape) if shape else None
        clip = params.get("clip_values")
        if clip is None and self.background is not None:
            clip = [float(self.background.data.min()), float(self.background.data.max())]
        if clip is not None and not (isinstance(clip, list) and len(clip) == 2 and clip[0] < clip[1]):
            raise ExplainerLoadError(f"SquareAttack params clip_values must be [low, high] (got {clip!r})")
        self._clip = (float(clip[0]), float(clip[1])) if clip is not None else None

    def request_params(self) -> dict[str, Param]:
        return {
            "max_iter": Param(int, 1, self.settings.max_samples, "max_samples"),
            "eps": Param(float, 0.0, 1e6, exclusive=True),
            "p_init": Param(float, 0.0, 1.0, exclusive=True),
            "nb_restarts": Param(int, 1, MAX_RESTARTS),
        }

    def check_input(self, X: np.ndarray) -> np.ndarray:
        X = super().check_input(X)
        self._picture(X.shape[1:])  # refuses rows that fold into no image before any work
        return X

    def _picture(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(H, W, C) of one instance of `shape`; BadExplainRequest when it is no image."""
        if len(shape) == 3:
            return int(shape[0]), int(shape[1]), int(shape[2])
        if len(shape) == 2:
            return int(shape[0]), int(shape[1]), 1
        size = int(np.prod(shape))
        if self._image_shape is not None:
            h, w, *c = self._image_shape
            if h * w * (c[0] if c else 1) == size:
                return h, w, c[0] if c else 1
            raise BadExplainRequest(
                f"SquareAttack: {size} values per instance do not fold into image_shape {list(self._image_shape)}"
            )
        side = math.isqrt(size)
        if side >= 2 and side * side == size:
            return side, side, 1
        raise BadExplainRequest(
            f"SquareAttack attacks images: send instances of shape [H, W, C] (or [H, W]), or set params "
            f"image_shape to fold rows of {size} values"
        )

    def explain(self, X: np.ndarray, options: ExplainOptions) -> list[InstanceExplanation]:
        from art.attacks.evasion import SquareAttack
        from art.estimators.classification import BlackBoxClassifierNeuralNetwork

        params = {**self.settings.params, **options.params}
        picture = self._picture(X.shape[1:])
        sent_shape = X.shape[1:]  # what the predictor is sent: the instance as the client gave it
        model = self.model_fn()

        def scores(images: np.ndarray) -> np.ndarray:
            out = np.asarray(model(images.reshape((len(images), *sent_shape))), dtype=np.float64)
            if out.ndim == 1:  # labels: one-hot, as KServe's ART explainer turns them
                return np.eye(self._classes(out), dtype=np.float64)[out.astype(int)]
            return out

        out = []
        with self._lock:
            self.set_deadline(options.deadline)
            classes = self._nb_classes or scores(X[:1].reshape((1, *picture))).shape[1]
            classifier = BlackBoxClassifierNeuralNetwork(
                scores, picture, classes, channels_first=False, clip_values=self._clip or (-np.inf, np.inf)
            )
            attack = SquareAttack(
                estimator=classifier,
                norm=self._norm,
                max_iter=int(params.get("max_iter", 100)),
                eps=float(params.get("eps", 0.3)),
                p_init=float(params.get("p_init", 0.8)),
                nb_restarts=int(params.get("nb_restarts", 1)),
                batch_size=1,
                verbose=False,
            )
            for x in X:
                image = x.reshape((1, *picture)).astype(np.float32)
                before = int(np.argmax(scores(image)[0]))
                adversarial = attack.generate(x=image)
                after = int(np.argmax(scores(adversarial)[0]))
                delta = (adversarial - image).reshape(-1)
                out.append(
                    InstanceExplanation(
                        feature_names=self.feature_names(int(np.size(x))),
                        values=delta.astype(np.float64).tolist(),
                        base_value=None,
                        prediction=float(before),
                        target=before,
                        output_space="label",
                        shape=list(sent_shape) if len(sent_shape) > 1 else None,
                        raw=self._raw(adversarial.reshape(sent_shape), delta, before, after),
                    )
                )
        return out

    def _classes(self, labels: np.ndarray) -> int:
        if self._nb_classes is None:
            raise ExplainerLoadError(
                "SquareAttack: the predictor answers class labels; give params nb_classes (KServe's art config nb_classes)"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= self._nb_classes):
            raise BadExplainRequest(f"the predictor answered a class outside 0..{self._nb_classes - 1}")
        return self._nb_classes

    @staticmethod
    def _raw(adversarial: np.ndarray, delta: np.ndarray, before: int, after: int) -> dict[str, Any]:
        return {
            "adversarial_example": adversarial.astype(np.float64).tolist(),
            "L2 error": float(np.linalg.norm(delta)),
            "adversarial_prediction": after,
            "prediction": before,
            "found": after != before,
        }
