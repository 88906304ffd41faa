"""`infertap render`: every manifest validates against the Kubernetes schemas (kubernetes-validate,
offline, bundled schemas); the KEDA ScaledObject (a CRD whose schema is not bundled) is checked
structurally, KEDA's required fields and types as its CRD states them; the KServe InferenceService
against KServe's own CRD schema (vendored: kserve_crd.py; more in test_render_kserve.py) and by
loading it back through infertap's own KServe spec model."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import kserve_crd  # tests/stack/kserve_crd.py
import kubernetes_validate
import numpy as np
import pytest
import yaml

from infertap.stack.render import RenderOptions, render_files
from infertap.stack.specs import load_text

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30.0"

ISVC = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  namespace: models
  annotations: {infertap.dev/team: demo}
spec:
  predictor:
    minReplicas: 1
    logger:
      mode: all
      url: kafka://localhost:9092/iris-events
      metadataHeaders: [x-request-id]
      metadataAnnotations: [infertap.dev/team]
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://bucket/iris
  explainer:
    containers:
      - name: kserve-container
        image: infertap/explainer:0.1.0
        args: [--explainer-type, KernelShap, --background, /mnt/models/reference.npy]
---
apiVersion: infertap.dev/v1alpha1
kind: Detector
metadata: {name: iris-drift, namespace: models}
spec:
  source: {inferenceService: iris, bootstrap: localhost:9092}
  features: [{name: a}, {name: b}, {name: c}, {name: d}]
  detector: {name: TabularDrift, params: {p_val: 0.05}, reference: reference.npy}
  window: {size: 200}
"""

# The parts of KEDA's ScaledObject CRD (keda.sh/v1alpha1) that a cluster would reject:
# spec.scaleTargetRef.name and spec.triggers[].{type, metadata} are required, metadata values
# are strings, replica counts are int32.
SCALED_OBJECT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                "maxReplicaCount": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                "pollingInterval": {"type": "integer"},
                "cooldownPeriod": {"type": "integer"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                    },
                },
            },
            "additionalProperties": False,
        },
    },
}


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    np.save(tmp_path / "reference.npy", np.random.default_rng(0).normal(size=(50, 4)).astype("float32"))
    path = tmp_path / "iris.yaml"
    path.write_text(ISVC)
    return path


def validate_all(manifests: list[dict]) -> list[str]:
    """kubernetes-validate (strict: unknown fields fail) on built-in kinds; the kinds it skipped."""
    skipped = []
    for m in manifests:
        if m["apiVersion"] in ("v1", "apps/v1"):
            kubernetes_validate.validate(m, K8S_VERSION, strict=True)
        else:
            skipped.append(m["kind"])
    return skipped


def by_kind(manifests: list[dict], kind: str) -> list[dict]:
    return [m for m in manifests if m["kind"] == kind]


def test_standalone_manifests_validate(spec_file):
    out = render_files([spec_file])
    kinds = sorted({m["kind"] for m in out.manifests})
    assert kinds == ["ConfigMap", "Deployment", "ScaledObject", "Service"]
    assert validate_all(out.manifests) == ["ScaledObject"]
    names = {(m["kind"], m["metadata"]["name"]) for m in out.manifests}
    assert {
        ("Deployment", "iris-predictor"),
        ("Deployment", "iris-explainer"),
        ("Deployment", "iris-drift"),
        ("Service", "iris-predictor"),
        ("Service", "iris-explainer"),
        ("ConfigMap", "infertap-dashboards"),
        ("ScaledObject", "iris-drift"),
    } <= names
    assert all(m["metadata"]["namespace"] == "models" for m in out.manifests)


def test_validation_is_real():
    """A Deployment with a wrong field type fails kubernetes-validate (the check can fail)."""
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "replicas": "two",
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_predictor_pod_has_the_logger_sidecar(spec_file):
    out = render_files([spec_file])
    dep = next(m for m in by_kind(out.manifests, "Deployment") if m["metadata"]["name"] == "iris-predictor")
    pod = dep["spec"]["template"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {"kserve-container", "infertap-logger"}
    args = containers["infertap-logger"]["args"]
    # local broker moved to the cluster's Kafka; topic kept; KServe's metadata options carried
    assert args[args.index("--log-url") + 1] == "kafka://kafka:9092/iris-events"
    assert args[args.index("--metadata-headers") + 1] == "x-request-id"
    assert args[args.index("--metadata-annotations") + 1] == "infertap.dev/team=demo"
    assert args[args.index("--component-port") + 1] == "8080"
    # remote storage: KServe's storage-initializer fills the model volume
    assert pod["spec"]["initContainers"][0]["args"] == ["gs://bucket/iris", "/mnt/models"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    ports = {p["name"] for c in containers.values() for p in c["ports"]}
    assert ports == {"http", "logger"}  # names the kubernetes-scrape job keeps
    svc = next(m for m in by_kind(out.manifests, "Service") if m["metadata"]["name"] == "iris-predictor")
    assert svc["spec"]["ports"][0] == {"name": "http", "port": 80, "targetPort": "logger", "protocol": "TCP"}


def test_explainer_and_detector(spec_file):
    out = render_files([spec_file])
    exp = next(m for m in by_kind(out.manifests, "Deployment") if m["metadata"]["name"] == "iris-explainer")
    args = exp["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--predictor-url") + 1] == "http://iris-predictor.models.svc.cluster.local"
    assert "KernelShap" in args
    det = next(m for m in by_kind(out.manifests, "Deployment") if m["metadata"]["name"] == "iris-drift")
    settings = json.loads(det["spec"]["template"]["spec"]["containers"][0]["args"][0])
    assert settings["bootstrap"] == "kafka:9092" and settings["detector"] == "TabularDrift"
    assert settings["reference"] == "/etc/infertap/reference/reference.npy"
    from infertap.detectors.settings import WorkerSettings

    WorkerSettings.model_validate(settings)  # what `python -m infertap.detectors` will parse
    ref = next(m for m in by_kind(out.manifests, "ConfigMap") if m["metadata"]["name"] == "iris-drift-reference")
    data = base64.b64decode(ref["binaryData"]["reference.npy"])
    assert data == (spec_file.parent / "reference.npy").read_bytes()


def test_scaled_object_matches_keda_crd(spec_file):
    import jsonschema

    out = render_files([spec_file])
    (so,) = by_kind(out.manifests, "ScaledObject")
    jsonschema.validate(so, SCALED_OBJECT_SCHEMA)
    trigger = so["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"] == {
        "bootstrapServers": "kafka:9092",
        "consumerGroup": "infertap-detector-iris-drift",
        "topic": "iris-events",
        "lagThreshold": "1000",
        "offsetResetPolicy": "earliest",
    }
    assert so["spec"]["scaleTargetRef"]["name"] == "iris-drift"
    broken = json.loads(json.dumps(so))
    del broken["spec"]["triggers"][0]["type"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)


def test_dashboard_configmap_holds_every_dashboard(spec_file):
    out = render_files([spec_file])
    cm = next(m for m in by_kind(out.manifests, "ConfigMap") if m["metadata"]["name"] == "infertap-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = sorted(p.name for p in (ROOT / "dashboards" / "grafana").glob("*.json"))
    assert sorted(cm["data"]) == files
    assert all(json.loads(text)["uid"].startswith("infertap-") for text in cm["data"].values())
    rules = next(m for m in by_kind(out.manifests, "ConfigMap") if m["metadata"]["name"] == "infertap-alert-rules")
    assert "InfertapDriftDetected" in rules["data"]["infertap-alerts.yml"]


def test_kserve_target(spec_file):
    out = render_files([spec_file], RenderOptions(target="kserve"))
    assert validate_all(out.manifests) == ["InferenceService", "ScaledObject"]
    (isvc,) = by_kind(out.manifests, "InferenceService")
    url = "http://iris-infertap-ingest.models.svc.cluster.local/"
    assert isvc["spec"]["predictor"]["logger"]["url"] == url
    # everything else as written: the same InferenceService, loadable by infertap's KServe model
    assert isvc["spec"]["predictor"]["model"] == {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://bucket/iris"}
    assert isvc["spec"]["explainer"]["containers"][0]["args"][:2] == ["--explainer-type", "KernelShap"]
    assert kserve_crd.errors(isvc) == []
    loaded = load_text(yaml.safe_dump(isvc), Path("rendered.yaml"))
    assert loaded.warnings == [] and loaded.documents[0].spec.spec.predictor.logger.url == url
    ingest = next(m for m in by_kind(out.manifests, "Deployment") if m["metadata"]["name"] == "iris-infertap-ingest")
    args = ingest["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--log-url") + 1] == "kafka://kafka:9092/iris-events"
    svc = next(m for m in by_kind(out.manifests, "Service") if m["metadata"]["name"] == "iris-infertap-ingest")
    assert svc["spec"]["ports"][0]["port"] == 80


def test_ingest_settings_parse_as_the_logger_would(spec_file):
    """The ingest container's args are flags `python -m infertap.sidecar` accepts."""
    from infertap.sidecar.__main__ import parse_args

    out = render_files([spec_file], RenderOptions(target="kserve"))
    for dep in by_kind(out.manifests, "Deployment"):
        for c in dep["spec"]["template"]["spec"]["containers"]:
            if c["command"][-1] == "logger":
                settings = parse_args(c["args"])
                assert settings.port == 9081 and settings.log_url


def test_local_storage_becomes_a_pvc_with_a_note(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(ISVC.split("---")[0].replace("gs://bucket/iris", "file://./models/iris"))
    out = render_files([path])
    dep = by_kind(out.manifests, "Deployment")[0]
    vols = dep["spec"]["template"]["spec"]["volumes"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "iris-models", "readOnly": True}} in vols
    assert any("iris-models" in n for n in out.notes)
    validate_all(out.manifests)


def test_cli_render_to_folder_and_stdout(spec_file, tmp_path):
    folder = tmp_path / "manifests"
    done = subprocess.run(
        [sys.executable, "-m", "infertap", "render", str(spec_file), "-o", str(folder), "--namespace", "ml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    files = sorted(folder.glob("*.yaml"))
    assert len(files) >= 8
    for f in files:
        m = yaml.safe_load(f.read_text())
        assert m["metadata"]["namespace"] == "ml"
    validate_all([yaml.safe_load(f.read_text()) for f in files])
    done = subprocess.run(
        [sys.executable, "-m", "infertap", "render", str(spec_file), "--target", "kserve", "--no-dashboards"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(done.stdout)]
    assert "InferenceService" in kinds and "ConfigMap" in kinds  # the detector's reference ConfigMap
    assert all(d["metadata"]["name"] != "infertap-dashboards" for d in yaml.safe_load_all(done.stdout))


def test_cli_render_bad_input_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: Bad_Name}\nspec: {}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "infertap", "render", str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr and "bad.yaml" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "infertap", "render", str(bad), "--target", "helm"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and "--target" in done.stderr


def test_examples_render_and_validate():
    """Every example in examples/ renders to manifests that validate."""
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        out = render_files([path])
        assert out.manifests, path
        validate_all(out.manifests)


def test_detector_replicas_set_the_deployment_and_the_keda_floor(spec_file):
    text = spec_file.read_text()
    assert "kind: Detector" in text
    replicated = spec_file.parent / "replicated.yaml"
    replicated.write_text(text.replace("  detector:", "  replicas: 6\n  detector:", 1))
    out = render_files([replicated])
    det = next(m for m in by_kind(out.manifests, "Deployment") if m["metadata"]["name"] == "iris-drift")
    assert det["spec"]["replicas"] == 6
    (so,) = by_kind(out.manifests, "ScaledObject")
    assert so["spec"]["minReplicaCount"] == 6 and so["spec"]["maxReplicaCount"] == 6  # default max 4 raised


@pytest.mark.parametrize("target", ["standalone", "kserve"])
def test_credentials_go_into_a_secret_not_into_deployments(spec_file, target):
    secure = (
        "url: kafka://localhost:9092/iris-events?security_protocol=SASL_SSL&sasl_mechanism=PLAIN"
        "&sasl_username=u&sasl_password=s3cret"
    )
    text = (
        spec_file.read_text()
        .replace("url: kafka://localhost:9092/iris-events", secure)
        .replace("bootstrap: localhost:9092}", "bootstrap: localhost:9092, kafkaConfig: {sasl.password: d3tect}}")
    )
    assert "s3cret" in text and "d3tect" in text
    spec_file.write_text(text)
    out = render_files([spec_file], RenderOptions(target=target))
    validate_all(out.manifests)  # the Secret and the env references are valid Kubernetes
    secrets = {m["metadata"]["name"]: m for m in by_kind(out.manifests, "Secret")}
    others = [m for m in out.manifests if m["kind"] != "Secret"]
    dumped = yaml.safe_dump_all(others)
    assert "s3cret" not in dumped and "d3tect" not in dumped
    logger_deployment = "iris-predictor" if target == "standalone" else "iris-infertap-ingest"
    assert set(secrets) == {f"{logger_deployment}-secrets", "iris-drift-secrets"}
    for deployment in by_kind(out.manifests, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for ref in container.get("env", []):
                key = ref["valueFrom"]["secretKeyRef"]
                value = secrets[key["name"]]["stringData"][key["key"]]
                assert f"$({ref['name']})" in container["args"]  # Kubernetes expands it from the env
                assert "s3cret" in value or "d3tect" in value
    [logger] = [
        c
        for d in by_kind(out.manifests, "Deployment")
        if d["metadata"]["name"] == logger_deployment
        for c in d["spec"]["template"]["spec"]["containers"]
        if c["name"] == "infertap-logger"
    ]
    url = secrets[f"{logger_deployment}-secrets"]["stringData"]["arg-0"]
    assert logger["args"][logger["args"].index("--log-url") + 1] == "$(INFERTAP_SECRET_ARG_0)"
    assert url.startswith("kafka://kafka:9092/iris-events?") and "sasl_password=s3cret" in url
    assert any("Secret" in n and logger_deployment in n for n in out.notes)
