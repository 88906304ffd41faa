"""Helpers for the dashboard tests: child processes, a real Prometheus, and the panels' queries.

A module (not conftest) so test modules can import it by name.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
GRAFANA = DASHBOARDS / "grafana"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
SCRAPE_INTERVAL_S = 1
# What Grafana would put for the built-in variables with a 1 s scrape interval and a short range
# ($__rate_interval = max(4 x scrape interval, step + scrape interval), padded for slow scrapes).
BUILTINS = {"__rate_interval": "15s", "__interval": "2s", "__range": "10m"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process in its own session, its output in a log file; `stop()` ends the group."""

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

    def wait_http(self, url: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.args[:4]} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{url} not ready after {timeout}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass


# --- Prometheus ----------------------------------------------------------------------------


@dataclass
class Target:
    job: str
    address: str
    path: str = "/metrics"


def prometheus_config(targets: list[Target], rule_files: list[Path] = ()) -> dict:
    """A scrape config like dashboards/prometheus/prometheus.yml, for the ports a test chose."""
    return {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": t.job,
                "metrics_path": t.path,
                "scrape_timeout": "900ms",
                "static_configs": [{"targets": [t.address]}],
            }
            for t in targets
        ],
    }


def start_prometheus(folder: Path, targets: list[Target], rule_files: list[Path] = ()) -> tuple[Proc, str]:
    """The real Prometheus server (Debian's package) on a free port; returns (process, base URL)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(targets, rule_files)))
    port = free_port()
    proc = Proc(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        folder / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"
    proc.wait_http(f"{url}/-/ready", timeout=60)
    return proc, url


def query_range(url: str, expr: str, start: float, end: float, step: float = 2.0) -> list[dict]:
    r = httpx.get(
        f"{url}/api/v1/query_range", params={"query": expr, "start": start, "end": end, "step": step}, timeout=30
    )
    body = r.json()
    assert r.status_code == 200 and body.get("status") == "success", f"{expr}: {r.status_code} {body}"
    return body["data"]["result"]


def query(url: str, expr: str) -> list[dict]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=30)
    body = r.json()
    assert r.status_code == 200 and body.get("status") == "success", f"{expr}: {r.status_code} {body}"
    return body["data"]["result"]


def finite_values(result: list[dict]) -> list[float]:
    """Every finite sample of an instant or range result (NaN: a quantile of no traffic)."""
    values = []
    for series in result:
        points = series.get("values") or [series["value"]]
        values += [float(v) for _, v in points if math.isfinite(float(v))]
    return values


def wait_for(url: str, expr: str, timeout: float = 90.0) -> list[dict]:
    """Poll an instant query until it returns a finite sample."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = query(url, expr)
        if finite_values(result):
            return result
        time.sleep(1)
    raise AssertionError(f"no data for {expr} after {timeout}s")


# --- dashboards ----------------------------------------------------------------------------


@dataclass
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.panel}:{self.ref}"


def dashboard_files() -> list[Path]:
    return sorted(GRAFANA.glob("*.json"))


def panels(board: dict):
    """Every panel, rows' children included (collapsed rows keep theirs under `panels`)."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries() -> list[PanelQuery]:
    out = []
    for path in dashboard_files():
        board = json.loads(path.read_text())
        for panel in panels(board):
            for target in panel.get("targets", []):
                out.append(
                    PanelQuery(path.stem, panel["title"], target["refId"], target["expr"], bool(target.get("instant")))
                )
    return out


_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana variables ($name, ${name}, ${name:format}) as Grafana would for "All"."""

    def repl(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in variables:
            return variables[name]
        if name in BUILTINS:
            return BUILTINS[name]
        raise KeyError(f"unknown variable ${name} in {expr}")

    return _VAR.sub(repl, expr)
