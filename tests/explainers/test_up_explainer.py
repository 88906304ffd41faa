"""`infertap up` with spec.explainer: predictor, logger and explainer; `:explain` on the sidecar reaches the explainer."""

from __future__ import annotations

import json
import signal
import sys
import time

import httpx

from tests.conftest import free_port
from tests.explainers.test_cli_and_fit import write_yaml
from tests.explainers.test_skip_logging import events, wait_events


def test_up_runs_the_explainer_behind_the_logger(spawn, tmp_path, models_dir):
    yaml = write_yaml(tmp_path, models_dir, str(models_dir / "sklearn-iris" / "reference.npy"), "PermutationShap")
    logger_port = free_port()
    child = spawn(
        [
            sys.executable,
            "-m",
            "infertap",
            "up",
            str(yaml),
            "--log-dir",
            str(tmp_path / "logs"),
            "--predictor-port",
            "0",
            "--logger-port",
            str(logger_port),
            "--ready-timeout",
            "300",
        ],
        name="infertap-up",
    )
    deadline = time.monotonic() + 400
    state = []
    while time.monotonic() < deadline:
        assert child.proc.poll() is None, child.tail(80)
        state_file = tmp_path / "logs" / "processes.json"
        if state_file.exists() and "Ctrl-C stops everything" in child.log.read_text():
            state = json.loads(state_file.read_text())
            break
        time.sleep(0.5)
    assert {s["role"] for s in state} == {"predictor", "logger", "explainer"}, child.tail(80)
    sidecar = f"http://127.0.0.1:{logger_port}"
    r = httpx.post(
        f"{sidecar}/v1/models/sklearn-iris:explain",
        timeout=120,
        json={"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["explainer"] == "PermutationShap" and len(body["explanations"]) == 2
    predict = {"instances": [[6.1, 2.8, 4.7, 1.2]]}
    assert httpx.post(f"{sidecar}/v1/models/sklearn-iris:predict", json=predict, timeout=30).status_code == 200
    sink = tmp_path / "events.jsonl"
    wait_events(sink, 2, timeout=30)
    time.sleep(1.0)  # anything logged for the explain would have arrived before the predict's events
    logged = wait_events(sink, 2, timeout=1)
    # Only the predict is logged: neither the :explain call (routed to the explainer, as KServe's
    # ingress does) nor the explainer's own predictor calls back through the same sidecar.
    assert len(logged) == 2 and {e.get_id() for e in logged} == {logged[0].get_id()}, [e.get_data() for e in logged]
    assert json.loads(logged[0].get_data()) == predict
    child.proc.send_signal(signal.SIGINT)
    child.proc.wait(60)
    assert child.proc.returncode == 0, child.tail(40)
    for s in state:  # every child stopped, the explainer included
        try:
            import os

            os.kill(s["pid"], 0)
            raise AssertionError(f"{s['name']} still runs")
        except ProcessLookupError:
            pass
    assert len(events(sink)) == 2
