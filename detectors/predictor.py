"""The detector in a process of its own, so a worker's Kafka and decoding work never waits on it.

A TabularDrift predict holds the GIL for most of its time and hands it back and forth many
times a window (each numpy call), so a thread that decodes the next window beside it slows
it down instead of overlapping it (measured: predict 2.5-10x slower beside a thread that
runs Python all the time, at GIL switch intervals of 0.05-5 ms).
In a child process the predict has a core of its own while the worker's reader thread polls
and decodes. `RemoteEvaluator` has the `Evaluator` interface the worker uses (`evaluate`,
`save_state`, `kind`); the child builds the backend itself from the settings (fresh
imports: CUDA detectors work in it), restores online state as `build_backend` does, and
feeds online detectors row by row as the in-process `Evaluator` does.

The child ignores SIGINT/SIGTERM (a process-group signal must not end it before its parent
has saved state and committed) and ends when its parent closes the socket or dies.

    python -m infertap.detectors.predictor FD    (started by RemoteEvaluator; settings come over FD)
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from infertap.detectors.result import DetectionResult
from infertap.detectors.settings import WorkerSettings

log = logging.getLogger(__name__)
ROOT = Path(
    __file__
).parent.parent.parent  # the folder that holds infertap/ (not resolved: infertap/detectors is a link)


class PredictorError(RuntimeError):
    """The detector process could not build its detector, failed a call, or died."""


class RemoteEvaluator:
    """An `Evaluator` in a child process, used from one thread; up to 1 + `lookahead` windows in flight."""

    def __init__(self, settings: WorkerSettings):
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "infertap.detectors.predictor", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._in_flight = 0
        self._conn.send(settings.model_dump_json())
        _, self.kind, self.online = self._receive()  # the child's ("ready", kind, online) once built

    @property
    def lookahead(self) -> int:
        """Windows that may be with the detector while the worker publishes the one before: two,
        so one is always queued behind the one it works on; none for online detectors, whose
        state is saved between windows."""
        return 0 if self.online else 2

    def submit(self, x: np.ndarray) -> None:
        """Send a window to the detector process; `collect` returns its result (in order)."""
        self._send(("evaluate", x))
        self._in_flight += 1

    def collect(self) -> tuple[DetectionResult, float]:
        """(result, seconds spent in the backend) of the oldest window submitted."""
        _, result, seconds = self._receive()
        self._in_flight -= 1
        return result, seconds

    def evaluate(self, x: np.ndarray) -> tuple[DetectionResult, float]:
        """(result, seconds spent in the backend), as `Evaluator.evaluate`."""
        self.submit(x)
        return self.collect()

    def save_state(self) -> None:
        """An online detector's state to its state_dir, as `Evaluator.save_state` (nothing may be in flight)."""
        if not self.online:
            return
        if self._in_flight:
            raise PredictorError(f"save_state with {self._in_flight} window(s) in flight")
        self._send(("save",))
        self._receive()

    def close(self, timeout: float = 10.0) -> None:
        """Close the socket (the child exits on it) and wait for the child."""
        self._conn.close()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _send(self, request: tuple) -> None:
        try:
            self._conn.send(request)
        except OSError as exc:
            raise self._ended(exc) from None

    def _receive(self) -> tuple:
        try:
            reply = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._ended(exc) from None
        if reply[0] == "error":
            raise PredictorError(reply[1])
        return reply

    def _ended(self, exc: BaseException) -> PredictorError:
        try:
            status = self._proc.wait(1.0)
        except subprocess.TimeoutExpired:
            status = None
        return PredictorError(f"the detector process ended (exit status {status}): {type(exc).__name__}")


def serve(conn: Connection) -> None:
    """The child's loop: build the detector, then answer calls until the parent goes."""
    from infertap.detectors.evaluator import Evaluator, build_backend

    settings = WorkerSettings.model_validate_json(conn.recv())
    try:
        evaluator = Evaluator(build_backend(settings), settings.state_dir)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a sentence
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    gc.freeze()  # the detector's long-lived objects: see Worker.run
    conn.send(("ready", evaluator.kind, evaluator.backend.online))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent closed the socket or died
        reply: tuple[Any, ...]
        try:
            if request[0] == "evaluate":
                result, seconds = evaluator.evaluate(request[1])
                reply = ("result", result, seconds)
            else:
                evaluator.save_state()
                reply = ("saved",)
        except Exception as exc:  # noqa: BLE001 - the parent raises it
            log.exception("detector call %s failed", request[0])
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except OSError:
            return


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(Connection(int(sys.argv[1])))


if __name__ == "__main__":
    main()
