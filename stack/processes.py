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

from pydantic import BaseModel

from infertap.stack.runner import SETTINGS_ENV
from infertap.stack.specs.paths import is_local, local_candidates, spec_path

M = TypeVar("M", bound=BaseModel)

Role = Literal["broker", "predictor", "transformer", "logger", "explainer", "explain-stream", "detector"]


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
    interpreter: str = ""  # the Python it runs with and why (`up`'s table shows it); "" for up's own, unsaid

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
    """`file://PATH` or PATH -> an existing absolute path (looked up as `specs.paths.spec_path` says,
    the rule `infertap render` follows too); remote schemes -> PlanError."""
    if not is_local(uri):
        raise PlanError(
            f"{where}: only local storage runs locally: use file://PATH or a path (got {uri!r}); copy the model here first"
        )
    found = spec_path(uri, yaml_dir)
    if found.exists():
        return found.resolve()
    tried = " or ".join(str(c) for c in local_candidates(uri, yaml_dir))
    raise PlanError(f"{where}: no model at {tried} (got {uri!r})")


def runner_command(
    component: str, settings: BaseModel | dict, python: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of a child run by stack/runner.py with `python` (default: this interpreter; a
    TensorFlow detector's worker gets another, `stack/interpreter.py`): the settings travel as
    JSON (independent of each package's flags) in the environment variable INFERTAP_SETTINGS,
    never on the command line, which every user of the host can read (`ps`); they may carry secrets."""
    payload = settings.model_dump_json() if isinstance(settings, BaseModel) else json.dumps(settings)
    return [python or sys.executable, "-m", "infertap.stack.runner", component], {SETTINGS_ENV: payload}
