"""Entry point of the children of `infertap up`: run one component from JSON settings.

    python -m sidecar.runner serving '{"http_port": 8080, "models": [...]}'
    python -m sidecar.runner logger  '{"port": 9081, "log_url": [...]}'
    python -m sidecar.runner explain-stream '{"stream": {"bootstrap": ..., "sample_rate": 0.05}, "explainer": {...}}'

JSON keeps the hand-off exact (lists, dicts, paths) whatever flags each package parses.
"""
from __future__ import annotations

import sys


def run_component(component: str, payload: str) -> None:
    if component == "serving":
        from serving.server import run
        from serving.settings import ServerSettings

        run(ServerSettings.model_validate_json(payload))
    elif component == "logger":
        from logger.server import run
        from logger.settings import LoggerSettings

        run(LoggerSettings.model_validate_json(payload))
    elif component == "explainer":
        from explainers.server import run
        from explainers.settings import ExplainerSettings

        run(ExplainerSettings.model_validate_json(payload))
    elif component == "explain-stream":
        from explainers.stream import serve

        serve(*explain_stream_settings(payload))
    elif component == "detector":
        from detectors.settings import WorkerSettings
        from detectors.worker import main as run_detector

        run_detector(WorkerSettings.model_validate_json(payload))
    else:
        raise SystemExit(f"unknown component {component!r}; expected serving, logger, explainer, explain-stream or detector")


def explain_stream_settings(payload: str):
    """(StreamSettings, ExplainerSettings) from `{"stream": {...}, "explainer": {...}}`."""
    import json

    from explainers.settings import ExplainerSettings
    from explainers.stream import StreamSettings

    values = json.loads(payload)
    return StreamSettings(**values["stream"]), ExplainerSettings.model_validate(values["explainer"])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m sidecar.runner serving|logger|explainer|explain-stream|detector SETTINGS_JSON")
    run_component(*args)


if __name__ == "__main__":
    main()
