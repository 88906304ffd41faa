"""Kubernetes manifests for what the YAML documents describe (`infertap render FILE...`).

Two targets:

- `standalone` (no KServe in the cluster): per InferenceService a predictor Deployment
  whose pod runs the model server and the logger sidecar (KServe's agent layout: the
  Service sends traffic to the sidecar on 9081, which proxies to the model on 8080 and
  taps every pair into Kafka), an explainer Deployment when `spec.explainer` names one,
  and Services for both.
- `kserve` (clusters running KServe): the InferenceService itself, unchanged except that
  every `logger.url` points at an infertap ingest Deployment (the logger sidecar's
  `POST /` CloudEvents ingest, with no model behind it), which writes to Kafka.

Both add, per `kind: Detector`, a worker Deployment (its reference data in a ConfigMap
when small), a KEDA ScaledObject scaling it on the consumer group's lag, and, once, the
Grafana dashboards and the alert rules as ConfigMaps (labelled for Grafana's and
Prometheus' sidecars). Pods carry `prometheus.io/*` annotations for the model server or
worker and `infertap.dev/scrape` for dashboards/prometheus/kubernetes-scrape.yml, which
also scrapes the logger's `/infertap/metrics` from the port named `logger`.

Local choices: a `kafka://` URL to localhost (the embedded broker of `infertap up`) is
moved to `--kafka-bootstrap`. Local files (a `storageUri` with file:// or a path, an
LLMInferenceService's `spec.model.uri`, the explainer's `--background`...) are found as `up`
finds them and put on a PersistentVolumeClaim the manifests create, the fields rewritten to
`pvc://<claim>/<folder>`, with a note saying how to copy the files in; `--local-models
refuse` stops instead, naming the field (render_storage.py). `pvc://` mounts that claim, which
must then be named by `--existing-pvc`; remote schemes (s3://, gs://, https://...) are
fetched by KServe's storage-initializer in an init container, as KServe does. Every claim a
manifest mounts or names is created by the manifests or named by `--existing-pvc`.

The explainer's stream worker (the annotation `infertap.io/explain-sample-rate`, as under
`up`) is a Deployment of its own on both targets; a transformer is kept in the
InferenceService (`kserve`) or becomes a Deployment and Service (`standalone`), and one that
names no image is left out with one warning line.

The logger's disk spool is an emptyDir by default: it survives restarts of the logger
container (a pod keeps its emptyDir until the pod itself goes), not the pod's deletion,
eviction or replacement in a rollout. `--spool pvc` puts it on a PersistentVolumeClaim per
logger Deployment (one replica, strategy Recreate, so the claim is never mounted by two pods).

Secrets: a container argument that carries one (a Kafka URL with `sasl_password=`, a URL
with a password in it, a Detector's settings with `sasl.password`) is not written into the
Deployment, where `kubectl get deployment`, `describe pod` and `ps` in the container show
it to anyone who may read those: it goes into a Secret `<deployment>-secrets`, and the
argument becomes `$(INFERTAP_SECRET_ARG_n)`, an environment variable Kubernetes fills from
that Secret and expands in the arguments.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from infertap.stack.explain_plan import explainer_args
from infertap.stack.processes import PlanError
from infertap.stack.render_storage import (
    MODEL_MOUNT,
    Claims,
    Copy,
    LocalModels,
    Placed,
    RenderError,
    claim_references,
    local_leftovers,
    pvc_parts,
)
from infertap.stack.specs import Document, InferenceService, KafkaURL, ModelSpec, load_files
from infertap.stack.specs.paths import is_local, spec_path, strip_file_scheme
from infertap.stream.topics import topics

__all__ = ["Copy", "RenderError", "RenderOptions", "Rendered", "render", "render_files", "write"]

DASHBOARDS = Path(str(resources.files("infertap") / "dashboards"))  # package data, in a wheel too
DASHBOARD_DIR = DASHBOARDS / "grafana"
ALERTS = DASHBOARDS / "prometheus" / "alerts.yml"
REFERENCE_MOUNT = "/etc/infertap/reference"
CONFIGMAP_LIMIT = 900 * 1024  # ConfigMaps hold at most 1 MiB; leave room for metadata
PORTS = {"predictor": 8080, "logger": 9081, "explainer": 8082, "metrics": 9102, "explain-stream": 9112}
SPOOL_DIR = "/var/spool/infertap"
STORAGE_INITIALIZER = "kserve/storage-initializer:v0.15.2"
Target = Literal["standalone", "kserve"]


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no &anchors/*aliases where two manifests share a dict (labels)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass
class RenderOptions:
    target: Target = "standalone"
    namespace: str | None = None  # None: each document's own metadata.namespace
    image_prefix: str = "infertap/"  # images <prefix>serving, logger, explainer, detector (deploy/Dockerfile.*)
    tag: str = "0.1.0"
    kafka_bootstrap: str = "kafka:9092"  # replaces localhost in kafka:// URLs and Detector sources
    dashboards: bool = True
    detector_max_replicas: int = 4  # more replicas than partitions idle in the consumer group
    lag_threshold: int = 1000
    local_models: LocalModels = "pvc"  # local files: onto created PersistentVolumeClaims, or refuse (exit 2)
    existing_pvcs: frozenset[str] = frozenset()  # claims that exist in the cluster: mounted, not created
    storage_class: str | None = None  # of the claims created; None: the cluster's default
    spool: Literal["emptydir", "pvc"] = "emptydir"  # the logger's disk spool
    spool_size: str = "1Gi"


@dataclass
class Rendered:
    manifests: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # "warning: ..." lines first
    copies: list[Copy] = field(default_factory=list)  # local files to copy onto the claims created

    def to_yaml(self) -> str:
        return yaml.dump_all(self.manifests, Dumper=_Dumper, sort_keys=False, width=120)


def render_files(paths: Iterable[str | Path], options: RenderOptions | None = None) -> Rendered:
    """Load the YAML files and render every document in them."""
    loaded = load_files(paths)
    out = render(loaded.documents, options)
    out.notes[:0] = [f"warning: {w}" for w in loaded.warnings]
    return out


@dataclass
class _Run:
    """What the renderers of one call share: the options, the notes, the claims and spool volumes."""

    opts: RenderOptions
    notes: list[str]
    claims: Claims
    spools: list[str] = field(default_factory=list)  # Deployments with a logger spool
    origins: dict[int, str] = field(default_factory=dict)  # id of a manifest -> the document it is (for sentences)


def render(documents: list[Document], options: RenderOptions | None = None) -> Rendered:
    opts = options or RenderOptions()
    out = Rendered()
    run = _Run(opts, out.notes, Claims(opts.local_models, frozenset(opts.existing_pvcs), opts.storage_class))
    namespaces = set()
    for doc in documents:
        kind = doc.spec.kind
        ns = opts.namespace or doc.spec.metadata.namespace
        namespaces.add(ns)
        if kind == "InferenceService":
            if opts.target == "kserve":
                out.manifests += _kserve(doc, ns, run)
            else:
                out.manifests += _standalone(doc, ns, run)
        elif kind == "Detector":
            out.manifests += _detector(doc, ns, run)
        elif kind == "LLMInferenceService":
            out.manifests.append(_llm_inference_service(doc, ns, run))
        else:
            out.notes.append(f"{doc.where}: {kind} documents are not rendered")
    if opts.dashboards and out.manifests:
        for ns in sorted(namespaces):
            out.manifests += _observability(ns)
    out.manifests[:0] = run.claims.manifests()  # claims first: `kubectl apply -f` creates them before their pods
    _check(out.manifests, run)
    if run.spools:
        out.notes.append(_spool_note(run))
    out.notes += run.claims.notes()
    out.notes.sort(key=lambda note: not note.startswith("warning: "))  # warnings first, each group in order
    out.copies = list(run.claims.copies)
    return out


def _check(manifests: list[dict], run: _Run) -> None:
    """No local path left where a cluster reads storage; every claim referenced is created or exists."""
    created = {
        (m["metadata"].get("namespace"), m["metadata"]["name"])
        for m in manifests
        if m["kind"] == "PersistentVolumeClaim"
    }
    errors = []
    for m in manifests:
        meta = m.get("metadata") or {}
        ns = meta.get("namespace")
        what = run.origins.get(id(m)) or f"{m['kind']} {meta.get('name')} (namespace {ns})"
        for path, value in local_leftovers(m):
            errors.append(
                f"{what}: {path}: {value!r} is a local path, which a cluster cannot read: upload it (s3://, gs://, "
                "pvc://, hf://...) and point the field there"
            )
        for path, claim in claim_references(m):
            if (ns, claim) not in created and claim not in run.opts.existing_pvcs:
                errors.append(
                    f"{what}: {path}: the PersistentVolumeClaim {claim!r} is not created by these manifests: "
                    f"if it exists in namespace {ns}, say so with --existing-pvc {claim}"
                )
    if errors:
        raise RenderError("\n".join(dict.fromkeys(errors)))


def _spool_note(run: _Run) -> str:
    names = ", ".join(run.spools)
    if run.opts.spool == "pvc":
        return (
            f"logger spool ({names}): on a PersistentVolumeClaim <deployment>-spool each, which outlives the pod; "
            "one replica with strategy Recreate, so a claim is never mounted by two pods"
        )
    return (
        f"logger spool ({names}): an emptyDir, which survives restarts of the logger container (the pod keeps it) "
        "but not the pod's deletion, eviction or a rollout; --spool pvc puts it on a PersistentVolumeClaim"
    )


# --- shared pieces -------------------------------------------------------------------------


def _labels(app: str, component: str, isvc: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "infertap",
    }
    if isvc:
        labels["serving.kserve.io/inferenceservice"] = isvc
    return labels


def _meta(name: str, ns: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _scrape(port: int, path: str = "/metrics") -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": path,
        "infertap.dev/scrape": "true",
    }


def _image(opts: RenderOptions, component: str) -> str:
    return f"{opts.image_prefix}{component}:{opts.tag}"


def _http_probe(path: str, port: str | int, delay: int = 5) -> dict:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": delay,
        "periodSeconds": 5,
        "failureThreshold": 6,
    }


def _deployment(
    name: str,
    ns: str,
    labels: dict[str, str],
    pod_annotations: dict[str, str],
    containers: list[dict],
    replicas: int = 1,
    volumes: list[dict] | None = None,
    init: list[dict] | None = None,
    strategy: str | None = None,
) -> dict:
    selector = {
        "app.kubernetes.io/name": labels["app.kubernetes.io/name"],
        "app.kubernetes.io/component": labels["app.kubernetes.io/component"],
    }
    pod: dict[str, Any] = {"containers": containers}
    if init:
        pod["initContainers"] = init
    if volumes:
        pod["volumes"] = volumes
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": selector},
        "template": {"metadata": {"labels": labels, "annotations": pod_annotations}, "spec": pod},
    }
    if strategy:
        spec["strategy"] = {"type": strategy}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, ns, labels), "spec": spec}


def _service(name: str, ns: str, labels: dict[str, str], ports: Sequence[tuple[str, int, str | int]]) -> dict:
    """A ClusterIP Service; `ports` are (name, port, targetPort), the target a container port's name."""
    selector = {
        "app.kubernetes.io/name": labels["app.kubernetes.io/name"],
        "app.kubernetes.io/component": labels["app.kubernetes.io/component"],
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, ns, labels),
        "spec": {
            "selector": selector,
            "ports": [
                {"name": pname, "port": port, "targetPort": target, "protocol": "TCP"} for pname, port, target in ports
            ],
        },
    }


_SECRET_MARK = re.compile(r"sasl_password=|sasl\.password")


def _carries_secret(arg: str) -> bool:
    if _SECRET_MARK.search(arg):
        return True
    try:
        return "://" in arg and urlsplit(arg).password is not None
    except ValueError:
        return False


def _with_secrets(deployment: dict, notes: list[str]) -> list[dict]:
    """The Deployment, its container arguments that carry secrets moved into a Secret (see
    the module docstring); [deployment] or [secret, deployment]."""
    name, ns = deployment["metadata"]["name"], deployment["metadata"]["namespace"]
    secret = f"{name}-secrets"
    data: dict[str, str] = {}
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        args = container.get("args", [])
        for i, arg in enumerate(args):
            if not _carries_secret(arg):
                continue
            key = f"arg-{len(data)}"
            var = f"INFERTAP_SECRET_ARG_{len(data)}"
            data[key] = arg
            args[i] = f"$({var})"
            container.setdefault("env", []).append(
                {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            )
    if not data:
        return [deployment]
    notes.append(
        f"{name}: {len(data)} argument(s) with credentials are in the Secret {secret!r} (stringData): "
        "keep the rendered files private, or create that Secret from your own store and drop ours"
    )
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(secret, ns, deployment["metadata"]["labels"]),
            "type": "Opaque",
            "stringData": data,
        },
        deployment,
    ]


def _kafka_url(url: str | None, isvc: str, opts: RenderOptions) -> str:
    """The logger's sink URL in the cluster: localhost brokers become --kafka-bootstrap."""
    url = url or f"kafka://{opts.kafka_bootstrap}/{topics(isvc).events}"
    if urlsplit(url).scheme.lower() != "kafka":
        return url
    kafka = KafkaURL.parse(url)
    if not kafka.topic:
        kafka = kafka.with_topic(topics(isvc).events)
    if kafka.is_local:
        query = urlsplit(url).query
        return f"kafka://{opts.kafka_bootstrap}/{kafka.topic}" + (f"?{query}" if query else "")
    return str(kafka)


def _logger_args(isvc: InferenceService, ns: str, block, opts: RenderOptions, component: str, source: str) -> list[str]:
    args = [
        "--host",
        "0.0.0.0",
        "--port",
        str(PORTS["logger"]),
        "--component-port",
        str(PORTS["predictor"]),
        "--log-url",
        _kafka_url(block.url if block else None, isvc.name, opts),
        "--log-mode",
        block.mode if block else "all",
        "--inference-service",
        isvc.name,
        "--namespace",
        ns,
        "--component",
        component,
        "--source-uri",
        source,
        "--spool-dir",
        SPOOL_DIR,
    ]
    if block and block.metadata_headers:
        args += ["--metadata-headers", ",".join(block.metadata_headers)]
    annotations = {
        k: isvc.metadata.annotations[k]
        for k in (block.metadata_annotations if block else [])
        if k in isvc.metadata.annotations
    }
    if annotations:
        args += ["--metadata-annotations", ",".join(f"{k}={v}" for k, v in annotations.items())]
    return args


def _logger_container(args: list[str], opts: RenderOptions) -> dict:
    return {
        "name": "infertap-logger",
        "image": _image(opts, "logger"),
        "command": ["python", "-m", "infertap.sidecar"],
        "args": args,
        "ports": [{"name": "logger", "containerPort": PORTS["logger"], "protocol": "TCP"}],
        "readinessProbe": _http_probe("/infertap/metrics", "logger", 2),
        "volumeMounts": [{"name": "spool", "mountPath": SPOOL_DIR}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }


def _spool_volume(deployment: str, ns: str, labels: dict[str, str], run: _Run) -> dict:
    """The logger's spool volume (module docstring: emptyDir by default, a claim with `--spool pvc`)."""
    run.spools.append(deployment)
    if run.opts.spool == "pvc":
        claim = f"{deployment}-spool"
        run.claims.claim(ns, claim, labels, size=run.opts.spool_size, purpose="infertap logger spool")
        return {"name": "spool", "persistentVolumeClaim": {"claimName": claim}}
    return {"name": "spool", "emptyDir": {"sizeLimit": run.opts.spool_size}}


def _local_to_claim(uri: str, doc: Document, ns: str, claim: str, where: str, run: _Run) -> Placed:
    """A storage URI as the cluster reads it: a local file or folder placed on `claim` (render_storage.py);
    any other URI as it is."""
    if not is_local(uri):
        return Placed(uri, "", None)
    source = run.claims.local(uri, doc.source.parent, where)
    isvc = doc.spec.name if doc.spec.kind == "InferenceService" else None
    return run.claims.place(ns, claim, source, _labels(claim, "models", isvc))


def _model_volume(uri: str) -> tuple[list[dict], list[dict], dict]:
    """(volumes, init containers, the container's volume mount) that put `uri` at /mnt/models:
    a `pvc://claim/folder` mounted with that folder as subPath (as KServe mounts it), anything
    else fetched by KServe's storage-initializer into an emptyDir."""
    mount: dict[str, Any] = {"name": "models", "mountPath": MODEL_MOUNT, "readOnly": True}
    if urlsplit(uri).scheme.lower() == "pvc":
        claim, sub = pvc_parts(uri)
        if sub:
            mount["subPath"] = sub
        return [{"name": "models", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}], [], mount
    init = [
        {
            "name": "storage-initializer",
            "image": STORAGE_INITIALIZER,
            "args": [uri, MODEL_MOUNT],
            "volumeMounts": [{"name": "models", "mountPath": MODEL_MOUNT}],
            "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"memory": "1Gi"}},
        }
    ]
    return [{"name": "models", "emptyDir": {}}], init, mount


# --- the explainer's files -----------------------------------------------------------------

TYPE_FLAGS = ("--explainer-type", "--explainer_type", "--type")
PATH_FLAGS = ("--background", "--storage-uri", "--storage_uri", "--explainer-uri", "--explainer_uri")
WHITE_BOX_FORMATS = ("sklearn", "xgboost", "lightgbm", "pytorch")  # ExplainerSettings.model_format


@dataclass
class _ExplainerFiles:
    """The explainer's arguments with its local files rewritten to where they are mounted, and
    what is mounted at /mnt/models (`uri`: a `pvc://` folder or a remote URI; None: nothing)."""

    args: list[str]
    uri: str | None = None


def _flag_values(args: list[str], spellings: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """(index, prefix, value) of each `--flag VALUE` (prefix '') or `--flag=VALUE` (prefix `--flag=`)."""
    found = []
    for i, arg in enumerate(args):
        for flag in spellings:
            if arg == flag and i + 1 < len(args):
                found.append((i + 1, "", args[i + 1]))
            elif arg.startswith(flag + "="):
                found.append((i, flag + "=", arg[len(flag) + 1 :]))
    return found


def _white_box(args: list[str]) -> bool:
    """Whether the explainer type reads the model itself (as explain_plan decides it for `up`)."""
    types = [value for _, _, value in _flag_values(args, TYPE_FLAGS)]
    return bool(types) and types[-1] not in ("KernelShap", "PermutationShap") and not types[-1].startswith("Anchor")


def _explainer_files(
    doc: Document, ns: str, args: list[str], env_uri: str | None, model: Placed | None, fmt: str, run: _Run
) -> _ExplainerFiles:
    """Where the explainer's files come from in the cluster (one folder at /mnt/models, KServe's
    STORAGE_URI convention): the predictor's model folder when every local file is in it, else a
    folder `explainer` of its own on the claim `<isvc>-models`. A white-box explainer without
    `--storage-uri` gets the predictor's model, as `up` gives it."""
    isvc: InferenceService = doc.spec
    where = f"{doc.where}: spec.explainer.containers[0].args"
    claim = f"{isvc.name}-models"
    labels = _labels(claim, "models", isvc.name)
    args = list(args)
    wants_model = False  # the predictor's local model, appended as --storage-uri once its place is known
    if _white_box(args) and not _flag_values(args, ("--storage-uri", "--storage_uri")) and model is not None:
        if fmt in WHITE_BOX_FORMATS and not _flag_values(args, ("--model-format", "--model_format")):
            args += ["--model-format", fmt]
        if model.source is not None:
            wants_model = True
        elif env_uri is None and not _local_values(args):
            return _ExplainerFiles(args + ["--storage-uri", MODEL_MOUNT], model.uri)  # the remote model, fetched
        else:
            run.notes.append(
                f"{where}: the white-box explainer needs the model ({model.uri}) beside local files: give --storage-uri"
            )
    # (index in args, or -1 for the model's --storage-uri; prefix; the local file)
    sources = [
        (i, prefix, run.claims.local(value, doc.source.parent, f"{where} {prefix.rstrip('=') or args[i - 1]}"))
        for i, prefix, value in _local_values(args)
    ]
    if wants_model and model is not None and model.source is not None:
        sources.append((-1, "", model.source))

    def put(i: int, prefix: str, path: str) -> None:
        if i < 0:
            args.extend(["--storage-uri", path])
        else:
            args[i] = prefix + path

    if env_uri is not None:  # the container's own STORAGE_URI fills /mnt/models
        base = _local_to_claim(
            env_uri, doc, ns, claim, f"{doc.where}: spec.explainer.containers[0].env STORAGE_URI", run
        )
        for i, prefix, source in sources:
            inner = _inside(source, base)
            if inner is None:
                raise RenderError(
                    f"{where}: {str(source)!r} is a local file, but the container's STORAGE_URI ({env_uri}) is what "
                    f"{MODEL_MOUNT} holds: put the file there and name it {MODEL_MOUNT}/..."
                )
            put(i, prefix, inner)
        return _ExplainerFiles(args, base.uri)
    if not sources:
        return _ExplainerFiles(args)
    if model is not None and model.source is not None:
        inner_paths = [_inside(source, model) for _, _, source in sources]
        if all(p is not None for p in inner_paths):
            for (i, prefix, _), inner in zip(sources, inner_paths, strict=True):
                put(i, prefix, str(inner))
            return _ExplainerFiles(args, model.uri)
    folder = run.claims.folder(ns, claim, "explainer", Path(f"<{isvc.name} explainer>"))
    names: dict[Path, str] = {}
    for i, prefix, source in sources:
        if source not in names:
            name, n = source.name, 1
            while name in names.values():
                n += 1
                name = f"{source.stem}-{n}{source.suffix}"
            names[source] = name
            run.claims.place_at(ns, claim, source, f"{folder}/{name}", labels)
        put(i, prefix, f"{MODEL_MOUNT}/{names[source]}")
    return _ExplainerFiles(args, f"pvc://{claim}/{folder}")


def _local_values(args: list[str]) -> list[tuple[int, str, str]]:
    """The path flags naming local files. An absolute path that does not exist here is taken as a path in
    the container (`--background=/mnt/models/reference.npy`, written for the cluster) and left alone."""
    found = []
    for i, prefix, value in _flag_values(args, PATH_FLAGS):
        if not value or not is_local(value):
            continue
        path = Path(strip_file_scheme(value)).expanduser()
        if path.is_absolute() and not path.exists():
            continue
        found.append((i, prefix, value))
    return found


def _inside(source: Path, base: Placed) -> str | None:
    """The path in the container of `source` when `base` (mounted at /mnt/models) holds it, else None."""
    if base.source is None:
        return None
    root, here = _resolved(base.source), _resolved(source)
    if here == root:
        return base.path
    if base.inner == "" and root in here.parents:
        return f"{MODEL_MOUNT}/{here.relative_to(root).as_posix()}"
    return None


def _resolved(path: Path) -> Path:
    return path.resolve() if path.exists() else path.absolute()


# --- standalone ----------------------------------------------------------------------------


def _predictor_model(doc: Document, ns: str, run: _Run, required: bool) -> tuple[str, str, ModelSpec, Placed] | None:
    """(format, YAML path, spec, where the cluster reads it) of the predictor's model; None without one."""
    isvc: InferenceService = doc.spec
    found = isvc.spec.predictor.model_with_path()
    if found is None:
        if required:
            raise RenderError(f"{doc.where}: spec.predictor: no model to serve; give spec.predictor.model")
        return None
    fmt, path, model = found
    if not model.storage_uri:
        if required:
            raise RenderError(f"{doc.where}: {path}.storageUri: required")
        return None
    where = f"{doc.where}: {path}.storageUri"
    return fmt, path, model, _local_to_claim(model.storage_uri, doc, ns, f"{isvc.name}-models", where, run)


def _standalone(doc: Document, ns: str, run: _Run) -> list[dict]:
    isvc: InferenceService = doc.spec
    opts, notes = run.opts, run.notes
    predictor = _predictor_model(doc, ns, run, required=True)
    assert predictor is not None  # required=True raises instead
    fmt, _, model, placed = predictor
    volumes, init, mount = _model_volume(placed.uri)
    model_path = placed.path
    name = f"{isvc.name}-predictor"
    labels = _labels(isvc.name, "predictor", isvc.name)
    server_args = [
        "--host",
        "0.0.0.0",
        "--http-port",
        str(PORTS["predictor"]),
        "--model-name",
        isvc.name,
        "--model-format",
        fmt,
        "--storage-uri",
        model_path,
        "--inference-service",
        isvc.name,
    ]
    if (model.env_value("PREDICT_PROBA") or "").lower() in ("1", "true", "yes"):
        server_args.append("--predict-proba")
    containers = [
        {
            "name": "kserve-container",
            "image": _image(opts, "serving"),
            "command": ["python", "-m", "infertap.serving"],
            "args": server_args,
            "ports": [{"name": "http", "containerPort": PORTS["predictor"], "protocol": "TCP"}],
            "readinessProbe": _http_probe("/v2/health/ready", "http"),
            "livenessProbe": _http_probe("/v2/health/live", "http", 10),
            "volumeMounts": [mount],
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        }
    ]
    ports = [("http", 80, "logger")]
    block = isvc.spec.predictor.logger
    strategy = None
    if block is not None:
        source = f"http://{name}.{ns}.svc.cluster.local/"
        containers.append(_logger_container(_logger_args(isvc, ns, block, opts, "predictor", source), opts))
        volumes = volumes + [_spool_volume(name, ns, labels, run)]
        strategy = "Recreate" if opts.spool == "pvc" else None
    else:
        ports = [("http", 80, "http")]
    manifests = _with_secrets(
        _deployment(
            name, ns, labels, _scrape(PORTS["predictor"]), containers, volumes=volumes, init=init, strategy=strategy
        ),
        notes,
    )
    manifests.append(_service(name, ns, labels, ports + [("metrics", PORTS["predictor"], "http")]))
    files = _explainer_args_and_files(doc, ns, placed, fmt, None, run)
    manifests += _explainer(doc, ns, files, run)
    kafka = _kafka_url(block.url, isvc.name, opts) if block is not None else None
    predictor_url = f"http://{name}.{ns}.svc.cluster.local"
    manifests += _explain_stream(
        doc, ns, files, kafka if kafka and kafka.startswith("kafka://") else None, predictor_url, run
    )
    manifests += _transformer(doc, ns, run)
    for component, _ in isvc.loggers():
        if component != "predictor":
            notes.append(f"{doc.where}: spec.{component}.logger: only the predictor's logger is rendered standalone")
    return manifests


def _explainer_args_and_files(
    doc: Document, ns: str, model: Placed | None, fmt: str, env_uri: str | None, run: _Run
) -> _ExplainerFiles | None:
    """The explainer's flags (containers[0].args, or the legacy `alibi` block) with its files placed;
    None when there is no explainer or it names no type (a note says so)."""
    isvc: InferenceService = doc.spec
    spec = isvc.spec.explainer
    if spec is None:
        return None
    args = explainer_args(spec) or []
    if not _flag_values(args, TYPE_FLAGS):
        done = "kept as written for KServe" if run.opts.target == "kserve" else "not rendered"
        run.notes.append(
            f"{doc.where}: spec.explainer: no explainer type (containers[0].args --explainer-type, or alibi.type): "
            f"{done}"
        )
        return None
    return _explainer_files(doc, ns, args, env_uri, model, fmt, run)


def _explainer(doc: Document, ns: str, files: _ExplainerFiles | None, run: _Run) -> list[dict]:
    """The explainer Deployment: `spec.explainer.containers[0].args` (infertap's flags) or `alibi.type`."""
    if files is None:
        return []
    isvc: InferenceService = doc.spec
    name = f"{isvc.name}-explainer"
    labels = _labels(isvc.name, "explainer", isvc.name)
    predictor = f"http://{isvc.name}-predictor.{ns}.svc.cluster.local"
    base = [
        "--name",
        isvc.name,
        "--inference-service",
        isvc.name,
        "--host",
        "0.0.0.0",
        "--http-port",
        str(PORTS["explainer"]),
        "--predictor-url",
        predictor,
    ]
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": _image(run.opts, "explainer"),
        "command": ["python", "-m", "infertap.explainers"],
        "args": base + files.args,
        "ports": [{"name": "http", "containerPort": PORTS["explainer"], "protocol": "TCP"}],
        "readinessProbe": _http_probe("/v2/health/ready", "http", 10),
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "4Gi"}},
    }
    volumes, init = _mount_files(container, files)
    return [
        _deployment(name, ns, labels, _scrape(PORTS["explainer"]), [container], volumes=volumes, init=init),
        _service(name, ns, labels, [("http", 80, "http")]),
    ]


def _mount_files(container: dict[str, Any], files: _ExplainerFiles) -> tuple[list[dict], list[dict]]:
    """Mount what the explainer's files need at /mnt/models in `container`; (volumes, init containers)."""
    if files.uri is None:
        return [], []
    volumes, init, mount = _model_volume(files.uri)
    container["volumeMounts"] = [mount]
    return volumes, init


def _explain_stream(
    doc: Document, ns: str, files: _ExplainerFiles | None, kafka: str | None, predictor_url: str, run: _Run
) -> list[dict]:
    """The explainer's stream worker (`python -m infertap.explainers.stream`), when the InferenceService
    asks for it by the annotation `infertap.io/explain-sample-rate`, as `infertap up` starts it."""
    from infertap.stack.plan import EXPLAIN_SAMPLE_ANNOTATION, explain_sample_rate

    isvc: InferenceService = doc.spec
    try:
        rate = explain_sample_rate(doc)
    except PlanError as exc:
        raise RenderError(str(exc)) from None
    if rate is None:
        return []
    where = f'{doc.where}: metadata.annotations["{EXPLAIN_SAMPLE_ANNOTATION}"]'
    if files is None:
        run.notes.append(
            f"{where}: the stream worker explains with spec.explainer's flags; there are none, so it is not rendered"
        )
        return []
    if kafka is None:
        run.notes.append(
            f"{where}: the stream worker reads the predictor logger's Kafka topic; there is none, so it is not rendered"
        )
        return []
    url = KafkaURL.parse(kafka)
    try:
        security = url.security.librdkafka()
    except ValueError as exc:  # a KafkaURLError, or options that do not fit together: never a secret in it
        raise RenderError(f"{doc.where}: spec.predictor.logger.url: {exc}") from None
    name = f"{isvc.name}-explain-stream"
    labels = _labels(isvc.name, "explain-stream", isvc.name)
    args = [
        "--bootstrap",
        url.bootstrap,
        "--inference-service",
        isvc.name,
        "--source-topic",
        str(url.topic),
        "--sample-rate",
        f"{rate:g}",
        "--metrics-port",
        str(PORTS["explain-stream"]),
        "--name",
        isvc.name,
        "--host",
        "0.0.0.0",
        "--predictor-url",
        predictor_url,
    ]
    for key, value in security.items():
        args += ["--kafka-config", f"{key}={value}"]
    container: dict[str, Any] = {
        "name": "explain-stream",
        "image": _image(run.opts, "explainer"),
        "command": ["python", "-m", "infertap.explainers.stream"],
        "args": args + files.args,
        "ports": [{"name": "metrics", "containerPort": PORTS["explain-stream"], "protocol": "TCP"}],
        "readinessProbe": _http_probe("/metrics", "metrics", 10),
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "4Gi"}},
    }
    volumes, init = _mount_files(container, files)
    return _with_secrets(
        _deployment(name, ns, labels, _scrape(PORTS["explain-stream"]), [container], volumes=volumes, init=init),
        run.notes,
    )


def _transformer(doc: Document, ns: str, run: _Run) -> list[dict]:
    """`spec.transformer` as a Deployment and Service, with the arguments KServe's controller appends to
    a custom transformer (--model_name, --predictor_host, --http_port); one warning line when it names
    no image to run."""
    isvc: InferenceService = doc.spec
    spec = isvc.spec.transformer
    if spec is None:
        return []
    containers = (spec.model_extra or {}).get("containers") or []
    first = containers[0] if containers and isinstance(containers[0], dict) else None
    if first is None or not first.get("image"):
        run.notes.append(
            f"warning: {doc.where}: spec.transformer: no containers[0].image, so there is no transformer to run: "
            "it is not rendered (give the transformer's image, or drop spec.transformer)"
        )
        return []
    name = f"{isvc.name}-transformer"
    labels = _labels(isvc.name, "transformer", isvc.name)
    first = copy.deepcopy(first)
    first["name"] = "kserve-container"
    args = [str(a) for a in first.get("args", [])]
    predictor_host = f"{isvc.name}-predictor.{ns}.svc.cluster.local"
    for flag, value in (("--model_name", isvc.name), ("--predictor_host", predictor_host), ("--http_port", "8080")):
        if not any(a == flag or a.startswith(flag + "=") for a in args):
            args += [flag, value]
    first["args"] = args
    first.setdefault("ports", [{"name": "http", "containerPort": PORTS["predictor"], "protocol": "TCP"}])
    extra = spec.model_extra or {}
    deployment = _deployment(
        name, ns, labels, {}, [first, *copy.deepcopy(containers[1:])], volumes=copy.deepcopy(extra.get("volumes"))
    )
    run.notes.append(
        f"{doc.where}: spec.transformer: rendered as the Deployment and Service {name!r}, calling the predictor at "
        f"{predictor_host}: send requests there, as KServe's ingress would"
    )
    return [*_with_secrets(deployment, run.notes), _service(name, ns, labels, [("http", 80, PORTS["predictor"])])]


# --- kserve --------------------------------------------------------------------------------


def _kserve(doc: Document, ns: str, run: _Run) -> list[dict]:
    """The InferenceService as written, its local files on a claim, its loggers sent to the infertap
    ingest; the ingest, and the explainer's stream worker when asked for."""
    isvc: InferenceService = doc.spec
    opts, notes = run.opts, run.notes
    raw = _document_as_written(doc)
    raw.setdefault("metadata", {})["namespace"] = ns
    raw.pop("status", None)
    spec = raw["spec"]
    predictor = _predictor_model(doc, ns, run, required=False)
    placed, fmt = None, ""
    if predictor is not None:
        fmt, path, _, placed = predictor
        spec["predictor"][path.rsplit(".", 1)[1]]["storageUri"] = placed.uri
    for component in ("predictor", "transformer"):
        for ci, container in enumerate((spec.get(component) or {}).get("containers") or []):
            for ei, env in enumerate(container.get("env") or []):
                if env.get("name") == "STORAGE_URI" and env.get("value") and is_local(str(env["value"])):
                    where = f"{doc.where}: spec.{component}.containers[{ci}].env[{ei}].value"
                    claim = f"{isvc.name}-models"
                    env["value"] = _local_to_claim(str(env["value"]), doc, ns, claim, where, run).uri
    files = _kserve_explainer(doc, ns, spec, placed, fmt, run)
    _kserve_transformer(doc, spec, run)
    run.origins[id(raw)] = doc.where
    out: list[dict] = [raw]
    loggers = list(isvc.loggers())
    ingest = f"{isvc.name}-infertap-ingest"
    url = f"http://{ingest}.{ns}.svc.cluster.local/"
    sinks: dict[str, str] = {}
    for component, block in loggers:
        sinks[component] = _kafka_url(
            block.url if block.url and block.url.startswith("kafka://") else None, isvc.name, opts
        )
        spec[component]["logger"]["url"] = url
    predictor_url = f"http://{isvc.name}-predictor.{ns}.svc.cluster.local"
    if not loggers:
        notes.append(f"{doc.where}: no logger block: the InferenceService is rendered with no ingest")
        return out + _explain_stream(doc, ns, files, None, predictor_url, run)
    labels = _labels(isvc.name, "ingest", isvc.name)
    args = [
        "--host",
        "0.0.0.0",
        "--port",
        str(PORTS["logger"]),
        "--inference-service",
        isvc.name,
        "--namespace",
        ns,
        "--spool-dir",
        SPOOL_DIR,
        "--source-uri",
        url,
    ]
    for sink in sorted(set(sinks.values())):
        args += ["--log-url", sink]
    container = _logger_container(args, opts)
    deployment = _deployment(
        ingest,
        ns,
        labels,
        _scrape(PORTS["logger"], "/infertap/metrics"),
        [container],
        volumes=[_spool_volume(ingest, ns, labels, run)],
        strategy="Recreate" if opts.spool == "pvc" else None,
    )
    out += [*_with_secrets(deployment, notes), _service(ingest, ns, labels, [("http", 80, "logger")])]
    return out + _explain_stream(doc, ns, files, sinks.get("predictor"), predictor_url, run)


def _kserve_explainer(
    doc: Document, ns: str, spec: dict[str, Any], model: Placed | None, fmt: str, run: _Run
) -> _ExplainerFiles | None:
    """The explainer of the InferenceService, in the form KServe v0.20 runs (the `alibi` block, gone
    from its CRD, becomes `containers`), its files mounted by KServe through STORAGE_URI."""
    raw = spec.get("explainer")
    if not isinstance(raw, dict):
        return None
    containers = raw.get("containers") or []
    env = containers[0].get("env") or [] if containers and isinstance(containers[0], dict) else []
    env_uri = next((str(e.get("value")) for e in env if e.get("name") == "STORAGE_URI" and e.get("value")), None)
    files = _explainer_args_and_files(doc, ns, model, fmt, env_uri, run)
    if files is None:
        return None
    if "alibi" in raw:
        raw.pop("alibi")
        containers = raw["containers"] = [{"name": "kserve-container", "image": _image(run.opts, "explainer")}]
        run.notes.append(
            f"{doc.where}: spec.explainer.alibi: KServe's CRD has no alibi explainer any more: rendered as "
            "containers[0] running infertap's explainer with the same settings"
        )
    first = containers[0]
    first["args"] = files.args
    if files.uri is not None:
        env = [e for e in first.get("env") or [] if e.get("name") != "STORAGE_URI"]
        first["env"] = [*env, {"name": "STORAGE_URI", "value": files.uri}]
    return files


def _kserve_transformer(doc: Document, spec: dict[str, Any], run: _Run) -> None:
    """KServe runs the transformer from the InferenceService; one that names no image cannot run."""
    raw = spec.get("transformer")
    if raw is None:
        return
    containers = raw.get("containers") if isinstance(raw, dict) else None
    if not containers or not isinstance(containers[0], dict) or not containers[0].get("image"):
        run.notes.append(
            f"warning: {doc.where}: spec.transformer: no containers[0].image, so KServe has no transformer to run "
            "and the InferenceService (kept as written) will not become ready: give the transformer's image, or "
            "drop spec.transformer"
        )


def _document_as_written(doc: Document) -> dict:
    """The document as the user wrote it (every KServe field kept), read again from its file."""
    docs = list(yaml.safe_load_all(doc.source.read_text()))  # indexes count empty documents too
    return copy.deepcopy(docs[doc.index - 1])


def _llm_inference_service(doc: Document, ns: str, run: _Run) -> dict[str, Any]:
    """KServe's own form, kept for both targets (KServe's LLM controller runs it; it has no logger), a local
    `spec.model.uri` on the claim `<name>-models`."""
    manifest = _document_as_written(doc)
    manifest.pop("status", None)
    manifest.setdefault("metadata", {})["namespace"] = ns
    uri = doc.spec.spec.model.uri
    if is_local(uri):
        claim = f"{doc.spec.name}-models"
        manifest["spec"]["model"]["uri"] = _local_to_claim(uri, doc, ns, claim, f"{doc.where}: spec.model.uri", run).uri
    run.origins[id(manifest)] = doc.where
    run.notes.append(f"{doc.where}: rendered for KServe's LLM controller (no payload logger is rendered beside it yet)")
    return manifest


# --- detectors -----------------------------------------------------------------------------


def _detector(doc: Document, ns: str, run: _Run) -> list[dict]:
    if doc.spec.spec.detector.performance:  # RealisedPerformance (docs/ground-truth.md): no reference data
        return _performance_detector(doc, ns, run)
    opts, notes = run.opts, run.notes
    det = doc.spec
    name = det.name
    labels = _labels(name, "detector", det.inference_service or None)
    manifests: list[dict] = []
    volumes, mounts, overrides = [], [], {}
    block = det.spec.detector
    data_path = block.reference or block.saved_detector
    local = spec_path(data_path, doc.source.parent)  # as `up` finds it
    if block.reference is not None and local.is_file() and local.stat().st_size <= CONFIGMAP_LIMIT:
        cm = f"{name}-reference"
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(cm, ns, labels),
                "binaryData": {local.name: _b64(local.read_bytes())},
            }
        )
        volumes.append({"name": "reference", "configMap": {"name": cm}})
        overrides["reference"] = f"{REFERENCE_MOUNT}/{local.name}"
    else:
        claim = f"{name}-data"
        key = "reference" if block.reference is not None else "saved_detector"
        field_name = "reference" if key == "reference" else "savedDetector"
        local = run.claims.local(data_path, doc.source.parent, f"{doc.where}: spec.detector.{field_name}")
        run.claims.place_at(ns, claim, local, local.name, _labels(claim, "data", det.inference_service or None))
        notes.append(
            f"{doc.where}: spec.detector.{field_name}: {data_path!r} is not a local file small enough for a "
            f"ConfigMap: it goes on the PersistentVolumeClaim {claim!r} (mounted at {REFERENCE_MOUNT})"
        )
        volumes.append({"name": "reference", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        overrides[key] = f"{REFERENCE_MOUNT}/{local.name}"
    mounts.append({"name": "reference", "mountPath": REFERENCE_MOUNT, "readOnly": True})
    bootstrap, settings, container = _worker_container(doc, opts, "infertap.detectors", mounts, None, overrides)
    replicas = det.spec.replicas
    manifests += _with_secrets(
        _deployment(name, ns, labels, _scrape(PORTS["metrics"]), [container], replicas=replicas, volumes=volumes), notes
    )
    manifests.append(_service(name, ns, labels, [("metrics", PORTS["metrics"], "metrics")]))
    if settings.transport == "kafka":
        manifests.append(
            _scaled_object(
                name, ns, labels, bootstrap, settings.consumer_group, settings.topic, opts, min_replicas=replicas
            )
        )
    return manifests


def _worker_container(
    doc: Document, opts: RenderOptions, module: str, mounts: list[dict], state_dir: str | None, overrides: dict
) -> tuple[str, Any, dict]:
    """(bootstrap, settings, container) of a Detector document's worker running `python -m module`:
    a local broker address becomes the cluster's, the settings travel as the JSON argument."""
    det = doc.spec
    bootstrap = det.spec.source.bootstrap
    if KafkaURL.parse(f"kafka://{bootstrap}").is_local:
        bootstrap = opts.kafka_bootstrap
    settings = det.to_settings(
        doc.source.parent,
        bootstrap=bootstrap,
        host="0.0.0.0",
        metrics_port=PORTS["metrics"],
        state_dir=state_dir,
        **overrides,
    )
    container = {
        "name": "detector",
        "image": _image(opts, "detector"),
        "command": ["python", "-m", module],
        "args": [settings.model_dump_json(exclude_defaults=True)],
        "ports": [{"name": "metrics", "containerPort": PORTS["metrics"], "protocol": "TCP"}],
        "readinessProbe": _http_probe("/metrics", "metrics", 10),
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
    }
    return bootstrap, settings, container


PERFORMANCE_STATE = "/var/lib/infertap/state"


def _performance_detector(doc: Document, ns: str, run: _Run) -> list[dict]:
    """A RealisedPerformance worker: `python -m infertap.detectors.performance`, its join state on
    an emptyDir (it survives container restarts; a partition that moves to another pod leaves its
    waiting predictions behind, said in the notes), scaled by KEDA on the events topic's lag."""
    opts, det = run.opts, doc.spec
    name = det.name
    labels = _labels(name, "detector", det.inference_service or None)
    mounts = [{"name": "state", "mountPath": PERFORMANCE_STATE}]
    bootstrap, settings, container = _worker_container(
        doc, opts, "infertap.detectors.performance", mounts, PERFORMANCE_STATE, {}
    )
    volumes = [{"name": "state", "emptyDir": {"sizeLimit": "2Gi"}}]
    run.notes.append(
        f"{doc.where}: the join state of {name} is on an emptyDir: a partition that moves to another replica "
        "starts from its committed offset without the predictions still waiting there; the InferenceService's "
        f"logger takes the feedback at /v1/models/{{name}}/feedback (--request-id-header {settings.params.id_header} "
        "lets labels name the client's id)"
    )
    replicas = det.spec.replicas
    manifests = _with_secrets(
        _deployment(name, ns, labels, _scrape(PORTS["metrics"]), [container], replicas=replicas, volumes=volumes),
        run.notes,
    )
    manifests.append(_service(name, ns, labels, [("metrics", PORTS["metrics"], "metrics")]))
    manifests.append(
        _scaled_object(
            name, ns, labels, bootstrap, settings.consumer_group or name, settings.topic or "", opts, replicas
        )
    )
    return manifests


def _scaled_object(
    name: str, ns: str, labels: dict, bootstrap: str, group: str, topic: str, opts: RenderOptions, min_replicas: int = 1
) -> dict:
    """KEDA scales the workers on the consumer group's lag (one replica per `lagThreshold` records),
    never below the Detector's `spec.replicas`."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(name, ns, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": min_replicas,
            "maxReplicaCount": max(min_replicas, opts.detector_max_replicas),
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "triggers": [
                {
                    "type": "kafka",
                    "metadata": {
                        "bootstrapServers": bootstrap,
                        "consumerGroup": group,
                        "topic": topic,
                        "lagThreshold": str(opts.lag_threshold),
                        "offsetResetPolicy": "earliest",
                    },
                }
            ],
        },
    }


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


# --- dashboards and rules ------------------------------------------------------------------


def _observability(ns: str) -> list[dict]:
    """Dashboards for Grafana's sidecar (label grafana_dashboard) and rules for Prometheus."""
    boards = {p.name: p.read_text() for p in sorted(DASHBOARD_DIR.glob("*.json"))}
    labels = _labels("infertap", "dashboards")
    out = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(
                "infertap-dashboards", ns, {**labels, "grafana_dashboard": "1"}, {"grafana_folder": "infertap"}
            ),
            "data": boards,
        }
    ]
    if ALERTS.exists():
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(
                    "infertap-alert-rules", ns, {**_labels("infertap", "alerts"), "prometheus_rule": "1"}
                ),
                "data": {"infertap-alerts.yml": ALERTS.read_text()},
            }
        )
    return out


def write(rendered: Rendered, out: Path | None) -> str:
    """Write the manifests to `out` (a .yaml file, or a folder: one file per manifest); None: return the text."""
    if out is None or out.suffix in (".yaml", ".yml"):
        text = rendered.to_yaml()
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        return text
    out.mkdir(parents=True, exist_ok=True)
    for i, manifest in enumerate(rendered.manifests, 1):
        name = f"{i:02d}-{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"
        (out / name).write_text(yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=120))
    return json.dumps([m["metadata"]["name"] for m in rendered.manifests])
