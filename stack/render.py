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
moved to `--kafka-bootstrap`; a local `storageUri` (file:// or a path) becomes the PVC
`<isvc>-models` mounted at /mnt/models (copy the model there); `pvc://` mounts that claim;
remote schemes (s3://, gs://, https://...) are fetched by KServe's storage-initializer in
an init container, as KServe does.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from infertap.stack.specs import Document, InferenceService, KafkaURL, load_files
from infertap.stream.topics import topics

DASHBOARDS = Path(str(resources.files("infertap") / "dashboards"))  # package data, in a wheel too
DASHBOARD_DIR = DASHBOARDS / "grafana"
ALERTS = DASHBOARDS / "prometheus" / "alerts.yml"
MODEL_MOUNT = "/mnt/models"
REFERENCE_MOUNT = "/etc/infertap/reference"
CONFIGMAP_LIMIT = 900 * 1024  # ConfigMaps hold at most 1 MiB; leave room for metadata
PORTS = {"predictor": 8080, "logger": 9081, "explainer": 8082, "metrics": 9102}
STORAGE_INITIALIZER = "kserve/storage-initializer:v0.15.2"
Target = Literal["standalone", "kserve"]


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no &anchors/*aliases where two manifests share a dict (labels)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


class RenderError(ValueError):
    """The documents cannot be rendered; the message names the document."""


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


@dataclass
class Rendered:
    manifests: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_yaml(self) -> str:
        return yaml.dump_all(self.manifests, Dumper=_Dumper, sort_keys=False, width=120)


def render_files(paths: Iterable[str | Path], options: RenderOptions | None = None) -> Rendered:
    """Load the YAML files and render every document in them."""
    loaded = load_files(paths)
    out = render(loaded.documents, options)
    out.notes[:0] = [f"warning: {w}" for w in loaded.warnings]
    return out


def render(documents: list[Document], options: RenderOptions | None = None) -> Rendered:
    opts = options or RenderOptions()
    out = Rendered()
    namespaces = set()
    for doc in documents:
        kind = doc.spec.kind
        ns = opts.namespace or doc.spec.metadata.namespace
        namespaces.add(ns)
        if kind == "InferenceService":
            if opts.target == "kserve":
                out.manifests += _kserve(doc, ns, opts, out.notes)
            else:
                out.manifests += _standalone(doc, ns, opts, out.notes)
        elif kind == "Detector":
            out.manifests += _detector(doc, ns, opts, out.notes)
        elif kind == "LLMInferenceService":
            out.manifests.append(_llm_inference_service(doc, ns, out.notes))
        else:
            out.notes.append(f"{doc.where}: {kind} documents are not rendered")
    if opts.dashboards and out.manifests:
        for ns in sorted(namespaces):
            out.manifests += _observability(ns)
    return out


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
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, ns, labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels, "annotations": pod_annotations}, "spec": pod},
        },
    }


def _service(name: str, ns: str, labels: dict[str, str], ports: list[tuple[str, int, str]]) -> dict:
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


def _llm_inference_service(doc: Document, ns: str, notes: list[str]) -> dict[str, Any]:
    """KServe's own form, kept for both targets: KServe's LLM controller runs it (it has no logger)."""
    manifest: dict[str, Any] = doc.spec.model_dump(by_alias=True, exclude_none=True)
    manifest.pop("status", None)
    manifest.setdefault("metadata", {})["namespace"] = ns
    notes.append(
        f"{doc.where}: rendered as is for KServe's LLM controller (no payload logger is rendered beside it yet)"
    )
    return manifest


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
        "/var/spool/infertap",
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
        "volumeMounts": [{"name": "spool", "mountPath": "/var/spool/infertap"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }


# --- standalone ----------------------------------------------------------------------------


def _model_volume(isvc: InferenceService, uri: str, notes: list[str], where: str) -> tuple[list[dict], list[dict], str]:
    """(volumes, init containers, model path in the container) for a storageUri."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "pvc":
        parts = urlsplit(uri)
        claim, sub = parts.netloc, parts.path.lstrip("/")
        return (
            [{"name": "models", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
            [],
            f"{MODEL_MOUNT}/{sub}" if sub else MODEL_MOUNT,
        )
    if scheme in ("", "file") or len(scheme) == 1:
        claim = f"{isvc.name}-models"
        notes.append(
            f"{where}: storageUri {uri!r} is local: copy the model to the PVC {claim!r} (mounted at {MODEL_MOUNT})"
        )
        return [{"name": "models", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}], [], MODEL_MOUNT
    init = [
        {
            "name": "storage-initializer",
            "image": STORAGE_INITIALIZER,
            "args": [uri, MODEL_MOUNT],
            "volumeMounts": [{"name": "models", "mountPath": MODEL_MOUNT}],
            "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"memory": "1Gi"}},
        }
    ]
    return [{"name": "models", "emptyDir": {}}], init, MODEL_MOUNT


def _standalone(doc: Document, ns: str, opts: RenderOptions, notes: list[str]) -> list[dict]:
    isvc: InferenceService = doc.spec
    found = isvc.spec.predictor.model_with_path()
    if found is None:
        raise RenderError(f"{doc.where}: spec.predictor: no model to serve; give spec.predictor.model")
    fmt, path, model = found
    if not model.storage_uri:
        raise RenderError(f"{doc.where}: {path}.storageUri: required")
    volumes, init, model_path = _model_volume(isvc, model.storage_uri, notes, f"{doc.where}: {path}")
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
            "volumeMounts": [{"name": "models", "mountPath": MODEL_MOUNT, "readOnly": True}],
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        }
    ]
    ports = [("http", 80, "logger")]
    block = isvc.spec.predictor.logger
    if block is not None:
        source = f"http://{name}.{ns}.svc.cluster.local/"
        containers.append(_logger_container(_logger_args(isvc, ns, block, opts, "predictor", source), opts))
        volumes = volumes + [{"name": "spool", "emptyDir": {"sizeLimit": "1Gi"}}]
    else:
        ports = [("http", 80, "http")]
    manifests = _with_secrets(
        _deployment(name, ns, labels, _scrape(PORTS["predictor"]), containers, volumes=volumes, init=init), notes
    )
    manifests.append(_service(name, ns, labels, ports + [("metrics", PORTS["predictor"], "http")]))
    manifests += _explainer(doc, ns, opts, notes)
    for component, _ in isvc.loggers():
        if component != "predictor":
            notes.append(f"{doc.where}: spec.{component}.logger: only the predictor's logger is rendered standalone")
    return manifests


def _explainer(doc: Document, ns: str, opts: RenderOptions, notes: list[str]) -> list[dict]:
    """The explainer Deployment: `spec.explainer.containers[0].args` (infertap's flags) or `alibi.type`."""
    isvc: InferenceService = doc.spec
    spec = isvc.spec.explainer
    if spec is None:
        return []
    extra = spec.model_extra or {}
    containers = extra.get("containers") or []
    args: list[str] = []
    if containers and isinstance(containers[0], dict):
        args = [str(a) for a in containers[0].get("args", [])]
    elif isinstance(extra.get("alibi"), dict) and extra["alibi"].get("type"):
        args = ["--explainer-type", str(extra["alibi"]["type"])]
    if not any(a.startswith("--explainer-type") or a == "--type" for a in args):
        notes.append(
            f"{doc.where}: spec.explainer: no explainer type (containers[0].args --explainer-type, or alibi.type); not rendered"
        )
        return []
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
    container = {
        "name": "kserve-container",
        "image": _image(opts, "explainer"),
        "command": ["python", "-m", "infertap.explainers"],
        "args": base + args,
        "ports": [{"name": "http", "containerPort": PORTS["explainer"], "protocol": "TCP"}],
        "readinessProbe": _http_probe("/v2/health/ready", "http", 10),
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "4Gi"}},
    }
    return [
        _deployment(name, ns, labels, _scrape(PORTS["explainer"]), [container]),
        _service(name, ns, labels, [("http", 80, "http")]),
    ]


# --- kserve --------------------------------------------------------------------------------


def _kserve(doc: Document, ns: str, opts: RenderOptions, notes: list[str]) -> list[dict]:
    """The InferenceService with its loggers sent to the infertap ingest, and the ingest itself."""
    isvc: InferenceService = doc.spec
    raw = _document_as_written(doc)
    raw.setdefault("metadata", {})["namespace"] = ns
    raw.pop("status", None)
    ingest = f"{isvc.name}-infertap-ingest"
    url = f"http://{ingest}.{ns}.svc.cluster.local/"
    loggers = list(isvc.loggers())
    if not loggers:
        notes.append(f"{doc.where}: no logger block: the InferenceService is rendered as is, with no ingest")
        return [raw]
    sinks = set()
    for component, block in loggers:
        sinks.add(_kafka_url(block.url if block.url and block.url.startswith("kafka://") else None, isvc.name, opts))
        raw["spec"][component]["logger"]["url"] = url
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
        "/var/spool/infertap",
        "--source-uri",
        url,
    ]
    for sink in sorted(sinks):
        args += ["--log-url", sink]
    container = _logger_container(args, opts)
    deployment = _deployment(
        ingest,
        ns,
        labels,
        _scrape(PORTS["logger"], "/infertap/metrics"),
        [container],
        volumes=[{"name": "spool", "emptyDir": {"sizeLimit": "1Gi"}}],
    )
    return [raw, *_with_secrets(deployment, notes), _service(ingest, ns, labels, [("http", 80, "logger")])]


def _document_as_written(doc: Document) -> dict:
    """The document as the user wrote it (every KServe field kept), read again from its file."""
    docs = list(yaml.safe_load_all(doc.source.read_text()))  # indexes count empty documents too
    return copy.deepcopy(docs[doc.index - 1])


# --- detectors -----------------------------------------------------------------------------


def _detector(doc: Document, ns: str, opts: RenderOptions, notes: list[str]) -> list[dict]:
    det = doc.spec
    name = det.name
    labels = _labels(name, "detector", det.inference_service or None)
    manifests: list[dict] = []
    volumes, mounts, overrides = [], [], {}
    block = det.spec.detector
    data_path = block.reference or block.saved_detector
    local = Path(data_path.removeprefix("file://"))
    local = local if local.is_absolute() else doc.source.parent / local
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
        notes.append(
            f"{doc.where}: spec.detector: {data_path!r} is not a small local file: put it on the PVC {claim!r} "
            f"(mounted at {REFERENCE_MOUNT})"
        )
        volumes.append({"name": "reference", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        key = "reference" if block.reference is not None else "saved_detector"
        overrides[key] = f"{REFERENCE_MOUNT}/{local.name}"
    mounts.append({"name": "reference", "mountPath": REFERENCE_MOUNT, "readOnly": True})
    bootstrap = det.spec.source.bootstrap
    if KafkaURL.parse(f"kafka://{bootstrap}").is_local:
        bootstrap = opts.kafka_bootstrap
    settings = det.to_settings(
        doc.source.parent,
        bootstrap=bootstrap,
        host="0.0.0.0",
        metrics_port=PORTS["metrics"],
        state_dir=None,
        **overrides,
    )
    container = {
        "name": "detector",
        "image": _image(opts, "detector"),
        "command": ["python", "-m", "infertap.detectors"],
        "args": [settings.model_dump_json(exclude_defaults=True)],
        "ports": [{"name": "metrics", "containerPort": PORTS["metrics"], "protocol": "TCP"}],
        "readinessProbe": _http_probe("/metrics", "metrics", 10),
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
    }
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
