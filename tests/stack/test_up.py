"""`infertap up` for real: child processes, the embedded broker, events read back, clean stops."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from cli_support import free_port
from cloudevents.core.bindings import kafka as ce_kafka
from kafka import KafkaConsumer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def spec_file(folder: Path, model: Path, logger_url: str | None) -> Path:
    """examples/sklearn-iris-logger.yaml with this test's model path and sink."""
    text = (ROOT / "examples" / "sklearn-iris-logger.yaml").read_text()
    text = text.replace("file://./models/sklearn-iris", f"file://{model}")
    if logger_url is None:
        text = text[: text.index("    logger:")] + text[text.index("    model:") :]
    else:
        text = text.replace("kafka://localhost:9092/sklearn-iris-events", logger_url)
    path = folder / "isvc.yaml"
    path.write_text(text)
    return path


def start_up(spawn, tmp_path: Path, spec: Path, *extra: str):
    ports = {"predictor": free_port(), "logger": free_port()}
    child = spawn(
        [
            sys.executable,
            "-m",
            "infertap",
            "up",
            str(spec),
            "--log-dir",
            str(tmp_path / "logs"),
            "--predictor-port",
            str(ports["predictor"]),
            "--logger-port",
            str(ports["logger"]),
            *extra,
        ],
        name="infertap-up",
    )
    return child, ports


def wait_for_state(child, tmp_path: Path, count: int, timeout: float = 120.0) -> list[dict]:
    """processes.json once `up` has started `count` children and printed its table."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise AssertionError(f"up exited {child.proc.returncode}:\n{child.tail(80)}")
        state_file = tmp_path / "logs" / "processes.json"
        if state_file.exists() and "Ctrl-C stops everything" in child.log.read_text():
            state = json.loads(state_file.read_text())
            if len(state) == count:
                return state
        time.sleep(0.2)
    raise AssertionError(f"up not ready after {timeout}s:\n{child.tail(80)}")


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); its /proc status says Z
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def read_events(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, consumer_timeout_ms=1000
    )
    events, deadline = [], time.monotonic() + timeout
    try:
        while len(events) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    headers = dict(record.headers)
                    events.append(ce_kafka.from_binary_event(ce_kafka.KafkaMessage(headers, record.key, record.value)))
    finally:
        consumer.close()
    return events


def test_up_starts_broker_predictor_and_logger_and_stops_them_all(spawn, tmp_path, models_dir):
    broker_port, topic = free_port(), f"up-{uuid.uuid4().hex[:8]}"
    spec = spec_file(tmp_path, models_dir / "sklearn-iris", f"kafka://127.0.0.1:{broker_port}/{topic}")
    up, ports = start_up(spawn, tmp_path, spec)
    state = wait_for_state(up, tmp_path, 3)
    assert [(p["role"], p["port"]) for p in state] == [
        ("broker", broker_port),
        ("predictor", ports["predictor"]),
        ("logger", ports["logger"]),
    ]
    output = up.log.read_text()
    assert f"http://127.0.0.1:{ports['logger']}" in output and "Ctrl-C stops everything" in output

    ids = [f"up-test-{i}" for i in range(3)]
    for ce_id in ids:
        reply = httpx.post(
            f"http://127.0.0.1:{ports['logger']}/v1/models/sklearn-iris:predict",
            json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
            headers={"ce-id": ce_id, "x-request-id": ce_id},
            timeout=30,
        )
        assert reply.status_code == 200 and reply.json()["predictions"] == [1]

    events = read_events(f"127.0.0.1:{broker_port}", topic, 6)
    assert len(events) == 6
    seen = {(e.get_id(), e.get_type()) for e in events}
    for ce_id in ids:
        assert (ce_id, "org.kubeflow.serving.inference.request") in seen
        assert (ce_id, "org.kubeflow.serving.inference.response") in seen
    attrs = events[0].get_attributes()
    assert (attrs["inferenceservicename"], attrs["namespace"], attrs["component"]) == (
        "sklearn-iris",
        "default",
        "predictor",
    )
    assert json.loads(attrs["annotations"]) == {"infertap.dev/team": "demo"}

    os.kill(up.proc.pid, signal.SIGINT)
    assert up.proc.wait(60) == 0, up.tail(60)
    assert all(pid_gone(p["pid"]) for p in state), state
    assert "stopped 3 child processes" in up.log.read_text()


def test_a_child_that_dies_is_restarted(spawn, tmp_path, models_dir):
    """Issue 14: as restartPolicy: Always (tests/stack/test_up_supervisor.py kills more)."""
    spec = spec_file(tmp_path, models_dir / "sklearn-iris", None)
    up, ports = start_up(spawn, tmp_path, spec, "--no-broker")
    [predictor] = wait_for_state(up, tmp_path, 1)
    os.kill(predictor["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "restarted sklearn-iris/predictor" not in up.log.read_text() and time.monotonic() < deadline:
        assert up.proc.poll() is None, up.tail(60)
        time.sleep(0.2)
    output = up.log.read_text()
    assert f"sklearn-iris/predictor (pid {predictor['pid']}) was killed by SIGKILL; restarting it in" in output
    [again] = json.loads((tmp_path / "logs" / "processes.json").read_text())
    assert again["pid"] != predictor["pid"] and pid_gone(predictor["pid"])
    reply = httpx.post(
        f"http://127.0.0.1:{ports['predictor']}/v1/models/sklearn-iris:predict",
        json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
    )
    assert reply.status_code == 200


def test_a_corrupt_model_fails_up_with_the_servers_sentence(spawn, tmp_path):
    model = tmp_path / "broken" / "model.joblib"
    model.parent.mkdir()
    model.write_bytes(b"this is not a joblib file")
    up, _ = start_up(spawn, tmp_path, spec_file(tmp_path, model, None), "--no-broker", "--max-start-failures", "2")
    assert up.proc.wait(120) == 1, up.tail()
    output = up.log.read_text()
    assert "sklearn-iris/predictor failed to start (" in output and "try 2 of 2" in output
    assert "sklearn-iris/predictor failed to start 2 times in a row; the last time it" in output
    assert "exited with code" in output
    assert "model.joblib" in output  # the server's own error, from the log tail
    state = json.loads((tmp_path / "logs" / "processes.json").read_text())
    assert all(pid_gone(p["pid"]) for p in state)
