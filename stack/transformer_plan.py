"""The transformer of an InferenceService, as `infertap up` runs it.

KServe runs `spec.transformer.containers[0]` (a custom container) in front of the predictor:
the InferenceService's URL reaches the transformer, which calls the predictor at
`--predictor_host`. Its controller appends `--model_name <isvc>`, `--predictor_host
<isvc>-predictor.<namespace>` and `--http_port 8080` to the args unless they are there
(pkg/apis/serving/v1beta1/transformer_custom.go).

Locally there is no container engine, so the container runs only when its `command` can run
here: `python ...` (any `python`, `python3`, `python3.X`: infertap's own interpreter runs it)
with `-m MODULE` for a module found beside the YAML file, in the current folder or installed,
or a script path that exists (beside the YAML file first); or another program found on PATH.
Otherwise one note says why it is skipped (an image-only container names no command to run)
and clients reach the predictor directly. The arguments are the container's `args` plus what
KServe's controller appends: `--model_name` when absent, and always this machine's
`--predictor_host` (the predictor's logger sidecar when it has one, so the predictor's events
carry what the transformer sends, as KServe's agent in the predictor's pod logs it; else the
model server) and `--http_port` (8080 is the predictor's here), replacing the cluster values
a YAML may give. The container's literal `env` values are set; `PYTHONPATH` starts with the
YAML file's folder and the current folder. Ready: the container's `readinessProbe.httpGet.path`
when it has one, else when its port accepts connections.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from infertap.stack.processes import ProcessSpec

#: The arguments KServe's controller sets on a custom transformer; locally `up` sets them.
HOST_FLAGS = ("--predictor_host", "--predictor-host")
PORT_FLAGS = ("--http_port", "--http-port")
NAME_FLAGS = ("--model_name", "--model-name")
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")


def plan_transformer(
    doc: Any,
    predictor_front: ProcessSpec,
    host: str,
    take_port: Callable[[int, str, str], int],
    base_port: int,
    notes: list[str],
) -> ProcessSpec | None:
    """The transformer process of `doc`'s `spec.transformer`, or None (with a note) when it cannot run here."""
    isvc = doc.spec
    where = f"{doc.where}: spec.transformer"
    extra = isvc.spec.transformer.model_extra or {}
    containers = extra.get("containers") or []
    container = containers[0] if containers and isinstance(containers[0], dict) else None
    if container is None:
        notes.append(f"{where}: no containers[0] to run; skipped, requests go to the predictor")
        return None
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    yaml_dir = doc.source.parent
    argv, why = _local_command(command, yaml_dir)
    if argv is None:
        notes.append(f"{where}.containers[0]: {why}; the transformer is skipped and requests go to the predictor")
        return None
    port = take_port(base_port, f"the transformer of {isvc.name}", "--predictor-port")
    args = _without(args, HOST_FLAGS + PORT_FLAGS)
    if not any(a in NAME_FLAGS or a.split("=", 1)[0] in NAME_FLAGS for a in args):
        args += ["--model_name", isvc.name]
    args += ["--predictor_host", predictor_front.address, "--http_port", str(port)]
    env = {
        str(e["name"]): str(e["value"])
        for e in container.get("env") or []
        if isinstance(e, dict) and "name" in e and "value" in e
    }
    paths = [str(yaml_dir.resolve()), str(Path.cwd())]
    inherited = env.get("PYTHONPATH") or os.environ.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join(paths + ([inherited] if inherited else []))
    probe = (container.get("readinessProbe") or {}).get("httpGet") or {}
    return ProcessSpec(
        name=f"{isvc.name}/transformer",
        role="transformer",
        host=host,
        port=port,
        argv=[*argv, *args],
        env=env,
        ready_path=str(probe["path"]) if probe.get("path") else None,
        inference_service=isvc.name,
        note=f"{' '.join(command)} -> http://{predictor_front.address} ({predictor_front.name})",
    )


def _local_command(command: list[str], yaml_dir: Path) -> tuple[list[str] | None, str]:
    """(argv to run `command` with here, "") or (None, why it cannot run here)."""
    if not command:
        return None, (
            "gives no command, only an image, which cannot run locally (no container engine); give "
            "command: [python, -m, MODULE] for a module here to run it"
        )
    program = Path(command[0]).name
    if not _PYTHON.match(program):
        found = shutil.which(command[0])
        if found is None:
            return None, f"command {command[0]!r} is not found on this machine"
        return [found, *command[1:]], ""
    rest = command[1:]
    if len(rest) >= 2 and rest[0] == "-m":
        module = rest[1]
        top = module.split(".")[0]
        if PathFinder.find_spec(top, [str(yaml_dir), str(Path.cwd()), *sys.path]) is None:
            return None, (
                f"command python -m {module}: no module {top!r} beside the YAML file, in the current folder or "
                "installed here"
            )
        return [sys.executable, *rest], ""
    if rest and not rest[0].startswith("-"):
        script = Path(rest[0]).expanduser()
        candidates = [script] if script.is_absolute() else [yaml_dir / script, Path.cwd() / script]
        for candidate in candidates:
            if candidate.is_file():
                return [sys.executable, str(candidate.resolve()), *rest[1:]], ""
        return None, f"command python {rest[0]}: no such script beside the YAML file or in the current folder"
    return None, "command python: give -m MODULE or a script to run"


def _without(args: list[str], flags: tuple[str, ...]) -> list[str]:
    """`args` minus `flags` (as `--f=v` or `--f v`)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in flags:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out
