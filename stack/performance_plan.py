"""What `infertap up` adds for a RealisedPerformance Detector (docs/ground-truth.md).

The worker itself is planned as every Detector's (`plan.plan_detector`, component
`performance` of the runner); here is what it needs from the rest of the stack:

- its state folder: `<log-dir>/state/<name>` (beside the loggers' spools) unless the spec
  names a `stateDir`; its replicas share it (one SQLite file per partition);
- the InferenceService's predictor logger, which takes the feedback: it checks targets
  against the task and classes (`feedback_task`, `feedback_classes`), and, so that a label
  can name the id the client sent, takes the event id from the `id_header`
  (`request_id_header`, when the spec left it unset) or, for `join_on: header`, copies the
  header into the events' `metadata` (`metadata_headers`). Each change is said in the notes.

This module imports `processes`, never `plan` (which imports it): no import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infertap.detectors.performance.settings import PerformanceParams
from infertap.sidecar.settings import LoggerSettings
from infertap.stack.processes import ProcessSpec, runner_command
from infertap.stack.specs import Document


def performance_overrides(doc: Document, spool_root: Path | None) -> dict[str, Any]:
    """Settings `up` gives the worker beyond the spec's: the state folder under the log folder."""
    det = doc.spec
    if det.spec.state_dir is None and spool_root is not None:
        return {"state_dir": spool_root.parent / "state" / det.name}
    return {}


def wire_loggers(doc: Document, loggers: list[ProcessSpec], notes: list[str]) -> None:
    """Tell the InferenceService's predictor loggers what feedback to take and which id to log."""
    det = doc.spec
    params = PerformanceParams.model_validate(det.spec.detector.params)
    for logger in loggers:
        settings = logger.settings_as(LoggerSettings)
        update: dict[str, Any] = {"feedback_task": params.task, "feedback_classes": params.classes or []}
        header = params.id_header
        if params.join_on == "event_id" and not settings.request_id_header:
            update["request_id_header"] = header.lower()
            notes.append(
                f"{doc.where}: {logger.name} takes the event id from the request's {header} header "
                "(when it has one and no ce-id): feedback names it"
            )
        elif params.join_on == "header" and header.lower() not in {h.lower() for h in settings.metadata_headers}:
            update["metadata_headers"] = [*settings.metadata_headers, header]
            notes.append(f"{doc.where}: {logger.name} copies the {header} header into the events' metadata")
        if settings.log_mode == "request":
            notes.append(
                f"{doc.where}: {logger.name} logs requests only (mode: request): no prediction to join a label to"
            )
        logger.settings = settings.model_copy(update=update)
        argv, env = runner_command("logger", logger.settings)
        logger.argv, logger.env = argv, {**logger.env, **env}
