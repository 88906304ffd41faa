"""`python -m infertap.serving`: one model server from flags (or a JSON ServerSettings file, `--config`).

The flags are generated from `ServerSettings` and, for the one model the command line
serves, `ModelSettings` (`infertap.flags`): `--model-name`, `--model-format`, `--storage-uri`,
`--device`, `--no-dynamic-batching`, `--max-request-bytes`, ...; `$INFERTAP_SERVING_<FIELD>`
sets a server field from the environment. `infertap serve ARGS` is this same command line.
"""

from __future__ import annotations

from infertap.flags import CommandLine, Parsed
from infertap.serving.settings import ServerSettings

COMMAND = CommandLine(
    prog="python -m infertap.serving",
    description="infertap model server (V1 and Open Inference Protocol REST).",
    models=ServerSettings,
)


def _label_default(parsed: Parsed) -> None:
    """The metrics label `inference_service` defaults to the model's name."""
    values = parsed.values[""]
    models = values.get("models")
    if not values.get("inference_service") and isinstance(models, list) and len(models) == 1:
        name = models[0].get("name") if isinstance(models[0], dict) else None
        if name:
            values["inference_service"] = name


def parse_settings(argv: list[str] | None = None, prog: str | None = None) -> ServerSettings:
    """ServerSettings from flags over $INFERTAP_SERVING_* over --config; bad input exits 2 with a sentence."""
    import sys

    from infertap.serving.kserve_args import accept_vllm_args

    # A huggingface model takes KServe YAML args unchanged: vLLM-only ones are dropped with a warning.
    argv = accept_vllm_args(list(sys.argv[1:] if argv is None else argv), COMMAND.parser(prog), prog or COMMAND.prog)
    return COMMAND.settings_or_exit(argv, prog=prog, finish=_label_default)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    settings = parse_settings(argv, prog)
    from infertap.serving.server import run

    run(settings)


if __name__ == "__main__":
    main()
