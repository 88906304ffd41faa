"""`python -m infertap.detectors [SETTINGS_JSON] [FLAGS]`: run one detector worker (the child `infertap up` starts).

`infertap detect SPEC` is the friendly way in: it reads a `kind: Detector` YAML document.
The flags are generated from `WorkerSettings` (`infertap.flags`) and override the JSON's
values; `$INFERTAP_DETECTOR_<FIELD>` sets a field from the environment (precedence: flag,
environment, JSON, default). `--allow-pickle` (or `allow_pickle: true` in the settings) lets
a saved_detector folder holding pickles load; pickles run code when loaded.
"""

from __future__ import annotations

from infertap.detectors.settings import WorkerSettings
from infertap.flags import CommandLine

COMMAND = CommandLine(
    prog="python -m infertap.detectors",
    description="infertap detector worker: windows of a topic's events, detections to Kafka and /metrics "
    "(or: infertap detect SPEC.yaml).",
    models=WorkerSettings,
    json_arg=True,
)


def parse_settings(argv: list[str] | None = None, prog: str | None = None) -> WorkerSettings:
    """WorkerSettings from flags over $INFERTAP_DETECTOR_* over the JSON; bad input exits 2 with a sentence."""
    return COMMAND.settings_or_exit(argv, prog=prog)


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    from infertap.detectors.worker import main as run

    run(settings)


if __name__ == "__main__":
    main()
