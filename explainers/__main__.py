"""`python -m infertap.explainers`: one explainer server from flags (or a JSON ExplainerSettings file, `--config`).

The flags are generated from `ExplainerSettings` (`infertap.flags`); `$INFERTAP_EXPLAINER_<FIELD>`
sets a field from the environment. The same flags are what `spec.explainer.containers[0].args`
carries in an InferenceService (see `stack/explain_plan.py`); KServe's own `--model_name` and
`--predictor_host`, which its controller appends to explainer containers, are accepted as
aliases. `infertap explain ARGS` is this same command line. So is the command line of KServe's
alibi explainer image (`AnchorTabular --storage_uri ...` as a positional sub-command with its own
flags after it: `infertap.explainers.kserve_args`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from infertap.explainers.settings import ExplainerSettings
from infertap.flags import CommandLine, FlagError, exit_with, sentence_lines

#: Bad flags or settings, one sentence naming the flag (what the planner turns into a YAML path).
ArgsError = FlagError

COMMAND = CommandLine(
    prog="python -m infertap.explainers",
    description="infertap explainer server (V1 :explain, V2 infer).",
    models=ExplainerSettings,
)


def parser(raise_errors: bool = False, prog: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser (its errors raise ArgsError)."""
    return COMMAND.parser(prog)


def settings_from_args(
    argv: list[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    raise_errors: bool = False,
    prog: str | None = None,
) -> ExplainerSettings:
    """ExplainerSettings from flags over $INFERTAP_EXPLAINER_* over `--config` over `defaults`.

    `raise_errors`: bad input raises ArgsError (a sentence naming the flag) instead of printing
    it and exiting 2.
    """
    if not raise_errors:
        return COMMAND.settings_or_exit(argv, base=defaults, prog=prog)
    return COMMAND.build(COMMAND.parse(argv, base=defaults, prog=prog))


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` backend parameters, values JSON when they parse (what `--params`/`--param` take)."""
    return COMMAND.parse([f"--params={pair}" for pair in pairs]).values[""].get("params", {})


def validation_sentence(err: ValidationError) -> str:
    return "; ".join(sentence_lines(err))


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    import os
    import sys

    from infertap.explainers.kserve_args import kserve_alibi_args

    kserve = kserve_alibi_args(sys.argv[1:] if argv is None else argv, os.environ)  # KServe's alibi image's args
    if kserve.ignored:
        print(
            f"ignoring KServe arguments infertap's explainer has no use for: {' '.join(kserve.ignored)}",
            file=sys.stderr,
        )
    settings = settings_from_args(kserve.args, prog=prog)
    from infertap.explainers.server import run

    try:
        run(settings)
    except ValidationError as err:  # pragma: no cover - settings are valid by now
        exit_with(f"invalid explainer settings: {validation_sentence(err)}")


if __name__ == "__main__":
    main()
