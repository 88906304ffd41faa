"""The served model, seen from a detector: its outputs over V1 HTTP, and a Keras surrogate of it.

Adversarial detectors (AdversarialAE, ModelDistillation) need a differentiable classifier
in TensorFlow. When the served model is something else (scikit-learn, XGBoost, torch,
ONNX behind our server or KServe's), `fit` asks it for its outputs on the reference rows
(`POST {url}:predict` with V1 `instances`, header `infertap-skip-logging: true` so these
calls stay out of the event stream) and trains a small Keras network to reproduce them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np

BATCH = 256


def predictor_outputs(url: str, x: np.ndarray, timeout: float = 30.0) -> np.ndarray:
    """Class probabilities (n x classes) of the model at the V1 `url` for the rows `x`.

    Labels (a served model without predict_proba) become one-hot rows. ValueError with a
    sentence when the server cannot be reached or answers something else.
    """
    url = url.rstrip("/")
    endpoint = url if url.endswith(":predict") else url + ":predict"
    parts = []
    for start in range(0, len(x), BATCH):
        rows = np.asarray(x[start : start + BATCH], dtype=float).tolist()
        body = json.dumps({"instances": rows}).encode()
        request = urllib.request.Request(
            endpoint,
            data=body,
            method="POST",
            headers={"content-type": "application/json", "infertap-skip-logging": "true"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ValueError(f"predictor {endpoint} answered HTTP {exc.code}: {exc.read()[:300]!r}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ValueError(f"cannot reach predictor {endpoint}: {exc}") from None
        except json.JSONDecodeError:
            raise ValueError(f"predictor {endpoint} did not answer JSON") from None
        if not isinstance(answer, dict) or "predictions" not in answer:
            raise ValueError(f"predictor {endpoint} answered without 'predictions'")
        parts.append(np.asarray(answer["predictions"], dtype=np.float64))
    out = np.concatenate(parts)
    if out.ndim == 1:  # labels
        labels = out.astype(int)
        out = np.eye(int(labels.max()) + 1)[labels]
    return out.astype(np.float32)


def jittered(x: np.ndarray, copies: int, scale: float, seed: int = 0) -> np.ndarray:
    """`x` and `copies` noisy copies of it (Gaussian, `scale` standard deviations per feature)."""
    rng = np.random.default_rng(seed)
    std = x.std(axis=0, keepdims=True)
    noisy = [x + scale * std * rng.normal(size=x.shape) for _ in range(max(0, copies))]
    return np.concatenate([x, *noisy]).astype(np.float32)


def distil_surrogate(tf: Any, x: np.ndarray, outputs: np.ndarray, hidden: list[int], epochs: int) -> Any:
    """A Keras classifier trained to output `outputs` (soft labels) for `x`."""
    from infertap.detectors.backends.tf_networks import dense_stack

    model = dense_stack(tf, x.shape[1], hidden, outputs.shape[1], last="softmax")
    # standardise inside the network: served models often take raw, unscaled features
    inputs = tf.keras.Input(shape=(x.shape[1],))
    scaled = tf.keras.layers.Normalization(mean=x.mean(axis=0), variance=x.var(axis=0) + 1e-12)(inputs)
    wrapped = tf.keras.Model(inputs, model(scaled))
    wrapped.compile(optimizer=tf.keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    wrapped.fit(x.astype(np.float32), outputs, epochs=epochs, batch_size=64, verbose=0)
    return wrapped
