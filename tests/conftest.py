"""Shared fixtures: a real embedded broker, free ports, and child processes that always stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from infertap.stack.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"

FAST_LANE_ENV = "INFERTAP_FAST_LANE"
"""Set by `make test-fast`: any attempt to start a process fails the test that made it."""


def pytest_configure(config: pytest.Config) -> None:
    """In the fast lane, refuse every way a test could start a process, so the `fast` mark stays true."""
    if os.environ.get(FAST_LANE_ENV) != "1":
        return
    import multiprocessing.util

    # numpy 1.26's numpy.testing runs `lscpu` once when first imported (check_support_sve), and SciPy and
    # scikit-learn import it: imported here, before the guard, so that start is nobody's test's
    import numpy.testing  # noqa: F401

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(
            "this test started a process, but it is marked `fast` (make test-fast runs only tests that start "
            "none): drop the mark"
        )

    subprocess.Popen._execute_child = refuse  # type: ignore[attr-defined,method-assign]
    os.fork = refuse  # type: ignore[assignment]
    os.posix_spawn = refuse  # type: ignore[assignment]
    os.posix_spawnp = refuse  # type: ignore[assignment]
    multiprocessing.util.spawnv_passfds = refuse  # type: ignore[assignment]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    """A fresh name (topic, group id): Tansu groups closed mid-join can stay unjoinable."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The example models built by `make models` (python -m examples.build_models --out models)."""
    if not (MODELS / ".built").exists():
        subprocess.run([sys.executable, "-m", "examples.build_models", "--out", str(MODELS)], cwd=ROOT, check=True)
        (MODELS / ".built").touch()
    return MODELS


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One real Kafka-protocol broker (Tansu, memory storage) for the session."""
    b = EmbeddedBroker(port=free_port(), log_path=tmp_path_factory.mktemp("broker") / "broker.log")
    with b:
        yield b


@dataclass(frozen=True)
class SecureBroker:
    """The embedded broker behind a SASL_SSL front (tests/kafka_front.py), and how to reach it."""

    bootstrap: str
    kafka_config: dict[str, str]  # librdkafka properties: what `-X` takes


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A real broker only reachable over TLS with SASL/PLAIN (Tansu itself can do neither)."""
    from tests.kafka_front import fronted_broker, make_certs, server_context

    certs = make_certs(tmp_path_factory.mktemp("certs"))
    with fronted_broker(
        tmp_path_factory.mktemp("secure-broker"),
        free_port(),
        ssl_context=server_context(certs),
        users={"infertap": "s3cret-pa55"},
    ) as front:
        yield SecureBroker(
            front.bootstrap,
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "PLAIN",
                "sasl.username": "infertap",
                "sasl.password": "s3cret-pa55",
                "ssl.ca.location": str(certs.ca),
            },
        )


class Child:
    """A child process started by a test, with its log kept for failure messages."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None):
        self.args, self.log = args, log
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                args,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def wait_http(self, url: str, timeout: float = 60.0, status: int = 200) -> None:
        """Wait until GET url answers `status`; fail with the log tail if the child dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.args} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(url, timeout=1.0).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{url} not ready after {timeout}s:\n{self.tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def running(args: list[str], log: Path, ready_url: str, timeout: float) -> Iterator[Child]:
    """A Child of `args` (log in `log`), yielded once GET ready_url answers 200 within `timeout` s;
    stopped on the way out, also when the wait failed."""
    child = Child(args, log)
    try:
        child.wait_http(ready_url, timeout=timeout)
        yield child
    finally:
        child.stop()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Start child processes (`spawn([...])`); every one is stopped at teardown."""
    children: list[Child] = []

    def start(args: list[str], env: dict[str, str] | None = None, name: str | None = None) -> Child:
        log = tmp_path / f"{name or Path(args[0]).name}-{len(children)}.log"
        child = Child(args, log, env)
        children.append(child)
        return child

    yield start
    for child in reversed(children):
        child.stop()
