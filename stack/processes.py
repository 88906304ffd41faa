"""What `infertap up` runs, one process each, and how a child gets its settings.

Shared by the planner (`plan.py`) and the explainer's planning (`explain_plan.py`): the
planner imports `explain_plan`, which imports only this module of the two (no import cycle).
`plan` re-exports these names.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel

from infertap.stack.runner import SETTINGS_ENV

M = TypeVar("M", bound=BaseModel)

Role = Literal["broker", "predictor", "logger", "explainer", "explain-stream", "detector"]


class PlanError(ValueError):
    """The specs load but cannot run locally; the message names file, document and path."""


@dataclass
class ProcessSpec:
    """One child process of `infertap up`."""

    name: str
    role: Role
    argv: list[str]
    host: str
    port: int
    ready_path: str | None = None  # HTTP GET that answers 200 when ready; None: TCP connect
    settings: BaseModel | None = None
    env: dict[str, str] = field(default_factory=dict)
    inference_service: str | None = None
    note: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ready_url(self) -> str | None:
        return f"http://{self.address}{self.ready_path}" if self.ready_path else None

    def settings_as(self, model: type[M]) -> M:
        """`settings`, which the planner made a `model` (TypeError otherwise: a planner bug)."""
        if not isinstance(self.settings, model):
            raise TypeError(f"{self.name}: settings are {type(self.settings).__name__}, not {model.__name__}")
        return self.settings


def resolve_storage(uri: str, yaml_dir: Path, where: str) -> Path:
    """`file://PATH` or PATH -> an existing absolute path; remote schemes -> PlanError."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "file":
        raw = uri[len("file://") :]
    elif scheme and len(scheme) > 1:  # one letter would be a Windows drive
        raise PlanError(
            f"{where}: only local storage runs locally: use file://PATH or a path (got {uri!r}); copy the model here first"
        )
    else:
        raw = uri
    path = Path(raw).expanduser()
    candidates = [path] if path.is_absolute() else [yaml_dir / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    tried = " or ".join(str(c) for c in candidates)
    raise PlanError(f"{where}: no model at {tried} (got {uri!r})")


def runner_command(component: str, settings: BaseModel | dict) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of a child run by sidecar/runner.py: the settings travel as JSON (independent
    of each package's flags) in the environment variable INFERTAP_SETTINGS, never on the command
    line, which every user of the host can read (`ps`); they may carry secrets."""
    payload = settings.model_dump_json() if isinstance(settings, BaseModel) else json.dumps(settings)
    return [sys.executable, "-m", "infertap.stack.runner", component], {SETTINGS_ENV: payload}
