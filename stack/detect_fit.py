"""`infertap fit` for `kind: Detector` documents: the verb's adapter to `infertap.detectors.fit`.

Called by the `fit` verb in `infertap.stack.cli` (which dispatches on the document kind) with the
loaded document, the `--reference` override and a progress callback; returns the lines to
print, raises PlanError (exit 2, one sentence naming the document) on bad input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infertap.stack.plan import PlanError


def fit_detector(
    doc: Any, reference: str | None = None, size: int | None = None, progress: Callable[[str], None] | None = None
) -> list[str]:
    """Fit one Detector document's backend and save it (see `infertap.detectors.fit.fit_detector`)."""
    from infertap.detectors.fit import FitError
    from infertap.detectors.fit import fit_detector as fit

    report = (lambda stage, done, total: progress(f"[{done}/{total}] {stage}")) if progress else None
    ref = Path(reference.removeprefix("file://")).expanduser() if reference else None
    try:
        outcome = fit(doc.spec, doc.source.parent, reference=ref, progress=report)
    except FitError as exc:
        raise PlanError(f"{doc.where}: {exc}") from None
    except ImportError as exc:
        raise PlanError(f"{doc.where}: {exc}") from None
    lines = [
        f"{doc.spec.name}/detector ({outcome.detector}): fitted on {outcome.rows} rows in {outcome.seconds:.1f} s, "
        f"saved to {outcome.path}"
    ]
    if outcome.summary:
        lines.append(f"  on its reference: {json.dumps(outcome.summary)}")
    if doc.spec.spec.detector.saved_detector is None:
        lines.append(f"  run it with spec.detector.savedDetector: {outcome.path}")
    return lines
