"""TensorFlow for the detectors that need it: the import (tf.keras as Keras 2) and small dense networks.

Used by the alibi-detect TF backends (`alibi_tf.py`) and by the served model's Keras
surrogate (`served_model.py`); both import this module, not each other.
"""

from __future__ import annotations

import os
from typing import Any


def import_tf() -> Any:
    """TensorFlow with tf.keras as Keras 2 (tf-keras), as alibi-detect 0.13 expects."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ImportError(
            "this detector needs TensorFlow: pip install 'infertap[detectors-tf]' "
            "(or `make venv-tf` and run the worker with .venv-tf/bin/python)"
        ) from exc
    return tf


def dense_stack(tf: Any, n_in: int, widths: list[int], n_out: int, last: str | None = None) -> Any:
    layers = [tf.keras.layers.InputLayer(input_shape=(n_in,))]
    layers += [tf.keras.layers.Dense(w, activation="relu") for w in widths]
    layers.append(tf.keras.layers.Dense(n_out, activation=last))
    return tf.keras.Sequential(layers)
