"""alibi-detect detectors that need TensorFlow: OutlierAE, OutlierVAE (outlier) and
AdversarialAE, ModelDistillation (adversarial), for tabular rows.

Install with the `detectors-tf` extra (TensorFlow CPU 2.18, tf-keras, TensorFlow
Probability, alibi-detect 0.13.0); `make venv-tf` builds `.venv-tf` with it, apart from the
main environment, whose torch and numpy pins it would fight. alibi-detect is under the
Business Source License 1.1 (see `alibi_common`). alibi-detect 0.13 targets Keras 2, so
`TF_USE_LEGACY_KERAS=1` is set before TensorFlow is first imported (tf.keras is then
tf-keras, not Keras 3, whose weight files alibi-detect's saving cannot write).

Networks are small dense ones built from `hidden` (layer widths) and `encoding_dim` /
`latent_dim`; `epochs`, `batch_size` and `learning_rate` drive training at `fit`.
The adversarial detectors need a differentiable classifier: `model` (a saved Keras model
file), or `predictor` (a V1 URL of the served model, e.g.
http://127.0.0.1:8080/v1/models/iris): then `fit` asks the served model for its outputs on
the reference rows and distils them into a small Keras surrogate that the detector uses in
the served model's place (`served_model.py`). Saving uses alibi-detect's own
`save_detector` (its legacy format: meta.dill, <Name>.dill, model/), so the folders also
load with alibi-detect's `load_detector`, as Seldon's alibi-detect-server reads them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from infertap.detectors.backends.alibi_common import AlibiBackend, finite, scores
from infertap.detectors.backends.tf_networks import dense_stack, import_tf
from infertap.detectors.result import DetectionResult

__all__ = ["AdversarialAE", "ModelDistillation", "OutlierAE", "OutlierVAE", "dense_stack", "import_tf"]

TRAINING = {
    "hidden": "widths of the dense hidden layers (default [32, 16])",
    "epochs": "training epochs (default 30)",
    "batch_size": "training batch size (default 64)",
    "learning_rate": "Adam learning rate (default 0.001)",
    "threshold_perc": "percentile of the reference rows' scores used as the threshold (default 95)",
    "seed": "random seed for TensorFlow (default 0)",
}


class TFBackend(AlibiBackend):
    """Trains a TensorFlow detector on the reference rows, then infers its threshold."""

    alibi_module = "alibi_detect.od"
    store = "alibi"
    own_params: ClassVar[dict[str, str]] = TRAINING
    #: alibi-detect constructor settings a YAML may give (the networks are built here)
    settings: ClassVar[tuple[str, ...]] = ("threshold",)

    @classmethod
    def accepted(cls) -> set[str]:
        return set(cls.settings)

    def check_params(self) -> None:
        super().check_params()
        for name in ("epochs", "batch_size"):
            value = self.params.get(name, 1)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{self.name()}: parameter {name!r} must be a whole number >= 1 (got {value!r})")
        hidden = self.params.get("hidden", [32, 16])
        if not (isinstance(hidden, list) and all(isinstance(w, int) and w > 0 for w in hidden)):
            raise ValueError(f"{self.name()}: parameter 'hidden' must be a list of layer widths (got {hidden!r})")
        perc = self.params.get("threshold_perc", 95)
        if not isinstance(perc, (int, float)) or not 0 < perc < 100:
            raise ValueError(
                f"{self.name()}: parameter 'threshold_perc' must be a number between 0 and 100 (got {perc!r})"
            )

    @property
    def hidden(self) -> list[int]:
        return list(self.params.get("hidden", [32, 16]))

    def training(self, tf: Any) -> dict[str, Any]:
        return {
            "epochs": int(self.params.get("epochs", 30)),
            "batch_size": int(self.params.get("batch_size", 64)),
            "verbose": False,
            "optimizer": tf.keras.optimizers.Adam(learning_rate=float(self.params.get("learning_rate", 1e-3))),
        }

    def fit(self, x_ref: np.ndarray) -> None:
        tf = import_tf()
        # seeded and deterministic ops: the same reference gives the same detector on every run
        tf.keras.utils.set_random_seed(int(self.params.get("seed", 0)))
        tf.config.experimental.enable_op_determinism()
        x_ref = np.asarray(x_ref, dtype=np.float32)
        detector = self.build(tf, x_ref)
        detector.fit(x_ref, **self.training(tf))
        if self.params.get("threshold") is None:
            self.infer_threshold(detector, x_ref)
        self.detector = detector

    def build(self, tf: Any, x_ref: np.ndarray) -> Any:
        raise NotImplementedError

    def infer_threshold(self, detector: Any, x_ref: np.ndarray) -> None:
        detector.infer_threshold(x_ref, threshold_perc=float(self.params.get("threshold_perc", 95)))

    def load(self, path: Any) -> None:
        import_tf()
        super().load(path)

    def save(self, path: Any) -> None:
        import_tf()
        super().save(path)


class OutlierBackendTF(TFBackend):
    kind = "outlier"

    def predict(self, x: np.ndarray) -> DetectionResult:
        detector = self.require_fitted()
        x = np.asarray(x, dtype=np.float32)
        data = detector.predict(x, outlier_type="instance", return_instance_score=True, return_feature_score=False)[
            "data"
        ]
        return DetectionResult(
            kind="outlier",
            detector=self.name(),
            n=int(x.shape[0]),
            threshold=finite(detector.threshold),
            is_outlier=[bool(v) for v in np.asarray(data["is_outlier"]).reshape(-1)],
            instance_scores=scores(data["instance_score"]),
        )


class OutlierAE(OutlierBackendTF):
    """Dense autoencoder; the score is the reconstruction error. `encoding_dim` (default: half the features)."""

    own_params = {**TRAINING, "encoding_dim": "width of the code layer (default: half the features, at least 2)"}

    def build(self, tf: Any, x_ref: np.ndarray) -> Any:
        d = x_ref.shape[1]
        code = int(self.params.get("encoding_dim", max(2, d // 2)))
        encoder = dense_stack(tf, d, self.hidden, code)
        decoder = dense_stack(tf, code, self.hidden[::-1], d)
        return self.alibi_cls()(encoder_net=encoder, decoder_net=decoder, **self.alibi_kwargs())


class OutlierVAE(OutlierBackendTF):
    """Dense variational autoencoder (`latent_dim`, default half the features); score: mean reconstruction error over `samples` draws."""

    settings = ("threshold", "score_type", "latent_dim", "samples", "beta")

    def build(self, tf: Any, x_ref: np.ndarray) -> Any:
        d = x_ref.shape[1]
        kwargs = self.alibi_kwargs()
        latent = int(kwargs.pop("latent_dim", max(2, d // 2)))
        encoder = dense_stack(tf, d, self.hidden, self.hidden[-1] if self.hidden else 2 * latent, last="relu")
        decoder = dense_stack(tf, latent, self.hidden[::-1], d)
        return self.alibi_cls()(encoder_net=encoder, decoder_net=decoder, latent_dim=latent, **kwargs)


class AdversarialBackend(TFBackend):
    """Needs the classifier it protects: `model` (a Keras model file) or `predictor` (its V1 URL)."""

    kind = "adversarial"
    alibi_module = "alibi_detect.ad"
    own_params = {
        **TRAINING,
        "model": "path of a saved Keras classifier (.keras, .h5 or SavedModel folder)",
        "predictor": "V1 URL of the served model (http://host:port/v1/models/NAME): a surrogate is distilled from it",
        "surrogate_hidden": "widths of the surrogate classifier's hidden layers (default [64, 32])",
        "surrogate_epochs": "epochs to train the surrogate (default 100)",
        "surrogate_jitter": "noise, in standard deviations per feature, of the extra rows the surrogate learns from (default 0.5)",
        "surrogate_jitter_copies": "jittered copies of the reference sent to the served model (default 3)",
    }

    def check_params(self) -> None:
        super().check_params()
        if ("model" in self.params) == ("predictor" in self.params):
            raise ValueError(
                f"{self.name()}: give exactly one of parameter 'model' (a Keras file) or 'predictor' (a V1 URL)"
            )

    def classifier(self, tf: Any, x_ref: np.ndarray) -> Any:
        """The Keras classifier the detector guards: loaded, or distilled from the served model."""
        if "model" in self.params:
            return tf.keras.models.load_model(self.params["model"], compile=False)
        from infertap.detectors.backends.served_model import distil_surrogate, jittered, predictor_outputs

        # the reference plus jittered copies, so the surrogate also learns the served model's
        # decision boundaries between the reference rows, where attacks push inputs
        rows = jittered(
            x_ref,
            copies=int(self.params.get("surrogate_jitter_copies", 3)),
            scale=float(self.params.get("surrogate_jitter", 0.5)),
            seed=int(self.params.get("seed", 0)),
        )
        outputs = predictor_outputs(self.params["predictor"], rows)
        return distil_surrogate(
            tf,
            rows,
            outputs,
            hidden=list(self.params.get("surrogate_hidden", [64, 32])),
            epochs=int(self.params.get("surrogate_epochs", 100)),
        )

    def infer_threshold(self, detector: Any, x_ref: np.ndarray) -> None:
        detector.infer_threshold(x_ref, threshold_perc=float(self.params.get("threshold_perc", 95)))

    def predict(self, x: np.ndarray) -> DetectionResult:
        detector = self.require_fitted()
        x = np.asarray(x, dtype=np.float32)
        data = detector.predict(x, return_instance_score=True)["data"]
        return DetectionResult(
            kind="adversarial",
            detector=self.name(),
            n=int(x.shape[0]),
            threshold=finite(detector.threshold),
            is_adversarial=[bool(v) for v in np.asarray(data["is_adversarial"]).reshape(-1)],
            instance_scores=scores(data["instance_score"]),
        )


class AdversarialAE(AdversarialBackend):
    """Autoencoder trained so the classifier's output on its reconstruction matches the
    original's; score: KL divergence between the two (high for adversarial rows)."""

    settings = ("threshold", "temperature")
    own_params = {
        **AdversarialBackend.own_params,
        "encoding_dim": "width of the code layer (default: the number of features)",
    }

    def build(self, tf: Any, x_ref: np.ndarray) -> Any:
        d = x_ref.shape[1]
        code = int(self.params.get("encoding_dim", d))
        encoder = dense_stack(tf, d, self.hidden, code)
        decoder = dense_stack(tf, code, self.hidden[::-1], d)
        model = self.classifier(tf, x_ref)
        model.trainable = False
        return self.alibi_cls()(encoder_net=encoder, decoder_net=decoder, model=model, **self.alibi_kwargs())


class ModelDistillation(AdversarialBackend):
    """A smaller distilled copy of the classifier; score: divergence between the two outputs."""

    settings = ("threshold", "loss_type", "temperature")

    def build(self, tf: Any, x_ref: np.ndarray) -> Any:
        model = self.classifier(tf, x_ref)
        model.trainable = False
        n_classes = int(model.output_shape[-1])
        inputs = tf.keras.Input(shape=(x_ref.shape[1],))
        scaled = tf.keras.layers.Normalization(mean=x_ref.mean(axis=0), variance=x_ref.var(axis=0) + 1e-12)(inputs)
        distilled = tf.keras.Model(
            inputs, dense_stack(tf, x_ref.shape[1], self.hidden, n_classes, last="softmax")(scaled)
        )
        return self.alibi_cls()(distilled_model=distilled, model=model, **self.alibi_kwargs())
