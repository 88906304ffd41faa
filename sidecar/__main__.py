"""`python -m infertap.sidecar`: the sidecar with flags named like KServe's agent (`cmd/agent/main.go`).

The flags are generated from `LoggerSettings` (`infertap.flags`): every field is a flag
(`--batch-linger-ms`, `--queue-max-events`, ...), today's spellings stay as aliases
(`--upstream-timeout`, `--auth-token`, `--sink-timeout`, ...), and `$INFERTAP_LOGGER_<FIELD>`
sets one from the environment. `infertap logger ARGS` is this same command line.
"""

from __future__ import annotations

import sys

from infertap.flags import CommandLine
from infertap.sidecar.settings import LoggerSettings

COMMAND = CommandLine(
    prog="python -m infertap.sidecar",
    description="infertap logger sidecar: proxies to the model server and logs requests and responses as CloudEvents.",
    models=LoggerSettings,
)


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> LoggerSettings:
    """Flags (over $INFERTAP_LOGGER_*, over --config) to `LoggerSettings`; bad input exits 2 with a sentence.

    KServe's agent argv (what its pod webhook writes) is taken as is: `infertap.sidecar.kserve_agent`."""
    from infertap.flags import exit_with
    from infertap.sidecar.kserve_agent import translate

    try:
        args, warnings = translate(list(sys.argv[1:] if argv is None else argv))
    except ValueError as exc:
        exit_with(f"invalid settings: {exc}", prog or COMMAND.prog)
    settings = COMMAND.settings_or_exit(args, prog=prog)
    for line in warnings:
        sys.stderr.write(f"logger sidecar: warning: {line}\n")
    return settings


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    settings = parse_args(argv, prog)
    from infertap.sidecar.server import run

    run(settings)


if __name__ == "__main__":
    main(sys.argv[1:])
