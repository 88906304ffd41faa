"""`infertap fit SPEC`: fit a Detector document's backend from its reference data and save it.

What "fit" means depends on the backend: the threshold percentile for IForest and
Mahalanobis, training for the autoencoders, the served model's outputs and a surrogate for
AdversarialAE / ModelDistillation (`predictor`), the bootstrap threshold configuration for
the online detectors (`ert`, window sizes), nothing beyond storing the reference for the
offline drift tests. The folder written is what `savedDetector:` names in the spec the
worker runs (`infertap.detectors.backends.registry.load_backend` reads it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infertap.detectors.backends.base import DetectorBackend


class FitError(ValueError):
    """A fit that cannot be done as specified; the message is one sentence for the user."""


@dataclass
class FitOutcome:
    name: str
    detector: str
    path: Path
    rows: int
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


#: a progress callback: (stage description, stages done, stages in all)
Progress = Callable[[str, int, int], None]
STAGES = ("reading reference data", "fitting", "checking on the reference", "saving")


def fit_detector(
    document: Any,
    base_dir: Path,
    reference: Path | None = None,
    out: Path | None = None,
    predictor: str | None = None,
    progress: Progress | None = None,
) -> FitOutcome:
    """Fit the `kind: Detector` document (a `infertap.stack.specs.detector.Detector`) and save it.

    Reference rows: `reference`, else the spec's `detector.reference`. Saved to `out`, else
    the spec's `detector.savedDetector` (so `infertap fit` fills the folder the worker will
    load), else `<name>-detector/` beside the YAML. `predictor` sets the adversarial
    detectors' V1 URL. Raises FitError (bad spec or data) or ImportError (a missing extra).
    """
    from infertap.detectors.evaluator import _create, backend_params, fit_backend, read_reference
    from infertap.detectors.reference import ReferenceError

    report = progress or (lambda *_: None)
    started = time.perf_counter()
    settings = document.to_settings(base_dir)
    reference = Path(reference) if reference is not None else settings.reference
    if reference is None:
        raise FitError(f"{document.name}: no reference data to fit on: give spec.detector.reference or --reference")
    target = Path(out) if out is not None else (settings.saved_detector or base_dir / f"{document.name}-detector")
    params = resolve_paths(backend_params(settings), base_dir)
    if predictor is not None:
        params["predictor"] = predictor

    report(STAGES[0], 0, len(STAGES))
    try:
        backend = _create(settings.detector, settings.feature_names, params)
    except (ValueError, TypeError, AttributeError, ModuleNotFoundError) as exc:
        if isinstance(exc, ModuleNotFoundError) and ":" not in settings.detector:
            raise
        raise FitError(f"spec.detector: {exc}") from None
    try:
        x_ref, y_ref = read_reference(backend, reference, settings.features)  # labels too, for labelled backends
    except ReferenceError as exc:
        raise FitError(str(exc)) from None

    stage = f"{STAGES[1]} {settings.detector} on {len(x_ref)} rows"
    report(stage, 1, len(STAGES))
    if hasattr(backend, "on_progress"):  # long fits (embedding a text corpus) say how far they are
        backend.on_progress = lambda text: report(f"{stage}: {text}", 1, len(STAGES))
    try:
        fit_backend(backend, x_ref, y_ref)
    except ValueError as exc:
        raise FitError(f"{settings.detector}: {exc}") from None

    report(STAGES[2], 2, len(STAGES))
    # a backend that checked itself on held-out reference data while fitting says so (the text detectors)
    summary = backend.fit_summary() if hasattr(backend, "fit_summary") else self_check(backend, x_ref)

    report(f"{STAGES[3]} to {target}", 3, len(STAGES))
    target.mkdir(parents=True, exist_ok=True)
    backend.save(target)
    report("done", 4, len(STAGES))
    return FitOutcome(document.name, settings.detector, target, int(len(x_ref)), time.perf_counter() - started, summary)


def resolve_paths(params: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A `model` file named relative to the YAML is looked up beside it."""
    params = dict(params)
    model = params.get("model")
    if isinstance(model, str) and not Path(model).is_absolute() and (base_dir / model).exists():
        params["model"] = str(base_dir / model)
    return params


def self_check(backend: DetectorBackend, x_ref: np.ndarray, rows: int = 500) -> dict[str, Any]:
    """What the fitted detector says about (part of) its own reference: a sanity figure to print.

    Online detectors are not fed (that would advance their state); outlier and adversarial
    ones report the share of reference rows above the threshold (about 1 - percentile).
    """
    if backend.online:
        return {"online": True}
    sample = x_ref[: min(rows, len(x_ref))]
    result = backend.predict(sample)
    summary: dict[str, Any] = {"threshold": result.threshold}
    flags = result.is_outlier if result.is_outlier is not None else result.is_adversarial
    if flags is not None:
        summary["flagged_share_of_reference"] = round(sum(flags) / max(1, len(flags)), 4)
    if result.is_drift is not None:
        summary["drift_on_reference"] = result.is_drift
    if result.metrics:  # performance estimators: the estimate on the reference and the alert thresholds
        judged = [m for m in result.metrics if m.headline]
        summary = {
            "estimated_on_reference": {m.name: _round(m.value) for m in judged},
            "thresholds": {m.name: [_round(m.lower_threshold), _round(m.upper_threshold)] for m in judged},
        }
    return summary


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
