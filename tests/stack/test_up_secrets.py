"""Issue 19, finding 7: `infertap up` never shows a sink's password or URL userinfo, neither
on its console (the table, notes) nor in the per-component log files under --log-dir."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest
from cli_support import free_port

pytestmark = pytest.mark.timeout(300)

SECRETS = ("S3cr3tPa55", "pa55w0rd", "user:")

ISVC = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
spec:
  predictor:
    logger:
      mode: all
      url: "{url}"
    model:
      modelFormat:
        name: sklearn
      storageUri: file://{model}
"""


def test_up_shows_no_sink_secret(spawn, tmp_path: Path, models_dir: Path) -> None:
    kafka = (
        f"kafka://127.0.0.1:{free_port()}/iris-events?security_protocol=SASL_PLAINTEXT&sasl_mechanism=PLAIN"
        "&sasl_username=u&sasl%5Fpassword=S3cr3tPa55"  # a percent-encoded key: still a password
    )
    http = f"http://user:pa55w0rd@127.0.0.1:{free_port()}/events"
    model = models_dir / "sklearn-iris"
    spec = tmp_path / "isvc.yaml"
    spec.write_text(
        ISVC.format(name="iris-kafka", url=kafka, model=model)
        + "---\n"
        + ISVC.format(name="iris-http", url=http, model=model)
    )
    logs = tmp_path / "logs"
    up = spawn(
        [sys.executable, "-m", "infertap", "up", str(spec), "--log-dir", str(logs), "--no-broker"]
        + ["--predictor-port", "0", "--logger-port", "0"],
        name="infertap-up",
    )
    deadline = time.monotonic() + 240
    while "Ctrl-C stops everything" not in up.log.read_text():
        assert up.proc.poll() is None and time.monotonic() < deadline, up.tail(80)
        time.sleep(0.2)
    console = up.log.read_text()
    assert "sasl%5Fpassword=***" in console and "http://***@127.0.0.1" in console  # the table names the sinks
    for line in console.splitlines():
        if line.startswith("send requests to http://"):
            httpx.post(line.split()[3] + "/v1/models/x:predict", json={"instances": [[1, 2, 3, 4]]}, timeout=30)
    time.sleep(3)  # the sinks fail and their loggers say so
    os.kill(up.proc.pid, signal.SIGINT)
    up.proc.wait(120)
    outputs = {"console": up.log.read_text()}
    outputs.update({f.name: f.read_text(errors="replace") for f in logs.glob("*.log")})
    outputs["processes.json"] = (logs / "processes.json").read_text()
    assert any("logger sidecar on" in text for text in outputs.values())  # the loggers' startup lines are there
    for name, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in {name}:\n{text}"
