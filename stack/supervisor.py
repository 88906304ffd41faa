"""The local supervisor behind `infertap up`: start, watch and stop the planned children.

Each child is its own process in its own session (so Ctrl-C reaches only the supervisor,
which then stops children in order: loggers, then model servers, then the broker, so
loggers can flush), with its output in `<log dir>/<name>.log`. On Linux, children also get
SIGTERM if the supervisor itself dies (PR_SET_PDEATHSIG), so nothing is left behind.

What it prints (the table, notes, a child's last log lines) goes through `redact_text`:
sink URLs carry passwords and must not reach a terminal or a CI log.
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

from infertap.logger.sinks.base import redact_text
from infertap.stack.broker import BrokerError, create_topics, is_listening
from infertap.stack.plan import Plan, ProcessSpec

STOP_ORDER = (
    "detector",
    "explain-stream",
    "explainer",
    "transformer",
    "logger",
    "predictor",
    "broker",
)  # loggers flush into a broker that still runs


class ChildFailed(RuntimeError):
    """A child failed to start `max_start_failures` times in a row; the message carries its log tail."""


MAX_START_FAILURES = 5  # starts in a row that die or never get ready before `up` gives up
BACKOFF_S, BACKOFF_MAX_S = 0.5, 30.0  # restart delay: doubles per crash in a row (kubelet: 10 s to 5 min)
STABLE_S = 60.0  # a child up this long before it died starts its backoff afresh


@dataclass
class Child:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes]
    log: Path
    ready_at: float = 0.0  # time.monotonic() when it became ready

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return redact_text("\n".join(text.splitlines()[-lines:]))

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
        max_start_failures: int = MAX_START_FAILURES,
        backoff_s: float = BACKOFF_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ):
        self.plan, self.log_dir = plan, Path(log_dir)
        self.ready_timeout, self.grace = ready_timeout, grace
        self.console = console or _console()
        self.children: list[Child] = []
        self._stop_signal: int | None = None
        self.max_start_failures = max(1, max_start_failures)
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self._crashes: dict[str, int] = {}  # crashes in a row per child name (backoff)
        self.restarts: dict[str, int] = {}  # restarts per child name, for tests and the console

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
                f"stopped {n} child process{'es' if n != 1 else ''} (signal {signal.Signals(self._stop_signal or signal.SIGINT).name})"
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
            child = self._start(spec, None)
            if child is None:
                return
            self.console.print(f"ready {spec.name} pid {child.pid} on {spec.address}", highlight=False)

    def _start(self, spec: ProcessSpec, index: int | None) -> Child | None:
        """Spawn `spec` until it is ready, at most `max_start_failures` times in a row, with
        backoff; the child takes slot `index` of `children` (None: a new slot). None when a
        signal stopped `up` meanwhile; ChildFailed when every try failed."""
        failures = 0
        while True:
            child = self._spawn(spec)
            if index is None:
                self.children.append(child)
                index = len(self.children) - 1
            else:
                self.children[index] = child
            self._write_state()
            why = self._wait_ready(child)
            if why is None:
                child.ready_at = time.monotonic()
                return None if self._stop_signal is not None else child
            failures += 1
            if child.proc.poll() is None:  # not ready in time: it goes before the next try
                child.signal(signal.SIGKILL)
                child.proc.wait()
            if failures >= self.max_start_failures:
                times = "once" if failures == 1 else f"{failures} times in a row"
                raise ChildFailed(f"{spec.name} failed to start {times}; the last time it {why}")
            delay = min(self.backoff_s * 2 ** (failures - 1), self.backoff_max_s)
            first = why.splitlines()[0].rstrip(":;")
            self.console.print(
                f"{spec.name} failed to start ({first}); try {failures + 1} of {self.max_start_failures} in {delay:g}s",
                highlight=False,
            )
            if not self._sleep(delay):
                return None

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless a signal stops `up`; False when it did."""
        deadline = time.monotonic() + seconds
        while self._stop_signal is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.1))
        return False

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

    def _wait_ready(self, child: Child) -> str | None:
        """None once `child` is ready (or a signal stops `up`); else why not, with its log tail."""
        deadline = time.monotonic() + self.ready_timeout
        while self._stop_signal is None:
            if child.proc.poll() is not None:
                return self._death_report(child, named=False)
            if child.is_ready():
                return None
            if time.monotonic() > deadline:
                return (
                    f"(pid {child.pid}) was not ready on {child.spec.address} "
                    f"within {self.ready_timeout:.0f}s; last lines of {child.log}:\n{child.tail()}"
                )
            time.sleep(0.1)
        return None

    def _watch(self) -> None:
        """Restart a child that exits or is killed (as restartPolicy: Always), with backoff;
        the others keep serving meanwhile."""
        while self._stop_signal is None:
            for index, child in enumerate(self.children):
                if self._stop_signal is None and child.proc.poll() is not None:
                    self._restart(index, child)
            time.sleep(0.2)

    def _restart(self, index: int, child: Child) -> None:
        spec = child.spec
        up_for = time.monotonic() - child.ready_at
        crashes = 0 if up_for >= STABLE_S else self._crashes.get(spec.name, 0)
        self._crashes[spec.name] = crashes + 1
        delay = min(self.backoff_s * 2**crashes, self.backoff_max_s)
        code = child.proc.returncode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        self.console.print(
            f"{spec.name} (pid {child.pid}) {how}; restarting it in {delay:g}s (its log: {child.log})", highlight=False
        )
        if not self._sleep(delay):
            return
        new = self._start(spec, index)
        if new is None:
            return
        self.restarts[spec.name] = self.restarts.get(spec.name, 0) + 1
        self.console.print(f"restarted {spec.name} pid {new.pid} on {spec.address}", highlight=False)
        if spec.role == "broker":
            self._broker_restarted(spec)

    def _broker_restarted(self, spec: ProcessSpec) -> None:
        """The embedded broker keeps topics in memory: a new one has none. Say so, recreate
        them; the loggers' spools hold what they could not send meanwhile."""
        names = self._topics_on(spec.port)
        self.console.print(
            f"note: {spec.name} restarted with empty memory storage: records written before are gone; "
            "loggers resend what they spooled while it was down",
            highlight=False,
        )
        if not names:
            return
        try:
            created = create_topics(spec.address, names)
        except (BrokerError, ImportError) as exc:
            self.console.print(f"note: topics not recreated on {spec.address}: {exc}", highlight=False)
            return
        self.console.print(f"note: topics recreated on {spec.address}: {', '.join(created)}", highlight=False)

    def _topics_on(self, port: int) -> list[str]:
        """The topics the other children use on the local broker at `port`, in plan order."""
        from infertap.stack.specs import KafkaURL

        names: list[str] = []
        for child in self.children:
            settings = child.spec.settings
            urls = [str(u) for u in getattr(settings, "log_url", []) or []]
            bootstrap = getattr(settings, "bootstrap", None)
            topic = getattr(settings, "topic", None)
            if isinstance(bootstrap, str) and isinstance(topic, str) and topic:
                urls.append(f"kafka://{bootstrap}/{topic}")
            for url in urls:
                if not url.startswith("kafka://"):
                    continue
                try:
                    kafka = KafkaURL.parse(url)
                except ValueError:
                    continue
                if kafka.topic and any(p == port for _h, p in kafka.hosts) and kafka.topic not in names:
                    names.append(kafka.topic)
        return names

    def _death_report(self, child: Child, named: bool = True) -> str:
        code = child.proc.returncode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        who = f"{child.spec.name} (pid {child.pid})" if named else f"(pid {child.pid})"
        return f"{who} {how}; last lines of {child.log}:\n{child.tail()}"

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
                "executable": c.spec.argv[0],
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
                redact_text(spec.note + (f"\npython {spec.interpreter}" if spec.interpreter else "")),
                child.log.name,
            )
        self.console.print(table)
        self.console.print(f"logs in {self.log_dir}/", highlight=False)
        for note in self.plan.notes:
            self.console.print(f"note: {redact_text(note)}", highlight=False)
        for logger in (c for c in self.children if c.spec.role == "logger"):
            component = getattr(logger.spec.settings, "component", None) or "predictor"
            self.console.print(
                f"send requests to http://{logger.spec.address} ({logger.spec.name} -> {logger.spec.inference_service} {component})",
                highlight=False,
            )
        self.console.print("Ctrl-C stops everything.")
