"""`python -m infertap.explainers`: one explainer server from flags (or a JSON ExplainerSettings file).

The same flags are what `spec.explainer.containers[0].args` carries in an InferenceService
(see `explainers/spec.py`); KServe's own `--model_name` and `--predictor_host`, which its
controller appends to explainer containers, are accepted as aliases.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from infertap.explainers.settings import ExplainerSettings, canonical_type

# flag -> settings field; values typed by ExplainerSettings itself
FLAGS: dict[str, str] = {
    "--name": "name",
    "--explainer-type": "explainer_type",
    "--host": "host",
    "--http-port": "http_port",
    "--predictor-url": "predictor_url",
    "--predictor-model": "predictor_model",
    "--protocol": "protocol",
    "--max-rows-per-request": "max_rows_per_request",
    "--storage-uri": "storage_uri",
    "--model-format": "model_format",
    "--device": "device",
    "--background": "background",
    "--background-size": "background_size",
    "--explainer-uri": "explainer_uri",
    "--deadline-s": "deadline_s",
    "--max-instances": "max_instances",
    "--max-samples": "max_samples",
    "--workers": "workers",
    "--nsamples": "nsamples",
    "--n-steps": "n_steps",
    "--internal-batch-size": "internal_batch_size",
    "--inference-service": "inference_service",
    "--log-level": "log_level",
    "--max-request-bytes": "max_request_bytes",
    "--auth-token": "auth_token",
}
ALIASES = {
    "--name": ["--model-name", "--model_name"],
    "--predictor-url": ["--predictor_host"],
    "--http-port": ["--http_port"],
    "--explainer-type": ["--type", "--explainer_type"],
    "--storage-uri": ["--storage_uri"],
}


class ArgsError(ValueError):
    """Bad flags, raised instead of exiting when the caller (the planner) wants a sentence."""


class _Parser(argparse.ArgumentParser):
    raise_errors = False

    def error(self, message: str):
        if self.raise_errors:
            raise ArgsError(message)
        super().error(message)


def parser(raise_errors: bool = False) -> argparse.ArgumentParser:
    p = _Parser(prog="python -m infertap.explainers", description="infertap explainer server (V1 :explain, V2 infer).")
    p.raise_errors = raise_errors
    p.add_argument("--config", type=Path, help="JSON file holding a whole ExplainerSettings (other flags ignored)")
    for flag, field in FLAGS.items():
        info = ExplainerSettings.model_fields[field]
        p.add_argument(flag, *ALIASES.get(flag, []), dest=field, help=info.description)
    p.add_argument("--feature-names", help="comma-separated feature names")
    p.add_argument(
        "--predict-proba",
        choices=["auto", "true", "false"],
        default="auto",
        help="explain class probabilities (auto: when the model has them)",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow loading a pickled/dill explainer (--explainer-uri); pickles run code",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='backend parameter (JSON value, e.g. threshold=0.9, model_output="probability"); repeatable',
    )
    return p


def settings_from_args(
    argv: list[str] | None = None, defaults: dict[str, Any] | None = None, raise_errors: bool = False
) -> ExplainerSettings:
    """ExplainerSettings from flags over `defaults`; pydantic validates (errors name the field).

    `raise_errors`: bad flags raise ArgsError instead of printing usage and exiting.
    """
    a = parser(raise_errors).parse_args(argv)
    if a.config:
        return ExplainerSettings.model_validate(json.loads(a.config.read_text()))
    values: dict[str, Any] = dict(defaults or {})
    values.update({f: getattr(a, f) for f in FLAGS.values() if getattr(a, f) is not None})
    if "explainer_type" in values:
        values["explainer_type"] = canonical_type(values["explainer_type"])
    url = values.get("predictor_url")
    if url and "://" not in url:  # KServe's --predictor_host is host:port
        values["predictor_url"] = f"http://{url}"
    if a.feature_names:
        values["feature_names"] = [n.strip() for n in a.feature_names.split(",")]
    if a.predict_proba != "auto":
        values["predict_proba"] = a.predict_proba == "true"
    values["allow_pickle"] = a.allow_pickle
    values["params"] = parse_params(a.param)
    return ExplainerSettings.model_validate(values)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        if not eq or not key:
            raise ArgsError(f"--param: expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def validation_sentence(err) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in err.errors())


def main(argv: list[str] | None = None) -> None:
    from pydantic import ValidationError

    from infertap.explainers.server import run

    try:
        settings = settings_from_args(argv)
    except ArgsError as err:
        raise SystemExit(f"invalid explainer flags: {err}") from None
    except ValidationError as err:
        raise SystemExit(f"invalid explainer settings: {validation_sentence(err)}") from None
    run(settings)


if __name__ == "__main__":
    main()
