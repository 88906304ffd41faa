"""The one interface every explainer backend implements (alibi-detect style: one base class, a module per backend).

A backend is built from `ExplainerSettings`, `load()`s its data and model once (no
predictor calls there: the predictor may start later), then `explain(X, options)`s
batches in a worker thread. Black-box backends get an `HTTPPredictor`; white-box backends
load the model file themselves. Types of shap, captum and alibi stay inside the backend
modules: what leaves them is `InstanceExplanation` (`TextExplanation`, `CompletionExplanation` for text).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from infertap.explainers.backgrounds import Background, load_background
from infertap.explainers.errors import BadExplainRequest, ExplainerLoadError
from infertap.explainers.explanation import Explanation
from infertap.explainers.extras import import_required
from infertap.explainers.predictor import HTTPPredictor
from infertap.explainers.settings import ExplainerSettings


@dataclass(frozen=True)
class Param:
    """A backend parameter a request may set (`parameters.threshold`, ...), with its inclusive bounds.

    Every parameter a request can hand a backend is declared this way (`Explainer.request_params`),
    so none reaches a library unbounded: anchors' `coverage_samples: 1e6`, unchecked, grew the
    server by 600 MiB and `2e6` ended in a MemoryError (issue 19).
    """

    kind: type  # int, float, bool, str (one of `choices`) or list (of `choices`)
    low: float | None = None
    high: float | None = None
    limit: str = ""  # the setting the high bound comes from, named in the error (e.g. "max_samples")
    exclusive: bool = False  # bounds are open: 0 < delta < 1
    nullable: bool = False  # null means "the library's default"
    choices: tuple[str, ...] = ()  # the values a str parameter (or each item of a list one) may take

    def check(self, name: str, value: Any) -> Any:
        """`value` as `kind`; BadExplainRequest naming the parameter and its bounds otherwise."""
        if value is None and self.nullable:
            return None
        if self.kind in (str, list):
            return self._check_choice(name, value)
        if self.kind is bool:
            if not isinstance(value, bool):
                raise BadExplainRequest(f"parameter {name} must be true or false, got {value!r}")
            return value
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (self.kind is int and float(value) != int(value)):
            what = "an integer" if self.kind is int else "a number"
            raise BadExplainRequest(f"parameter {name} must be {what} {self.bounds()}, got {value!r}")
        if not self._within(float(value)):
            raise BadExplainRequest(f"parameter {name} must be {self.bounds()}, got {value!r}")
        return self.kind(value)

    def _check_choice(self, name: str, value: Any) -> Any:
        listed = ", ".join(self.choices)
        if self.kind is str:
            if not isinstance(value, str) or value not in self.choices:
                raise BadExplainRequest(f"parameter {name} must be one of {listed}, got {value!r}")
            return value
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items or any(i not in self.choices for i in items):
            raise BadExplainRequest(f"parameter {name} must be a list of {listed} (at least one), got {value!r}")
        return list(dict.fromkeys(items))

    def _within(self, v: float) -> bool:
        if self.exclusive:
            return (self.low is None or v > self.low) and (self.high is None or v < self.high)
        return (self.low is None or v >= self.low) and (self.high is None or v <= self.high)

    def bounds(self) -> str:
        high = f"{self.high:g}" + (f" ({self.limit})" if self.limit else "")
        if self.exclusive:
            return f"between {self.low:g} and {high}, exclusive"
        if self.high is None:
            return f"at least {self.low:g}"
        return f"between {self.low:g} and {high}"


@dataclass
class ExplainOptions:
    """Per-request choices, already checked against the settings' limits."""

    deadline: float | None = None  # time.monotonic() by which the answer is due
    nsamples: int | None = None
    target: int | None = None
    params: dict[str, Any] = field(default_factory=dict)


class Explainer(ABC):
    """An explainer backend behind one interface."""

    type_name: ClassVar[str] = ""
    kind: ClassVar[Literal["blackbox", "whitebox"]] = "blackbox"
    needs_background: ClassVar[bool] = False
    #: A saved explainer (`explainer_uri`) carries its own data: no background needed then (anchors).
    saved_holds_data: ClassVar[bool] = False
    #: Top-level modules the backend imports lazily (`explainers/extras.py` names their extras).
    requires: ClassVar[tuple[str, ...]] = ()
    #: What an instance is: a row of numbers (or a string, anchors), or an LLM request (`messages` or
    #: `prompt`, and `completion`), which the server reads from V1 bodies and OpenAI-shaped bodies.
    input_kind: ClassVar[Literal["tensor", "llm"]] = "tensor"

    def __init__(self, settings: ExplainerSettings, predictor: HTTPPredictor | None = None):
        self.settings = settings
        self.predictor = predictor
        self.background: Background | None = None
        self.feature_shape: tuple[int, ...] | None = None  # shape of one instance, when known
        self.ready = False
        # shap and alibi explainers keep per-call state on themselves: one explanation at a time each.
        self._lock = threading.Lock()
        self._deadline = threading.local()

    # ---------------------------------------------------------------- lifecycle

    def load(self) -> None:
        """Read background data and the model; ExplainerLoadError names what is missing."""
        import_required(self.type_name, self.requires)  # MissingExtra names the extra, before any work
        if self.kind == "blackbox" and self.predictor is None:
            raise ExplainerLoadError(f"{self.type_name} is a black-box explainer: give predictor_url")
        if self.settings.background:
            self.background = load_background(self.settings.background, self.settings.background_size)
            self.feature_shape = self.background.feature_shape
        elif self.needs_background and not (self.saved_holds_data and self.settings.explainer_uri):
            raise ExplainerLoadError(
                f"{self.type_name} needs background data: give background "
                "(an .npz from `infertap fit`, or rows in .npy such as reference.npy)"
            )
        self._load()
        self.ready = True

    def _load(self) -> None:  # noqa: B027 - a hook: backends with nothing to load keep this no-op
        """Backend-specific loading (model file, library objects)."""

    def close(self) -> None:
        if self.predictor is not None:
            self.predictor.close()

    def require_background(self) -> Background:
        """The background `load` read (always there once loaded, for a backend that `needs_background`)."""
        if self.background is None:
            raise RuntimeError(f"{self.type_name} has no background data (load it first)")
        return self.background

    def require_predictor(self) -> HTTPPredictor:
        """The predictor of a black-box backend (`load` refuses one without)."""
        if self.predictor is None:
            raise ExplainerLoadError(f"{self.type_name} is a black-box explainer: give predictor_url")
        return self.predictor

    # ---------------------------------------------------------------- explaining

    @abstractmethod
    def explain(self, X: np.ndarray, options: ExplainOptions) -> Sequence[Explanation]:
        """One explanation per row of X (runs in a worker thread; may block)."""

    def request_params(self) -> dict[str, Param]:
        """The backend parameters (besides nsamples, target, deadline_s) a request may set, with bounds.

        Other keys in a request's parameters are not handed to the backend (V2 `parameters` also
        carry the protocol's own keys, such as `content_type`).
        """
        return {}

    def check_work(self, n: int, options: ExplainOptions) -> None:  # noqa: B027 - an optional hook
        """Refuse (BadExplainRequest) what would make this backend hold too much at once for `n` instances."""

    def check_rows(self, rows: int, what: str) -> None:
        """BadExplainRequest when `rows` (described by `what`) exceed the settings' max_sample_rows."""
        if rows > self.settings.max_sample_rows:
            raise BadExplainRequest(
                f"{what} = {rows} rows held at once; max_sample_rows is {self.settings.max_sample_rows}"
            )

    def check_input(self, X: np.ndarray) -> np.ndarray:
        """X as a float batch of the expected shape; BadExplainRequest naming what was expected."""
        if X.dtype.kind not in "biuf":
            raise BadExplainRequest(f"{self.type_name} explains numbers, got {describe_dtype(X)} data")
        if X.ndim == 0:
            raise BadExplainRequest(f"{self.type_name} explains a batch of instances, got a single value")
        if X.ndim == 1:
            X = X.reshape(1, -1)
        shape = self.feature_shape
        if shape is not None:
            per_row = int(np.prod(shape))
            if X.shape[1:] == shape:
                pass
            elif len(shape) > 1 and int(np.prod(X.shape[1:])) == per_row:
                X = X.reshape((len(X), *shape))
            elif len(shape) == 1:
                raise BadExplainRequest(
                    f"expected {shape[0]} features per instance, got "
                    f"{'x'.join(map(str, X.shape[1:]))} (input shape {list(X.shape)})"
                )
            else:
                raise BadExplainRequest(f"expected instances of shape {list(shape)}, got {list(X.shape[1:])}")
        return finite_float32(X)

    def feature_names(self, n: int) -> list[str]:
        names = self.settings.feature_names or (self.background.feature_names if self.background else None)
        if names and len(names) == n:
            return list(names)
        return [f"f{i}" for i in range(n)]

    # ---------------------------------------------------------------- black-box helpers

    def model_fn(self):
        """`f(X)` for shap/alibi: the predictor, stopping at the deadline of the call in this thread."""
        predictor = self.predictor

        def f(X):
            if predictor is None:
                raise ExplainerLoadError(f"{self.type_name} is a black-box explainer: give predictor_url")
            return predictor.predict(np.asarray(X), getattr(self._deadline, "value", None))

        return f

    def set_deadline(self, deadline: float | None) -> None:
        self._deadline.value = deadline


def describe_dtype(X: np.ndarray) -> str:
    """What a client sent, in its words: text (V1 strings, V2 BYTES) rather than numpy's `<U5` or `object`."""
    if X.dtype.kind in "US":
        return "text"
    return "non-numeric (object)" if X.dtype.kind == "O" else str(X.dtype)


def finite_float32(X: np.ndarray) -> np.ndarray:
    """X as float32; infinity, or a value float32 cannot hold (|x| > 3.4e38, it would become
    infinity), is the client's error: BadExplainRequest. Unchecked, the predictor refused
    the rows and the client got 502. NaN passes: xgboost and lightgbm read it as missing."""
    with np.errstate(over="ignore"):
        out = X.astype(np.float32, copy=False)
    if np.isinf(out).any():
        raise BadExplainRequest("instances hold infinity or values beyond float32's range (|x| > 3.4e38)")
    return out


def pick_target(outputs: np.ndarray, requested: int | None) -> tuple[int | None, float]:
    """(target column, its value) for one instance's outputs: the requested class, else the predicted one."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 0 or outputs.size == 1:
        return None, float(outputs.reshape(-1)[0])
    if requested is not None:
        if not 0 <= requested < outputs.size:
            raise BadExplainRequest(f"target {requested} is out of range: the model has {outputs.size} outputs")
        return requested, float(outputs[requested])
    target = int(outputs.argmax())
    return target, float(outputs[target])


def select(values: np.ndarray, base: np.ndarray | float, target: int | None) -> tuple[np.ndarray, float]:
    """The attributions (features) and base value of `target` from (features[, outputs]) arrays."""
    values = np.asarray(values)
    base = np.asarray(base, dtype=np.float64).reshape(-1)
    if values.ndim == 1:
        return values, float(base[0])
    t = 0 if target is None else target
    return values[:, t], float(base[t] if base.size > 1 else base[0])


def floats(array: np.ndarray) -> list[float]:
    return np.asarray(array, dtype=np.float64).reshape(-1).tolist()
