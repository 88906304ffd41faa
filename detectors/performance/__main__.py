"""`python -m infertap.detectors.performance [SETTINGS_JSON] [FLAGS]`: run one realised-performance worker.

`infertap detect SPEC` (a RealisedPerformance Detector document) and `infertap up` are the
friendly ways in. Flags come from `PerformanceSettings` (`infertap.flags`) and override the
JSON's values; `$INFERTAP_PERFORMANCE_<FIELD>` sets a field from the environment.
"""

from __future__ import annotations

from infertap.detectors.performance.settings import PerformanceSettings
from infertap.flags import CommandLine

COMMAND = CommandLine(
    prog="python -m infertap.detectors.performance",
    description="infertap realised-performance worker: labels from <isvc>-feedback joined by id to the "
    "predictions on <isvc>-events, figures per window to Kafka and /metrics (or: infertap detect SPEC.yaml).",
    models=PerformanceSettings,
    json_arg=True,
)


def parse_settings(argv: list[str] | None = None, prog: str | None = None) -> PerformanceSettings:
    """PerformanceSettings from flags over $INFERTAP_PERFORMANCE_* over the JSON; bad input exits 2 with a sentence."""
    return COMMAND.settings_or_exit(argv, prog=prog)


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    from infertap.detectors.performance.worker import main as run

    run(settings)


if __name__ == "__main__":
    main()
