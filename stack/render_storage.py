"""Local files of a spec on PersistentVolumeClaims, for `infertap render` (both targets).

A cluster cannot read the files of the machine that renders. A local path in a spec (a
`storageUri`, an LLMInferenceService's `spec.model.uri`, a `STORAGE_URI` container variable,
the explainer's `--background`, `--storage-uri` or `--explainer-uri`, a Detector's reference
data too large for a ConfigMap) is found as `infertap up` finds it (`specs.paths.spec_path`:
beside the YAML file first, then the current folder), then, as `--local-models` says:

- `pvc` (the default): the file or folder is placed on a PersistentVolumeClaim that the
  render creates (`<isvc>-models`, `<llm>-models`, `<detector>-data`, in the document's
  namespace; its size 1.25 times the files', at least 1Gi), the field is rewritten to
  `pvc://<claim>/<folder>` (KServe mounts a `pvc://` folder at /mnt/models with that folder
  as subPath, so a folder it is: a model file goes into a folder named after its parent), and
  the render's notes say how to copy the files in (`Rendered.copies` lists them). A claim
  named by `--existing-pvc` is not created: the files go onto it as they would onto ours.
- `refuse`: the render stops with exit code 2 and a sentence naming the field.

Every claim the manifests mount or name in a `pvc://` URI must be created by them or be
named by `--existing-pvc` (`check_claims`), so an apply never waits on a claim nobody makes.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from infertap.stack.specs.paths import is_local, spec_path

MODEL_MOUNT = "/mnt/models"
GIB = 1024**3
COPY_IMAGE = "busybox:1.36"
LocalModels = Literal["pvc", "refuse"]


class RenderError(ValueError):
    """The documents cannot be rendered; the message names the document."""


@dataclass(frozen=True)
class Copy:
    """One local file or folder to copy onto a claim before the component that reads it starts."""

    namespace: str
    claim: str
    source: Path  # absolute when it exists here
    dest: str  # path inside the claim
    found: bool  # whether `source` exists on this machine


@dataclass(frozen=True)
class Placed:
    """Where a local path went: `uri` for the field (`pvc://claim/folder`), mounted at /mnt/models,
    where the path itself is `/mnt/models/<inner>` (`inner` empty for a folder)."""

    uri: str
    inner: str
    source: Path | None  # the local file or folder; None: the URI was not local

    @property
    def path(self) -> str:
        return f"{MODEL_MOUNT}/{self.inner}" if self.inner else MODEL_MOUNT


@dataclass
class Claims:
    """The claims one render creates and the copies onto them."""

    local_models: LocalModels = "pvc"
    existing: frozenset[str] = frozenset()
    storage_class: str | None = None
    copies: list[Copy] = field(default_factory=list)
    _created: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _folders: dict[tuple[str, str, str], Path] = field(default_factory=dict)  # (ns, claim, top folder) -> source

    def local(self, uri: str, yaml_dir: Path, where: str) -> Path:
        """The local file a field names (RenderError under `--local-models refuse`)."""
        if self.local_models == "refuse":
            raise RenderError(
                f"{where}: {uri!r} is a local path, which a cluster cannot read: upload it (s3://, gs://, pvc://, "
                "hf://...) and point the field there, or render with --local-models pvc to put it on a "
                "PersistentVolumeClaim"
            )
        return spec_path(uri, yaml_dir)

    def place(self, ns: str, claim: str, source: Path, labels: dict[str, str]) -> Placed:
        """Put `source` on `claim` as a folder of its own: a folder as itself (its name), a file inside a
        folder named after the file's parent folder (`-2`... appended when another source took the name)."""
        is_dir = source.is_dir() if source.exists() else not source.suffix
        wanted = source.name if is_dir else (source.absolute().parent.name or "model")
        folder = self.folder(ns, claim, wanted, source)
        dest, inner = (folder, "") if is_dir else (f"{folder}/{source.name}", source.name)
        self.place_at(ns, claim, source, dest, labels)
        return Placed(f"pvc://{claim}/{folder}", inner, source)

    def place_at(self, ns: str, claim: str, source: Path, dest: str, labels: dict[str, str]) -> None:
        """Put `source` on `claim` at `dest` exactly (a Detector's data, mounted whole)."""
        copy = Copy(ns, claim, _shown(source), dest, source.exists())
        if copy not in self.copies:
            self.copies.append(copy)
        self.claim(ns, claim, labels)

    def claim(self, ns: str, name: str, labels: dict[str, str], size: str | None = None, purpose: str = "") -> None:
        """Create the claim `name` (once), unless `--existing-pvc` names it. `size` None: from its copies."""
        if name in self.existing or (ns, name) in self._created:
            return
        spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size or ""}}}
        if self.storage_class:
            spec["storageClassName"] = self.storage_class
        meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels}
        if purpose:
            meta["annotations"] = {"infertap.dev/purpose": purpose}
        self._created[(ns, name)] = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta,
            "spec": spec,
        }

    def manifests(self) -> list[dict[str, Any]]:
        """The PersistentVolumeClaims to create, sized for their copies."""
        out = []
        for (ns, name), pvc in self._created.items():
            requests = pvc["spec"]["resources"]["requests"]
            if not requests["storage"]:
                total = sum(_size(c.source) for c in self.copies if (c.namespace, c.claim) == (ns, name))
                requests["storage"] = f"{max(1, math.ceil(total * 1.25 / GIB))}Gi"
            out.append(pvc)
        return out

    def notes(self) -> list[str]:
        """One note per claim with copies: how to copy the files in."""
        out = []
        by_claim: dict[tuple[str, str], list[Copy]] = {}
        for copy in self.copies:
            by_claim.setdefault((copy.namespace, copy.claim), []).append(copy)
        for (ns, claim), copies in by_claim.items():
            made = "exists already (--existing-pvc)" if claim in self.existing else "is created by these manifests"
            missing = [c for c in copies if not c.found]
            lines = [
                f"PersistentVolumeClaim {claim!r} (namespace {ns}) {made}; copy the local files onto it "
                "(the pods that read them wait for them), for example:"
            ]
            lines += [f"  {line}" for line in copy_commands(ns, claim, copies)]
            if missing:
                lines.append(
                    "  not found on this machine (build them first, or fix the path): "
                    + ", ".join(str(c.source) for c in missing)
                )
            out.append("\n".join(lines))
        return out

    def folder(self, ns: str, claim: str, folder: str, owner: Path) -> str:
        """A top folder of `claim` for `owner`: `folder`, or `folder-2`... when another owner has it."""
        name, n = folder, 1
        while (ns, claim, name) in self._folders and self._folders[(ns, claim, name)] != owner:
            n += 1
            name = f"{folder}-{n}"
        self._folders[(ns, claim, name)] = owner
        return name


def copy_commands(ns: str, claim: str, copies: list[Copy]) -> list[str]:
    """kubectl commands that copy `copies` onto `claim` through a short-lived helper pod."""
    pod = f"{claim}-copy"[:63]
    overrides = {
        "spec": {
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
            "containers": [
                {
                    "name": "copy",
                    "image": COPY_IMAGE,
                    "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
        }
    }
    q = shlex.quote
    lines = [
        f"kubectl -n {ns} apply -f MANIFESTS   # creates the claim (and the rest)",
        f"kubectl -n {ns} run {pod} --image={COPY_IMAGE} --restart=Never --overrides={q(json.dumps(overrides))}",
        f"kubectl -n {ns} wait --for=condition=Ready pod/{pod} --timeout=300s",
    ]
    for copy in copies:
        parent = copy.dest.rsplit("/", 1)[0] if "/" in copy.dest else ""
        if parent:
            lines.append(f"kubectl -n {ns} exec {pod} -- mkdir -p {q('/data/' + parent)}")
        lines.append(f"kubectl -n {ns} cp {q(str(copy.source))} {q(f'{pod}:/data/{copy.dest}')}")
    lines.append(f"kubectl -n {ns} delete pod {pod}")
    return lines


def pvc_parts(uri: str) -> tuple[str, str]:
    """`pvc://claim/a/b` -> ('claim', 'a/b'), as KServe's ParsePvcURI splits it."""
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


def claim_references(manifest: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(YAML path, claim) of every claim a manifest mounts (`persistentVolumeClaim.claimName`) or names
    in a `pvc://` string."""

    def walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
        if isinstance(value, dict):
            pvc = value.get("persistentVolumeClaim")
            if isinstance(pvc, dict) and isinstance(pvc.get("claimName"), str):
                yield f"{path}.persistentVolumeClaim.claimName", pvc["claimName"]
            for key, item in value.items():
                if key != "persistentVolumeClaim":
                    yield from walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from walk(item, f"{path}[{i}]")
        elif isinstance(value, str) and value.lower().startswith("pvc://"):
            yield path, pvc_parts(value)[0]

    if manifest.get("kind") == "ConfigMap":
        return iter(())  # dashboards and reference data: text, not references
    return walk({k: v for k, v in manifest.items() if k != "status"}, "")


def local_leftovers(manifest: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(YAML path, value) of local paths (file://, a plain path) left where a cluster reads storage:
    `storageUri`, `uri` (of `storageUris`, of an LLMInferenceService's model) and `STORAGE_URI`
    variables. Paths elsewhere (a container's own arguments) name files in the container and are
    not looked at."""

    def walk(value: Any, path: str, key: str) -> Iterator[tuple[str, str]]:
        if isinstance(value, dict):
            env = value.get("value")
            if value.get("name") == "STORAGE_URI" and isinstance(env, str) and env and is_local(env):
                yield f"{path}.value", env
            for k, item in value.items():
                yield from walk(item, f"{path}.{k}" if path else str(k), k)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from walk(item, f"{path}[{i}]", key)
        elif isinstance(value, str) and key in ("storageUri", "uri") and value and is_local(value):
            yield path, value

    if manifest.get("kind") in ("ConfigMap", "Secret"):
        return iter(())  # dashboards, reference data, credentials: no storage fields
    return walk({k: v for k, v in manifest.items() if k != "status"}, "", "")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


def _shown(path: Path) -> Path:
    return path.resolve() if path.exists() else path.absolute()
