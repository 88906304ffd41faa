"""The local supervisor behind `infertap up`: start, watch and stop the planned children.

Each child is its own process in its own session (so Ctrl-C reaches only the supervisor,
which then stops children in order: loggers, then model servers, then the broker, so
loggers can flush), with its output in `<log dir>/<name>.log`. On Linux, children also get
SIGTERM if the supervisor itself dies (PR_SET_PDEATHSIG), so nothing is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from infertap.stack.broker import is_listening
from infertap.stack.plan import Plan, ProcessSpec

STOP_ORDER = (
    "detector",
    "explain-stream",
    "explainer",
    "logger",
    "predictor",
    "broker",
)  # loggers flush into a broker that still runs


class ChildFailed(RuntimeError):
    """A child exited or never became ready; the message carries its log tail."""


@dataclass
class Child:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def is_ready(self) -> bool:
        url = self.spec.ready_url
        if url is None:
            return is_listening(self.spec.host, self.spec.port)
        try:
            with urllib.request.urlopen(url, timeout=1.0) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # the child leads its own session: reach its children too
        except (ProcessLookupError, PermissionError):
            pass


def _console() -> Console:
    """stdout; 160 columns when piped (rich's 80 would fold the table's URLs)."""
    console = Console(markup=False, highlight=False)  # names and paths are data, not markup
    return console if console.is_terminal else Console(width=160, markup=False, highlight=False)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Supervisor:
    """Runs a Plan: `run()` returns the exit code of `infertap up`."""

    def __init__(
        self,
        plan: Plan,
        log_dir: Path,
        ready_timeout: float = 120.0,
        grace: float = 20.0,
        console: Console | None = None,
    ):
        self.plan, self.log_dir = plan, Path(log_dir)
        self.ready_timeout, self.grace = ready_timeout, grace
        self.console = console or _console()
        self.children: list[Child] = []
        self._stop_signal: int | None = None

    # --- public --------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, wait for readiness, watch until a signal or a child's death."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                self._start_all()
                self._print_table()
                self._watch()
            except ChildFailed as exc:
                # plain text: log tails must come through unfolded and never read as rich markup
                print(f"error: {exc}", file=sys.stderr, flush=True)
                return 1
            finally:
                self.stop_all()
            n = len(self.children)
            self.console.print(
                f"stopped {n} child process{'es' if n != 1 else ''} (signal {signal.Signals(self._stop_signal).name})"
            )
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop_all(self) -> None:
        """SIGTERM by tier (loggers, model servers, broker), SIGKILL after the grace period."""
        for role in STOP_ORDER:
            tier = [c for c in self.children if c.spec.role == role and c.proc.poll() is None]
            for child in tier:
                child.signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            for child in tier:
                try:
                    child.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.console.print(
                        f"{child.spec.name} (pid {child.pid}) ignored SIGTERM for {self.grace:.0f}s; killing it"
                    )
                    child.signal(signal.SIGKILL)
                    child.proc.wait()

    # --- steps ---------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop_signal = signum

    def _start_all(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.plan.processes:
            if self._stop_signal is not None:
                return
            child = self._spawn(spec)
            self.children.append(child)
            self._write_state()
            self._wait_ready(child)
            self.console.print(f"ready {spec.name} pid {child.pid} on {spec.address}", highlight=False)

    def _spawn(self, spec: ProcessSpec) -> Child:
        log = self.log_dir / (spec.name.replace("/", "-").replace(":", "-") + ".log")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                spec.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        return Child(spec, proc, log)

    def _wait_ready(self, child: Child) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while self._stop_signal is None:
            if child.proc.poll() is not None:
                raise ChildFailed(self._death_report(child))
            if child.is_ready():
                return
            if time.monotonic() > deadline:
                raise ChildFailed(
                    f"{child.spec.name} (pid {child.pid}) was not ready on {child.spec.address} "
                    f"within {self.ready_timeout:.0f}s; last lines of {child.log}:\n{child.tail()}"
                )
            time.sleep(0.1)

    def _watch(self) -> None:
        while self._stop_signal is None:
            for child in self.children:
                if child.proc.poll() is not None:
                    raise ChildFailed(self._death_report(child))
            time.sleep(0.2)

    def _death_report(self, child: Child) -> str:
        code = child.proc.returncode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return f"{child.spec.name} (pid {child.pid}) {how}; last lines of {child.log}:\n{child.tail()}"

    def _write_state(self) -> None:
        """`processes.json` in the log folder: what runs where, for scripts and tests."""
        state = [
            {
                "name": c.spec.name,
                "role": c.spec.role,
                "pid": c.pid,
                "host": c.spec.host,
                "port": c.spec.port,
                "log": str(c.log),
            }
            for c in self.children
        ]
        (self.log_dir / "processes.json").write_text(json.dumps(state, indent=2))

    def _print_table(self) -> None:
        if not self.children or self._stop_signal is not None:
            return
        table = Table(title="infertap up", title_justify="left")
        for column in ("process", "listens on", "pid", "what", "log"):
            table.add_column(column, overflow="fold")
        for child in self.children:
            spec = child.spec
            table.add_row(
                spec.name,
                f"http://{spec.address}" if spec.role != "broker" else spec.address,
                str(child.pid),
                spec.note,
                child.log.name,
            )
        self.console.print(table)
        self.console.print(f"logs in {self.log_dir}/", highlight=False)
        for note in self.plan.notes:
            self.console.print(f"note: {note}", highlight=False)
        for logger in (c for c in self.children if c.spec.role == "logger"):
            self.console.print(
                f"send requests to http://{logger.spec.address} ({logger.spec.name} -> {logger.spec.inference_service} predictor)",
                highlight=False,
            )
        self.console.print("Ctrl-C stops everything.")
