"""Entry point of the children of `infertap up`: run one component from JSON settings.

`infertap up` starts each child as `python -m infertap.stack.runner COMPONENT` and hands it the
settings as JSON in the environment variable INFERTAP_SETTINGS, not on the command line:
settings may carry secrets (Kafka SASL passwords, TLS key paths, ingest tokens), and a
command line is world-readable (`ps`, /proc/PID/cmdline) while a process's environment is
readable only by its owner (and root). The runner removes the variable from its own
environment before it starts the component, so nothing the component spawns inherits it.

    INFERTAP_SETTINGS='{"http_port": 8080, "models": [...]}' python -m infertap.stack.runner serving
    INFERTAP_SETTINGS='{"port": 9081, "log_url": [...]}' python -m infertap.stack.runner logger

By hand, the JSON may also come as a second argument (then the variable is not read):

    python -m infertap.stack.runner serving '{"http_port": 8080, "models": [...]}'
    python -m infertap.stack.runner explain-stream '{"stream": {"bootstrap": ..., "sample_rate": 0.05}, "explainer": {...}}'

Components: serving, logger, explainer, explain-stream, detector, performance (a RealisedPerformance
Detector's worker, `infertap.detectors.performance`). JSON keeps the hand-off
exact (lists, dicts, paths) whatever flags each package parses.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

SETTINGS_ENV = "INFERTAP_SETTINGS"
USAGE = (
    f"usage: {SETTINGS_ENV}=SETTINGS_JSON python -m infertap.stack.runner COMPONENT "
    "(or python -m infertap.stack.runner COMPONENT SETTINGS_JSON), "
    "COMPONENT one of serving, logger, explainer, explain-stream, detector, performance"
)


def run_component(component: str, payload: str) -> None:
    """Run `component` from its settings JSON; each component's $INFERTAP_<COMPONENT>_<FIELD> variables
    override the JSON's values (`infertap.flags.from_json`), as they override a --config file."""
    from pydantic import ValidationError

    from infertap.flags import exit_with, from_json, sentence_lines

    try:
        if component == "serving":
            from infertap.serving.server import run as run_server
            from infertap.serving.settings import ServerSettings

            run_server(from_json(ServerSettings, payload))
        elif component == "logger":
            from infertap.sidecar.server import run as run_logger
            from infertap.sidecar.settings import LoggerSettings

            run_logger(from_json(LoggerSettings, payload))
        elif component == "explainer":
            from infertap.explainers.server import run as run_explainer
            from infertap.explainers.settings import ExplainerSettings

            run_explainer(from_json(ExplainerSettings, payload))
        elif component == "explain-stream":
            from infertap.explainers.stream import serve

            serve(*explain_stream_settings(payload))
        elif component == "detector":
            from infertap.detectors.settings import WorkerSettings
            from infertap.detectors.worker import main as run_detector

            run_detector(from_json(WorkerSettings, payload))
        elif component == "performance":
            from infertap.detectors.performance.settings import PerformanceSettings
            from infertap.detectors.performance.worker import main as run_performance

            run_performance(from_json(PerformanceSettings, payload))
        else:
            raise SystemExit(
                f"unknown component {component!r}; expected serving, logger, explainer, explain-stream, detector "
                "or performance"
            )
    except ValidationError as exc:
        if exc.title not in RUNNER_MODELS:
            raise  # not the hand-off: the component's own error
        exit_with(f"invalid {component} settings: " + "; ".join(sentence_lines(exc)))


#: The settings models the hand-off validates (ValidationError.title is the model's name).
RUNNER_MODELS = {
    "ServerSettings",
    "LoggerSettings",
    "ExplainerSettings",
    "StreamSettings",
    "WorkerSettings",
    "PerformanceSettings",
}


def explain_stream_settings(payload: str):
    """(StreamSettings, ExplainerSettings) from `{"stream": {...}, "explainer": {...}}`."""
    import json

    from infertap.explainers.settings import ExplainerSettings
    from infertap.explainers.stream import StreamSettings
    from infertap.flags import from_json

    values = json.loads(payload)
    return from_json(StreamSettings, values["stream"]), from_json(ExplainerSettings, values["explainer"])


def read_payload(args: list[str], environ: MutableMapping[str, str]) -> tuple[str, str]:
    """(component, settings JSON) from `COMPONENT [SETTINGS_JSON]` and the environment.

    The variable is always removed from `environ` (also when the JSON came as an argument),
    so the component and whatever it spawns never see it.
    """
    from_env = environ.pop(SETTINGS_ENV, None)
    if len(args) == 2:
        return args[0], args[1]
    if len(args) == 1 and from_env:
        return args[0], from_env
    if len(args) == 1:
        raise SystemExit(f"no settings for {args[0]!r}: {SETTINGS_ENV} is not set ({USAGE})")
    raise SystemExit(USAGE)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    run_component(*read_payload(args, os.environ))


if __name__ == "__main__":
    main()
