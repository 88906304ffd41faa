"""The `infertap` CLI: help on every verb, bad input exits 2 with a sentence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infertap.stack.cli import app

VERBS = ["up", "serve", "logger", "tail", "broker", "detect", "explain", "fit", "render", "report", "feedback"]
FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


def test_top_level_help_lists_every_verb_and_nothing_else():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in VERBS:
        assert verb in result.output
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert names == set(VERBS)


@pytest.mark.parametrize(
    "verb, flag",
    [
        ("up", "--logger-port"),
        ("serve", "--storage-uri"),
        ("logger", "--metadata-headers"),
        ("tail", "--from-beginning"),
        ("broker", "--port"),
        ("detect", "--metrics-port"),
        ("render", "--help"),
        ("report", "--help"),
        ("fit", "--help"),
        ("explain", "--help"),
    ],
)
def test_every_verb_has_help(verb, flag):
    result = runner.invoke(app, [verb, "--help"])
    assert result.exit_code == 0, result.output
    assert flag in result.output


def test_logger_flags_are_named_like_kserves_agent():
    result = runner.invoke(app, ["logger", "--help"], terminal_width=200)
    for flag in (
        "--port",
        "--component-port",
        "--log-url",
        "--log-mode",
        "--source-uri",
        "--inference-service",
        "--namespace",
        "--component",
        "--endpoint",
        "--metadata-headers",
        "--metadata-annotations",
    ):
        assert flag in result.output


def test_python_dash_m_sidecar_is_infertap():
    out = subprocess.run([sys.executable, "-m", "infertap", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Usage: infertap" in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["serve", "--model-name", "m", "--model-format", "tensorflow", "--storage-uri", "x"],
            "invalid settings: --model-format: must be one of sklearn, xgboost, lightgbm, pytorch, onnx",
        ),
        (
            ["serve", "--model-name", "m", "--model-format", "sklearn", "--storage-uri", "x", "--max-batch-size", "0"],
            "invalid settings: --max-batch-size: input should be greater than or equal to 1",
        ),
        (
            ["logger", "--log-mode", "everything"],
            "invalid settings: --log-mode: must be one of all, request, response (got 'everything')",
        ),
        (["logger", "--port", "70000"], "invalid settings: --port: input should be less than or equal to 65535"),
        (["logger", "--metadata-annotations", "novalue"], "--metadata-annotations: expected KEY=VALUE (got 'novalue')"),
        (
            ["up", str(FIXTURES / "kserve-sklearn-iris.yaml")],
            "spec.predictor.model.storageUri: only local storage runs locally",
        ),
    ],
)
def test_bad_settings_exit_2_with_a_sentence(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_up_reports_spec_errors_with_their_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((FIXTURES / "kserve-basic-logger.yaml").read_text().replace("mode: all", "mode: everything"))
    result = runner.invoke(app, ["up", str(bad)])
    assert result.exit_code == 2
    assert (
        f"{bad}: document 1 (InferenceService sklearn-iris): spec.predictor.logger.mode: "
        "must be one of all, request, response (got 'everything')"
    ) in result.output


def test_up_prints_unknown_field_warnings(tmp_path):
    result = runner.invoke(app, ["up", str(FIXTURES / "website-basic-logger-misplaced.yaml")])
    assert "warning: " in result.output and "spec.logger: unknown field" in result.output
    assert result.exit_code == 2  # gs:// storage cannot run locally


def test_tail_without_a_broker_is_a_sentence():
    from cli_support import free_port

    result = runner.invoke(
        app, ["tail", "t", "--bootstrap", f"127.0.0.1:{free_port()}", "--max", "1", "--timeout", "1"]
    )
    assert result.exit_code == 1
    assert "cannot read 't' from" in result.output and "Traceback" not in result.output
