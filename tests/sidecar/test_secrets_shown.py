"""Issue 19, finding 7: sink passwords and URL userinfo never reach the sidecar's output."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tap_fixtures import free_port, port_of, upstream  # noqa: F401

from infertap.logger.sinks.base import redact_text, shown_url

SECRETS = ("S3cr3tPa55", "pa55w0rd", "user:")


@pytest.mark.parametrize(
    "url,shown",
    [
        ("kafka://h:9092/t?sasl_password=S3cr3tPa55&acks=1", "kafka://h:9092/t?sasl_password=***&acks=1"),
        ("kafka://h:9092/t?sasl%5Fpassword=S3cr3tPa55", "kafka://h:9092/t?sasl%5Fpassword=***"),
        ("kafka://h:9092/t?SASL_PASSWORD=S3cr3tPa55", "kafka://h:9092/t?SASL_PASSWORD=***"),
        ("http://user:pa55w0rd@h:80/events", "http://***@h:80/events"),
        ("https://user:pa/55w0rd@h/events?api_key=S3cr3tPa55#x", "https://***@h/events?api_key=***#x"),
        (
            "http://h/events?access_token=S3cr3tPa55&client_secret=S3cr3tPa55",
            "http://h/events?access_token=***&client_secret=***",
        ),
        ("file:///var/log/events.jsonl", "file:///var/log/events.jsonl"),
    ],
)
def test_shown_url_stars_out_every_secret(url: str, shown: str) -> None:
    assert shown_url(url) == shown
    assert redact_text(f"sink {url!r} failed") == f"sink {shown!r} failed"


def sidecar_args(port: int, component_port: int, spool: Path, *urls: str) -> list[str]:
    args = [sys.executable, "-m", "infertap.sidecar", "--port", str(port), "--component-port", str(component_port)]
    for url in urls:
        args += ["--log-url", url]
    return args + ["--spool-dir", str(spool), "--http-retries", "0", "--retry-backoff", "0.2"]


def test_the_startup_line_and_sink_errors_show_no_secret(upstream, tmp_path: Path) -> None:
    kafka = (
        f"kafka://127.0.0.1:{free_port()}/t?security_protocol=SASL_PLAINTEXT&sasl_mechanism=PLAIN"
        "&sasl_username=u&sasl_password=S3cr3tPa55"
    )
    http = f"http://user:pa55w0rd@127.0.0.1:{free_port()}/events"  # nothing listens: the sink fails and says so
    port, log = free_port(), tmp_path / "sidecar.log"
    with open(log, "wb") as out:
        child = subprocess.Popen(
            sidecar_args(port, port_of(upstream), tmp_path / "spool", kafka, http), stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while "logger sidecar on" not in log.read_text():
            assert child.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        for _ in range(3):
            httpx.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", content=b"{}", timeout=10)
        time.sleep(3)  # the sinks fail and log it
    finally:
        child.kill()  # what it had to say is said; a clean stop would wait for the dead Kafka sink
        child.wait(30)
    text = log.read_text()
    assert "sasl_password=***" in text and "http://***@127.0.0.1" in text  # the startup line, redacted
    for secret in SECRETS:
        assert secret not in text, text


def test_a_bad_sink_url_is_refused_without_its_secret(tmp_path: Path) -> None:
    for url in ("http://user:pa55w0rd@/events", "kafka://h:1/t?sasl_password=S3cr3tPa55&acks=5"):
        done = subprocess.run(sidecar_args(0, 9, tmp_path, url), capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        for secret in SECRETS:
            assert secret not in done.stderr + done.stdout, done.stderr
