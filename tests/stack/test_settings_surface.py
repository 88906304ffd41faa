"""One configuration surface per component: every settings field is a documented flag and an env var.

The settings models are the only place a setting is declared; `infertap.flags` generates the
command lines of `python -m infertap.<part>` and of the `infertap` verbs from them. These tests
walk the models, so a field added without a description, or one the generator cannot make a
flag of, fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from infertap.detectors.settings import FeatureSettings, WindowSettings, WorkerSettings
from infertap.explainers.settings import ExplainerSettings
from infertap.explainers.stream import StreamSettings
from infertap.flags import flags_of, from_json
from infertap.serving.settings import ModelSettings, ServerSettings
from infertap.sidecar.settings import LoggerSettings
from infertap.stack.cli import app

runner = CliRunner()

TOP = [ServerSettings, LoggerSettings, WorkerSettings, ExplainerSettings, StreamSettings]
NESTED = [ModelSettings, FeatureSettings, WindowSettings]  # flattened (ModelSettings) or JSON-valued flags
VERBS = {"serve": ServerSettings, "logger": LoggerSettings, "explain": ExplainerSettings, "detect": WorkerSettings}
MODEL = ["--model-name", "m", "--model-format", "sklearn", "--storage-uri", "x"]
ROOT = Path(__file__).resolve().parents[2]
MONITORING = str(ROOT / "examples" / "sklearn-iris-monitoring.yaml")  # two Detector documents


@pytest.mark.parametrize("model", TOP + NESTED, ids=lambda m: m.__name__)
def test_every_field_has_help_text(model: type[BaseModel]):
    missing = [name for name, info in model.model_fields.items() if not (info.description or "").strip()]
    assert not missing, f"{model.__name__}: fields without a description (their --help text): {missing}"


@pytest.mark.parametrize("model", TOP, ids=lambda m: m.__name__)
def test_every_field_is_a_flag_and_an_env_var(model: type[BaseModel]):
    flags = flags_of(model)  # raises on two fields wanting one flag
    covered = {path[0] for flag in flags for _group, path in flag.targets}
    assert covered == set(model.model_fields), f"fields without a flag: {set(model.model_fields) - covered}"
    for flag in flags:
        assert flag.name.startswith("--") and flag.info.description, flag
        if len(flag.targets[0][1]) == 1:
            assert flag.env == model.model_config["env_prefix"] + flag.field_name.upper()
    flattened = {path for flag in flags for _g, path in flag.targets if len(path) == 2}
    if model is ServerSettings:
        assert flattened == {("models", name) for name in ModelSettings.model_fields}


def test_env_prefixes_are_one_per_component():
    prefixes = [m.model_config["env_prefix"] for m in TOP]
    assert prefixes == [
        "INFERTAP_SERVING_",
        "INFERTAP_LOGGER_",
        "INFERTAP_DETECTOR_",
        "INFERTAP_EXPLAINER_",
        "INFERTAP_EXPLAIN_STREAM_",
    ]
    for model in TOP:  # the runner's hand-off and the ingest token's variable are no field's
        assert {"INFERTAP_SETTINGS", "INFERTAP_AUTH_TOKEN"}.isdisjoint(
            model.model_config["env_prefix"] + name.upper() for name in model.model_fields
        )


@pytest.mark.parametrize("verb", VERBS)
def test_verb_help_lists_every_field_flag(verb):
    result = runner.invoke(app, [verb, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"usage: infertap {verb}" in result.output
    for flag in flags_of(VERBS[verb]):
        for name in flag.names:
            assert name in result.output, f"infertap {verb} --help lacks {name}"
        assert f"${flag.env}" in result.output if flag.env else True


def test_the_reported_gaps_are_flags_now():
    logger = runner.invoke(app, ["logger", "--help"], terminal_width=200).output
    for flag in (
        "--batch-linger-ms",
        "--max-request-bytes",
        "--upstream-timeout",
        "--queue-max-events",
        "--spool-max-bytes",
        "--spool-full-policy",
        "--retry-backoff",
        "--sink-timeout",
    ):
        assert flag in logger
    serve = runner.invoke(app, ["serve", "--help"], terminal_width=200).output
    for flag in ("--device", "--no-dynamic-batching", "--max-request-bytes"):
        assert flag in serve
    explain = runner.invoke(app, ["explain", "--help"], terminal_width=200).output
    for flag in ("--explainer-type", "--predictor-url", "--deadline-s", "--params"):
        assert flag in explain


def test_part_parsers_are_the_verbs_parsers():
    from infertap.detectors.__main__ import COMMAND as detectors
    from infertap.explainers.stream import _stream_command
    from infertap.sidecar.__main__ import COMMAND as sidecar

    cli = runner.invoke(app, ["logger", "--help"], terminal_width=200).output
    part = sidecar.parser("infertap logger").format_help()
    assert [line.split()[0] for line in part.splitlines() if line.startswith("  -")] == [
        line.split()[0] for line in cli.splitlines() if line.startswith("  -")
    ]
    stream_help = _stream_command().parser().format_help()
    for flag in flags_of({"stream": StreamSettings, "explainer": ExplainerSettings}):
        assert flag.name in stream_help
    assert "SETTINGS_JSON" in detectors.parser().format_help()


def test_todays_spellings_still_work():
    from infertap.explainers.__main__ import settings_from_args
    from infertap.serving.__main__ import parse_settings
    from infertap.sidecar.__main__ import parse_args

    s = parse_args(
        [
            "--upstream-timeout",
            "3",
            "--auth-token",
            "t",
            "--sink-timeout",
            "7",
            "--retry-backoff",
            "0.1",
            "--retry-backoff-max",
            "2",
            "--http-timeout",
            "4",
            "--upstream-keepalive",
            "1.5",
            "--metadata-headers",
            "a,b",
            "--metadata-headers",
            "c",
            "--metadata-annotations",
            "k=v,x=y",
            "--log-url",
            "kafka://h1:9092,h2:9092/t",
            "--log-url",
            "file:///tmp/x.jsonl",
        ]
    )
    assert (s.upstream_timeout_s, s.ingest_auth_token, s.sink_timeout_s, s.retry_backoff_s) == (3, "t", 7, 0.1)
    assert (s.retry_backoff_max_s, s.http_timeout_s, s.upstream_keepalive_s) == (2, 4, 1.5)
    assert s.metadata_headers == ["a", "b", "c"] and s.metadata_annotations == {"k": "v", "x": "y"}
    assert s.log_url == ["kafka://h1:9092,h2:9092/t", "file:///tmp/x.jsonl"]  # a broker list is no comma list
    served = parse_settings([*MODEL, "--no-dynamic-batching", "--device", "cpu", "--predict-proba"])
    model = served.models[0]
    assert (model.dynamic_batching, model.device, model.predict_proba) == (False, "cpu", True)
    assert served.inference_service == "m"
    e = settings_from_args(
        [
            "--model_name",
            "iris",
            "--type",
            "kernel_shap",
            "--predictor_host",
            "h:8080",
            "--param",
            "threshold=0.9",
            "--feature-names",
            "a,b",
            "--predict-proba",
            "false",
            "--allow-pickle",
            "--http_port",
            "9",
        ]
    )
    assert (e.name, e.explainer_type, e.predictor_url, e.http_port) == ("iris", "KernelShap", "http://h:8080", 9)
    assert (e.params, e.feature_names, e.predict_proba, e.allow_pickle) == ({"threshold": 0.9}, ["a", "b"], False, True)


def test_precedence_flag_over_env_over_file_over_default(tmp_path, monkeypatch):
    from infertap.sidecar.__main__ import parse_args

    config = tmp_path / "logger.json"
    config.write_text(json.dumps({"port": 1111, "batch_linger_ms": 7, "namespace": "from-file"}))
    assert parse_args([]).batch_linger_ms == 20.0  # default
    assert parse_args(["--config", str(config)]).batch_linger_ms == 7  # file over default
    monkeypatch.setenv("INFERTAP_LOGGER_BATCH_LINGER_MS", "5")
    monkeypatch.setenv("INFERTAP_LOGGER_METADATA_HEADERS", '["x-request-id"]')
    s = parse_args(["--config", str(config)])
    assert (s.batch_linger_ms, s.port, s.namespace, s.metadata_headers) == (5, 1111, "from-file", ["x-request-id"])
    assert parse_args(["--config", str(config), "--batch-linger-ms", "3"]).batch_linger_ms == 3  # flag over env
    # the runner's JSON hand-off: env over JSON too
    assert from_json(LoggerSettings, json.dumps({"batch_linger_ms": 9, "port": 2})).batch_linger_ms == 5


@pytest.mark.parametrize(
    "verb, env, value, field",
    [
        ("serve", "INFERTAP_SERVING_MAX_REQUEST_BYTES", "1234", "max_request_bytes"),
        ("logger", "INFERTAP_LOGGER_UPSTREAM_TIMEOUT_S", "12.5", "upstream_timeout_s"),
        ("explain", "INFERTAP_EXPLAINER_DEADLINE_S", "4", "deadline_s"),
    ],
)
def test_env_vars_override_defaults_in_every_verb(monkeypatch, verb, env, value, field):
    """The verb parses, and the server would start with the variable's value (run is stubbed)."""
    import importlib

    module = {
        "serve": "infertap.serving.server",
        "logger": "infertap.sidecar.server",
        "explain": "infertap.explainers.server",
    }[verb]
    seen = []
    monkeypatch.setattr(importlib.import_module(module), "run", seen.append)
    monkeypatch.setenv(env, value)
    args = {"serve": MODEL, "logger": [], "explain": ["--name", "m", "--explainer-type", "KernelShap"]}[verb]
    result = runner.invoke(app, [verb, *args])
    assert result.exit_code == 0, result.output
    assert getattr(seen[0], field) == type(getattr(seen[0], field))(value)


def test_env_vars_of_the_stream_worker_and_detector(monkeypatch):
    from infertap.detectors.__main__ import parse_settings
    from infertap.explainers.stream import parse_args

    monkeypatch.setenv("INFERTAP_EXPLAIN_STREAM_SAMPLE_RATE", "0.25")
    monkeypatch.setenv("INFERTAP_EXPLAINER_WORKERS", "3")
    stream, explainer, max_seconds = parse_args(
        ["--bootstrap", "h:9092", "--inference-service", "iris", "--explainer-type", "KernelShap", "-X", "a=b"]
    )
    assert (stream.sample_rate, stream.kafka_config, explainer.workers, explainer.name) == (0.25, {"a": "b"}, 3, "iris")
    assert explainer.inference_service == "iris" and max_seconds is None
    monkeypatch.setenv("INFERTAP_DETECTOR_POLL_BATCH", "77")
    payload = json.dumps({"name": "d", "inference_service": "iris", "detector": "ks", "reference": "r.npy"})
    worker = parse_settings([payload, "--group", "g", "--bootstrap", "kafka://h:1/t", "--allow-pickle"])
    assert (worker.poll_batch, worker.consumer_group, worker.bootstrap, worker.allow_pickle) == (77, "g", "h:1", True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["logger", "--batch-linger-ms", "-1"], "invalid settings: --batch-linger-ms: input should be greater than"),
        (
            ["logger", "--upstream-timeout", "soon"],
            "invalid settings: --upstream-timeout: input should be a valid number",
        ),
        (
            ["logger", "--spool-full-policy", "x"],
            "--spool-full-policy: must be one of drop_newest, drop_oldest (got 'x')",
        ),
        (["logger", "--no-such-flag"], "invalid settings: unrecognized arguments: --no-such-flag"),
        (
            ["serve", *MODEL, "--device", "tpu"],
            "invalid settings: --device: must be one of auto, cpu, cuda (got 'tpu')",
        ),
        (["serve", "--model-format", "onnx"], "--model-name: required field is missing"),
        (["explain", "--name", "m", "--explainer-type", "Nope"], "--explainer-type: must be one of KernelShap"),
        (["explain", "--name", "m", "--explainer-type", "KernelShap", "--workers", "0"], "--workers: input should be"),
        (
            ["detect", MONITORING, "--name", "iris-drift", "--poll-batch", "x"],
            "invalid settings: --poll-batch: input should be a valid integer",
        ),
        (
            ["detect", MONITORING, "--name", "iris-drift", "--window", "{size"],
            "invalid settings: --window: expected JSON",
        ),
        (["detect", MONITORING, "--name", "nope"], "expected one Detector document named 'nope'"),
    ],
)
def test_invalid_values_exit_2_naming_the_flag(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output


def test_invalid_env_var_exits_2_naming_the_variable(monkeypatch):
    monkeypatch.setenv("INFERTAP_LOGGER_PORT", "eighty")
    result = runner.invoke(app, ["logger"])
    assert result.exit_code == 2 and "invalid settings: $INFERTAP_LOGGER_PORT: input should be a valid integer" in (
        result.output
    )
    monkeypatch.setenv("INFERTAP_LOGGER_PORT", "9081")
    monkeypatch.setenv("INFERTAP_LOGGER_LOG_URL", "kafka://h:9092/t")  # lists take JSON in the environment
    result = runner.invoke(app, ["logger"])
    assert result.exit_code == 2 and "$INFERTAP_LOGGER_LOG_URL: expected JSON" in result.output
    assert "Traceback" not in result.output


def test_python_dash_m_part_says_a_sentence_not_a_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "infertap.sidecar", "--port", "70000"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "invalid settings: --port: input should be less than or equal to 65535" in done.stderr
    assert "Traceback" not in done.stderr
