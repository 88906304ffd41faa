"""`infertap fit` for `kind: Detector` documents: the verb's adapter to `infertap.detectors.fit`.

Called by the `fit` verb in `infertap.stack.cli` (which dispatches on the document kind) with the
loaded document, the `--reference` override and a progress callback; returns the lines to
print, raises PlanError (exit 2, one sentence naming the document) on bad input.

A Detector whose worker runs with another Python (`stack/interpreter.py`: its
`spec.runtime.python`, or a TensorFlow detector's `.venv-tf`) is fitted by that Python, in a
child that fits that one document:

    python -m infertap.stack.detect_fit FILE INDEX [REFERENCE]

It writes one JSON object a line to stdout, each after MARK: `{"progress": text}`,
then `{"lines": [...]}` or `{"error": sentence}`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infertap.stack.plan import PlanError

MARK = "infertap-fit: "


def fit_detector(
    doc: Any, reference: str | None = None, size: int | None = None, progress: Callable[[str], None] | None = None
) -> list[str]:
    """Fit one Detector document's backend and save it (see `infertap.detectors.fit.fit_detector`),
    in the Python its worker runs with."""
    from infertap.stack.interpreter import detector_python

    python = detector_python(doc)
    if not python.own:
        return fit_elsewhere(python.path, doc, reference, progress) + [f"  fitted with {python.shown()}"]
    return fit_here(doc, reference, progress)


def fit_here(doc: Any, reference: str | None = None, progress: Callable[[str], None] | None = None) -> list[str]:
    """The fit in this process."""
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


def fit_elsewhere(
    python: str, doc: Any, reference: str | None = None, progress: Callable[[str], None] | None = None
) -> list[str]:
    """The fit in a child of `python` (`main` below), its progress passed on as it comes."""
    argv = [python, "-m", "infertap.stack.detect_fit", str(doc.source), str(doc.index)]
    if reference:
        argv.append(reference)
    lines: list[str] | None = None
    error: str | None = None
    with tempfile.TemporaryFile() as errors:  # TensorFlow's own chatter; its tail says why a child died
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None  # stdout=PIPE
        with proc.stdout:
            for line in proc.stdout:
                if not line.startswith(MARK):
                    continue
                message = json.loads(line[len(MARK) :])
                if "progress" in message and progress is not None:
                    progress(str(message["progress"]))
                lines = message.get("lines", lines)
                error = message.get("error", error)
        code = proc.wait()
        errors.seek(0)
        tail = errors.read().decode(errors="replace").strip().splitlines()[-5:]
    if error is not None:
        raise PlanError(error)
    if lines is None or code != 0:
        why = "\n".join(tail) or "no output"
        raise PlanError(f"{doc.where}: fitting with {python} failed (exit status {code}):\n{why}")
    return lines


def main(argv: list[str] | None = None) -> None:
    """`python -m infertap.stack.detect_fit FILE INDEX [REFERENCE]`: fit document INDEX of FILE here."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        raise SystemExit("usage: python -m infertap.stack.detect_fit FILE INDEX [REFERENCE]")
    from infertap.stack.specs import SpecError, load_file

    def emit(**message: Any) -> None:
        print(MARK + json.dumps(message), flush=True)

    try:
        found = [d for d in load_file(args[0]).documents if d.index == int(args[1])]
        if not found:
            raise PlanError(f"{args[0]}: no document {args[1]}")
        lines = fit_here(found[0], args[2] if len(args) == 3 else None, progress=lambda text: emit(progress=text))
    except (PlanError, SpecError) as exc:
        emit(error=str(exc))
        raise SystemExit(2) from None
    emit(lines=lines)


if __name__ == "__main__":
    main()
