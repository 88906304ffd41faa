"""Which Python runs a Detector's worker under `infertap up` (and `infertap fit` of it).

The TensorFlow detectors (`registry.TENSORFLOW`: OutlierAE, OutlierVAE, AdversarialAE,
ModelDistillation) need TensorFlow, which the main environment never has: its torch and
numpy pins fight it (docs/detector-backends.md), so `make venv-tf` builds `.venv-tf` beside
it. The planner picks the interpreter of each Detector once, first match wins:

1. the Detector's `spec.runtime.python` (any detector): a path, relative to the YAML's folder
   and then to the current one, or a command on PATH;
2. for a TensorFlow detector, `$INFERTAP_TF_PYTHON` (a path, relative to the current folder,
   or a command);
3. for a TensorFlow detector, the Python running infertap, when it has TensorFlow;
4. for a TensorFlow detector, `.venv-tf/bin/python` in the current folder or one above it,
   then in the YAML's folder or one above it;
5. otherwise (any other detector) the Python running infertap.

A TensorFlow detector with none of 1-4 is a PlanError (exit 2) saying how to provide one.
Any other interpreter than infertap's own is probed before anything starts, in a child that
imports nothing heavy (`importlib.util.find_spec`): it must hold infertap of this version,
what the worker needs (confluent-kafka, CloudEvents, orjson) and, for a TensorFlow detector,
tensorflow, tf_keras and alibi_detect. What it lacks is a PlanError naming it, instead of a
worker that dies at every start. `up` shows the choice in its table (`python PATH (why)`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import infertap
from infertap.stack.processes import PlanError
from infertap.stack.specs.paths import local_candidates

TF_PYTHON_ENV = "INFERTAP_TF_PYTHON"
TF_VENV = ".venv-tf"
TF_VENV_PYTHON = Path(TF_VENV) / "bin" / "python"

#: what a worker imports beyond infertap's core dependencies
WORKER_MODULES = ("confluent_kafka", "cloudevents", "orjson", "numpy")
HTTP_MODULES = ("fastapi", "uvicorn")  # transport: http (the worker's ingress)
TF_MODULES = ("tensorflow", "tf_keras", "alibi_detect")

_PROBE = """
import importlib.util, json, sys
missing = []
for name in json.loads(sys.argv[1]):
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        missing.append(name)
version = None
if "infertap" not in missing:
    import infertap
    version = getattr(infertap, "__version__", None)
print(json.dumps({"missing": missing, "version": version}))
"""


@dataclass(frozen=True)
class Interpreter:
    """The Python a worker runs with, and why it was chosen (shown in `up`'s table)."""

    path: str
    origin: str

    @property
    def own(self) -> bool:
        """Whether it is the Python running infertap now."""
        return self.path == sys.executable

    def shown(self) -> str:
        return f"{self.path} ({self.origin})"


def needs_tensorflow(detector_name: str) -> bool:
    """Whether the backend `detector_name` is one of the registry's TensorFlow ones (imported here,
    not at the top: the registry brings numpy, which planning only Detectors needs)."""
    from infertap.detectors.backends.registry import TENSORFLOW

    return detector_name in TENSORFLOW


def detector_python(doc: Any) -> Interpreter:
    """The interpreter of the Detector document `doc` (a loaded `Document`); PlanError when
    there is none that can run it."""
    det = doc.spec
    name = det.spec.detector.name
    tf = needs_tensorflow(name)
    modules = _modules(tf, det.spec.source.transport == "http")
    named = det.spec.runtime.python
    if named:
        where = f"{doc.where}: spec.runtime.python"
        python = Interpreter(_locate(named, doc.source.parent, where), "spec.runtime.python")
        _require(python, modules, where, name)
        return python
    if not tf:
        return Interpreter(sys.executable, "infertap's own")
    env = os.environ.get(TF_PYTHON_ENV, "").strip()
    if env:
        where = f"{doc.where}: ${TF_PYTHON_ENV}"
        python = Interpreter(_locate(env, None, where), f"${TF_PYTHON_ENV}")
        _require(python, modules, where, name)
        return python
    if importlib.util.find_spec("tensorflow") is not None:  # finds, never imports
        python = Interpreter(sys.executable, "infertap's own, with TensorFlow")
        _require(python, modules, f"{doc.where}: spec.detector.name", name)
        return python
    starts = [Path.cwd(), doc.source.parent]
    found = find_tf_venv(starts)
    if found is None:
        places = " or ".join(dict.fromkeys(str(p.absolute()) for p in starts))
        raise PlanError(
            f"{doc.where}: spec.detector.name: {name} needs TensorFlow, which {sys.executable} does not have, "
            f"and no {TF_VENV_PYTHON} was found in {places} or above: run `make venv-tf` to build {TF_VENV}, "
            f"or name a Python with TensorFlow in spec.runtime.python (or ${TF_PYTHON_ENV})"
        )
    python = Interpreter(str(found), f"{TF_VENV} found in {found.parent.parent.parent}")
    _require(python, modules, f"{doc.where}: spec.detector.name", name)
    return python


def find_tf_venv(starts: list[Path]) -> Path | None:
    """The first `.venv-tf/bin/python` in each of `starts` or a folder above it (not resolved:
    a venv's python is a link, and Python finds its venv by the path it was started by)."""
    for start in starts:
        folder = start.absolute()
        for candidate in (folder, *folder.parents):
            python = candidate / TF_VENV_PYTHON
            if python.is_file() and os.access(python, os.X_OK):
                return python
    return None


def _modules(tf: bool, http: bool) -> tuple[str, ...]:
    return ("infertap", *WORKER_MODULES, *(HTTP_MODULES if http else ()), *(TF_MODULES if tf else ()))


def _locate(value: str, yaml_dir: Path | None, where: str) -> str:
    """An absolute path of the interpreter `value` names (relative: beside the YAML in `yaml_dir`, then
    in the current folder, as every path of a spec; `specs.paths`); PlanError when it is not there."""
    if os.sep not in value:
        found = shutil.which(value)
        if found is None:
            raise PlanError(f"{where}: {value!r} is not a command on PATH; give the path of a Python")
        return str(Path(found).absolute())
    candidates = local_candidates(value, yaml_dir)
    for candidate in candidates:
        if candidate.exists():
            if candidate.is_dir() or not os.access(candidate, os.X_OK):
                raise PlanError(f"{where}: {candidate} is not an executable file; give the path of a Python")
            return str(candidate.absolute())
    tried = " or ".join(dict.fromkeys(str(c.absolute()) for c in candidates))
    raise PlanError(f"{where}: there is no Python at {tried} (got {value!r}); `make venv-tf` builds {TF_VENV_PYTHON}")


def _require(python: Interpreter, modules: tuple[str, ...], where: str, detector: str) -> None:
    """PlanError when `python` lacks one of `modules` or runs another infertap version."""
    try:
        missing, version = _probe(python.path, modules)
    except PlanError as exc:
        raise PlanError(f"{where}: {exc}") from None
    if missing:
        hint = (
            f"`make venv-tf` builds {TF_VENV} with all of it"
            if any(m in TF_MODULES for m in modules)
            else "install infertap[detectors,logger,serving] there"
        )
        raise PlanError(
            f"{where}: {python.path} cannot run the {detector} worker: it lacks {', '.join(missing)} ({hint})"
        )
    if version != infertap.__version__:
        raise PlanError(
            f"{where}: {python.path} has infertap {version}, this is {infertap.__version__}: "
            "install this infertap there (`make venv-tf` does, from this checkout)"
        )


@lru_cache(maxsize=32)
def _probe(path: str, modules: tuple[str, ...]) -> tuple[list[str], str | None]:
    """(modules `path` lacks, its infertap version), looked up without importing them."""
    if path == sys.executable:
        missing = [m for m in modules if not _findable(m)]
        return missing, (infertap.__version__ if "infertap" not in missing else None)
    try:
        done = subprocess.run(
            [path, "-c", _PROBE, json.dumps(list(modules))],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PlanError(f"{path} cannot be run as a Python: {exc}") from None
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        return list(answer["missing"]), answer["version"]
    except (IndexError, ValueError, KeyError, TypeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PlanError(f"{path} did not answer as a Python 3 (exit {done.returncode}): {last}") from None


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
