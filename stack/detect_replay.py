"""`infertap detect SPEC --replay FILE [--output OUT.jsonl]`: the verb's adapter to `infertap.detectors.replay`.

Runs the document's backend over the file with a progress bar on stderr (stdout may be the
JSON lines), prints a summary line, and turns bad input into `ReplayFailed` (one sentence,
exit 2): the file (missing, unreadable, columns the spec needs absent), the spec's detector
(params, reference data, a missing extra).
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import Any

from infertap.detectors.replay import ReplayError, ReplayOutcome, ReplaySettings, replay


class ReplayFailed(ValueError):
    """The replay could not run; the message is one sentence for the user."""


def run_replay(settings: Any, options: ReplaySettings, where: str) -> list[str]:
    """Replay `options.replay` through the detector `settings` describe; the lines to print (stderr)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from infertap.detectors.reference import ReferenceError

    assert options.replay is not None  # the verb calls this only with --replay
    name = options.replay.name
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with ExitStack() as stack:
        out = stack.enter_context(open(options.output, "wb")) if options.output else sys.stdout.buffer
        bar = stack.enter_context(Progress(*columns, console=console, transient=False))
        task = bar.add_task(f"replaying {name}", total=None)

        def progress(done: int, total: int, windows: int) -> None:
            bar.update(task, completed=done, total=total, description=f"replaying {name}: {windows} windows")

        try:
            outcome = replay(settings, options.replay, out, options, progress=progress)
        except (ReplayError, ReferenceError) as exc:
            raise ReplayFailed(f"{where}: {exc}") from None
        except (ValueError, TypeError, ImportError) as exc:  # the backend cannot be built or fitted as specified
            raise ReplayFailed(f"{where}: detector {settings.detector}: {exc}") from None
        out.flush()
    return [summary(outcome, options)]


def summary(outcome: ReplayOutcome, options: ReplaySettings) -> str:
    """One line: rows, windows, detections written, rejects by reason, rows never judged."""
    parts = [
        f"replayed {outcome.rows} rows of {options.replay}: {outcome.windows} windows, {outcome.detections} detections"
    ]
    if options.output:
        parts[0] += f" written to {options.output}"
    if outcome.rejected:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(outcome.reasons.items()))
        parts.append(f"{outcome.rejected} rows rejected ({reasons})")
    if outcome.unjudged:
        parts.append(f"{outcome.unjudged} rows in a last window that never filled, not judged")
    return "; ".join(parts)
