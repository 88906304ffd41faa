"""KServe huggingfaceserver arguments on infertap's command line, and in an InferenceService's `args:`.

KServe's flags that infertap has (`--model_name`, `--task`, `--backend`, `--dtype`,
`--max_model_len`, `--max-model-len`, `--model_dir`) are ordinary flags of
`python -m infertap.serving` (generated from ModelSettings; the underscore spellings are
accepted by `infertap.flags`). The many vLLM engine arguments a KServe YAML may carry
(`--gpu_memory_utilization=0.9`, `--enable-prefix-caching`, `--tensor-parallel-size 2`, ...)
mean nothing to the transformers backend: for a huggingface model they are accepted and
dropped with one warning line, instead of failing the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HF_FORMAT = "huggingface"
_FORMAT_FLAGS = ("--model-format", "--model_format")


def known_flags(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def _is_value(token: str) -> bool:
    if not token.startswith("-"):
        return True
    try:
        float(token)
    except ValueError:
        return False
    return True


def split_unknown(argv: list[str], known: set[str]) -> tuple[list[str], list[str]]:
    """(arguments `known` covers, unknown options with their values). `--x=v`, `--x v`, `--x "v w"` and bare `--x`."""
    kept: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0].split(" ", 1)[0]
        if arg.startswith("--") and arg != "--" and name not in known:
            dropped.append(arg)
            if "=" not in arg and " " not in arg and i + 1 < len(argv) and _is_value(argv[i + 1]):
                dropped.append(argv[i + 1])
                i += 1
        else:
            kept.append(arg)
        i += 1
    return kept, dropped


def _serves_huggingface(argv: list[str]) -> bool:
    for i, arg in enumerate(argv):
        name, _, value = arg.partition("=")
        if name in _FORMAT_FLAGS:
            if not value and i + 1 < len(argv):
                value = argv[i + 1]
            if value == HF_FORMAT:
                return True
        if name == "--config":
            path = value or (argv[i + 1] if i + 1 < len(argv) else "")
            try:
                models = json.loads(Path(path).read_text()).get("models") or []
            except (OSError, ValueError, AttributeError):
                continue
            if any(isinstance(m, dict) and m.get("format") == HF_FORMAT for m in models):
                return True
    return False


def accept_vllm_args(argv: list[str], parser: argparse.ArgumentParser, prog: str) -> list[str]:
    """`argv` without the options infertap does not know, when it serves a huggingface model (one warning line)."""
    if not _serves_huggingface(argv):
        return argv
    kept, dropped = split_unknown(argv, known_flags(parser))
    if dropped:
        sys.stderr.write(
            f"{prog}: warning: ignoring arguments the huggingface runtime does not use (vLLM engine or KServe "
            f"options): {' '.join(dropped)}\n"
        )
    return kept


def model_fields_from_args(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """ModelSettings fields set by an InferenceService's `spec.predictor.model.args` (KServe's spellings),
    and the arguments ignored. Server-level flags (`--http_port`, ...) are ignored too: `infertap up`
    chooses ports itself. FlagError (from infertap.flags) for a malformed known flag."""
    from infertap.flags import CommandLine
    from infertap.serving.settings import ServerSettings

    command = CommandLine(prog="args", description="", models=ServerSettings, config_flag=False)
    parser = command.parser()
    kept, dropped = split_unknown(list(args), known_flags(parser))
    model_flags = {name for f in command.flags if len(f.targets[0][1]) == 2 for name in f.names}
    model_flags |= {"--" + n[2:].replace("-", "_") for n in model_flags}
    own: list[str] = []
    i = 0
    while i < len(kept):
        arg = kept[i]
        name = arg.split("=", 1)[0]
        takes_value = "=" not in arg and i + 1 < len(kept) and _is_value(kept[i + 1])
        if name in model_flags or name.startswith("--no-") and name.replace("--no-", "--", 1) in model_flags:
            own.append(arg)
            if takes_value and not _is_flag_bool(parser, name):
                own.append(kept[i + 1])
                i += 1
        else:
            dropped.append(arg)
            if takes_value and not _is_flag_bool(parser, name):
                dropped.append(kept[i + 1])
                i += 1
        i += 1
    parsed = command.parse(own)
    models = parsed.values[""].get("models") or [{}]
    fields = dict(models[0]) if isinstance(models[0], dict) else {}
    return fields, dropped


def _is_flag_bool(parser: argparse.ArgumentParser, name: str) -> bool:
    action = parser._option_string_actions.get(name)
    return action is not None and action.nargs == 0
