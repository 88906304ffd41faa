"""infertap.stack.runner: settings JSON from $INFERTAP_SETTINGS (what `infertap up` uses) or a second argument."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import infertap.stack.runner as runner
from infertap.stack.plan import runner_command
from infertap.stack.runner import SETTINGS_ENV, read_payload

ROOT = Path(__file__).resolve().parents[2]


def test_the_environment_form_reads_and_removes_the_variable():
    environ = {SETTINGS_ENV: '{"port": 1}', "HOME": "/h"}
    assert read_payload(["logger"], environ) == ("logger", '{"port": 1}')
    assert environ == {"HOME": "/h"}


def test_the_two_argument_form_still_works_and_drops_a_stale_variable():
    environ = {SETTINGS_ENV: '{"stale": true}'}
    assert read_payload(["serving", '{"http_port": 8080}'], environ) == ("serving", '{"http_port": 8080}')
    assert SETTINGS_ENV not in environ


@pytest.mark.parametrize("args", [[], ["serving"]])
def test_no_settings_anywhere_is_a_usage_sentence_naming_the_variable(args):
    with pytest.raises(SystemExit) as exc:
        read_payload(args, {SETTINGS_ENV: ""} if args else {})
    message = str(exc.value.code)
    assert SETTINGS_ENV in message and message.count("\n") == 0
    assert "usage: INFERTAP_SETTINGS=SETTINGS_JSON python -m infertap.stack.runner COMPONENT" in message


def test_main_runs_the_component_without_the_variable_in_its_environment(monkeypatch):
    seen = []

    def fake(component, payload):
        seen.append((component, payload, SETTINGS_ENV in os.environ))

    monkeypatch.setattr(runner, "run_component", fake)
    monkeypatch.setenv(SETTINGS_ENV, '{"stream": {}, "explainer": {}}')
    runner.main(["explain-stream"])
    assert seen == [("explain-stream", '{"stream": {}, "explainer": {}}', False)]


def test_runner_command_keeps_the_settings_off_argv():
    argv, env = runner_command("detector", {"kafka_config": {"sasl.password": "s3cret"}})
    assert argv == [sys.executable, "-m", "infertap.stack.runner", "detector"]
    assert env == {SETTINGS_ENV: '{"kafka_config": {"sasl.password": "s3cret"}}'}


def _run(args: list[str], settings: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != SETTINGS_ENV}
    if settings is not None:
        env[SETTINGS_ENV] = settings
    return subprocess.run(
        [sys.executable, "-m", "infertap.stack.runner", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def test_a_child_reads_its_settings_from_the_environment():
    # an unknown component fails after the settings were read: proof the env form got that far
    done = _run(["nothing"], "{}")
    assert done.returncode == 1 and "unknown component 'nothing'" in done.stderr
    done = _run(["nothing"], None)
    assert done.returncode == 1 and "INFERTAP_SETTINGS is not set" in done.stderr
