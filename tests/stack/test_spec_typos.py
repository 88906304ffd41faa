"""Unknown fields under a component (`predictor:`, ...) and in `logger:`: a likely typo is an error
naming the known field; anything else a one-line warning. Through the loader and the real CLI."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infertap.stack.specs import SpecError, load_text
from infertap.stack.specs.base import likely_typo
from infertap.stack.specs.inference_service import (
    FRAMEWORKS,
    ExplainerSpec,
    LoggerSpec,
    PredictorSpec,
    TransformerSpec,
)

ROOT = Path(__file__).resolve().parents[2]

HEAD = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: sklearn-iris
spec:
  predictor:
"""
MODEL = """\
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://kfserving-examples/models/sklearn/1.0/model
"""
WHERE = "document 1 (InferenceService sklearn-iris)"

# Every top-level field KServe's v1beta1 PredictorSpec takes (its ComponentExtensionSpec and its
# copy of the PodSpec inlined): a cluster's YAML like this must load without a single warning.
KSERVE_PREDICTOR = """\
    serviceAccountName: sa
    serviceAccount: sa
    minReplicas: 1
    maxReplicas: 3
    scaleTarget: 10
    scaleMetric: concurrency
    scaleMetricType: Utilization
    autoScaling: {metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}}]}
    containerConcurrency: 4
    canaryTrafficPercent: 10
    timeout: 60
    batcher: {maxBatchSize: 32, maxLatency: 500}
    labels: {team: a}
    annotations: {a: b}
    deploymentStrategy: {type: RollingUpdate}
    nodeSelector: {gpu: "true"}
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
    affinity: {nodeAffinity: {}}
    volumes: [{name: cache, emptyDir: {}}]
    imagePullSecrets: [{name: regcred}]
    initContainers: [{name: init, image: busybox}]
    ephemeralContainers: []
    securityContext: {runAsNonRoot: true}
    priorityClassName: high
    priority: 10
    runtimeClassName: nvidia
    schedulerName: default-scheduler
    topologySpreadConstraints: []
    terminationGracePeriodSeconds: 30
    activeDeadlineSeconds: 600
    automountServiceAccountToken: false
    enableServiceLinks: false
    hostAliases: []
    hostNetwork: false
    hostIPC: false
    hostPID: false
    hostUsers: true
    shareProcessNamespace: false
    dnsPolicy: ClusterFirst
    dnsConfig: {nameservers: [1.1.1.1]}
    readinessGates: []
    preemptionPolicy: Never
    overhead: {cpu: 100m}
    os: {name: linux}
    hostname: h
    hostnameOverride: h
    subdomain: s
    setHostnameAsFQDN: false
    resourceClaims: []
    schedulingGates: []
    resources: {limits: {cpu: "2"}}
    nodeName: n1
    restartPolicy: Always
    storageUris: [{uri: "gs://bucket/a", mountPath: /mnt/a}]
    workerSpec: {tensorParallelSize: 1, pipelineParallelSize: 2}
    logger:
      mode: all
      url: http://message-dumper.default/
      metadataHeaders: [x-request-id]
      metadataAnnotations: [serving.kserve.io/deploymentMode]
      storage: {path: /logs, parameters: {type: s3}, key: k, serviceAccountName: sa}
"""


def load(text: str):
    return load_text(text, Path("x.yaml"))


@pytest.mark.fast
def test_every_field_of_kserves_predictor_spec_loads_without_a_warning():
    result = load(HEAD + KSERVE_PREDICTOR + MODEL)
    assert result.warnings == []
    assert result.documents[0].spec.spec.predictor.logger.metadata_headers == ["x-request-id"]


@pytest.mark.fast
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_framework_key_loads_without_a_warning(framework):
    text = HEAD + f"    {framework}:\n      storageUri: gs://bucket/model\n      resources: {{}}\n"
    assert load(text).warnings == []


@pytest.mark.fast
def test_other_components_take_the_pod_and_component_fields_silently():
    text = (
        HEAD
        + MODEL
        + "  transformer:\n    minReplicas: 1\n    containers: [{name: t, image: x}]\n    logger: {mode: request}\n"
        + "  explainer:\n    serviceAccountName: sa\n    art: {type: SquareAttack}\n"
    )
    assert load(text).warnings == []


@pytest.mark.fast
@pytest.mark.parametrize(
    "extra, path, known",
    [
        ("    loger:\n      mode: all\n", "spec.predictor.loger", "logger"),
        ("    Logger: {mode: all}\n", "spec.predictor.Logger", "logger"),
        ("    logger: {mod: all}\n", "spec.predictor.logger.mod", "mode"),
        ("    logger: {mdoe: all}\n", "spec.predictor.logger.mdoe", "mode"),  # swapped letters
        ("    logger: {urls: http://x/}\n", "spec.predictor.logger.urls", "url"),
        ("    logger: {metadataHeader: [a]}\n", "spec.predictor.logger.metadataHeader", "metadataHeaders"),
        ("    minReplica: 1\n", "spec.predictor.minReplica", "minReplicas"),
        ("    serviceAcountName: sa\n", "spec.predictor.serviceAcountName", "serviceAccountName"),
        ("    sklean:\n      storageUri: gs://b/m\n", "spec.predictor.sklean", "sklearn"),
        ("    nodeSelectors: {}\n", "spec.predictor.nodeSelectors", "nodeSelector"),
    ],
)
def test_a_likely_typo_is_an_error_naming_the_known_field(extra, path, known):
    with pytest.raises(SpecError) as err:
        load(HEAD + MODEL + extra)
    assert str(err.value) == f"x.yaml: {WHERE}: {path}: unknown field; did you mean `{known}`?"


@pytest.mark.fast
def test_typos_under_transformer_and_explainer_and_several_at_once():
    text = HEAD + MODEL + "    loger: {}\n  transformer:\n    loger: {}\n  explainer:\n    logger: {mod: all}\n"
    with pytest.raises(SpecError) as err:
        load(text)
    assert str(err.value).splitlines() == [
        f"x.yaml: {WHERE}: spec.predictor.loger: unknown field; did you mean `logger`?",
        f"x.yaml: {WHERE}: spec.transformer.loger: unknown field; did you mean `logger`?",
        f"x.yaml: {WHERE}: spec.explainer.logger.mod: unknown field; did you mean `mode`?",
    ]


@pytest.mark.fast
@pytest.mark.parametrize(
    "extra, path",
    [
        ("    colourScheme: blue\n", "spec.predictor.colourScheme"),
        ("    tolerance: []\n", "spec.predictor.tolerance"),  # 0.70 from tolerations: below the cutoff
        ("    logger: {url: http://x/, colour: blue}\n", "spec.predictor.logger.colour"),
        ("    logger: {uri: http://x/}\n", "spec.predictor.logger.uri"),  # 0.67 from url
    ],
)
def test_a_field_far_from_every_known_one_is_a_warning(extra, path):
    result = load(HEAD + MODEL + extra)
    assert result.warnings == [f"x.yaml: {WHERE}: {path}: unknown field, kept but not used"]


@pytest.mark.fast
def test_typos_are_only_checked_where_the_blocks_are_known():
    # model: and the Detector's blocks keep warning (container fields, newer KServe fields)
    text = HEAD + "    model:\n      modelFormat: {name: sklearn}\n      storageUri: gs://b/m\n      storageUrl: x\n"
    assert load(text).warnings == [
        f"x.yaml: {WHERE}: spec.predictor.model.storageUrl: unknown field, kept but not used"
    ]


@pytest.mark.fast
def test_every_field_of_kserves_crd_is_known():
    """KServe's own CRD (v0.20, vendored for the render tests): its component and logger fields never warn."""
    crd_file = ROOT / "tests" / "stack" / "fixtures" / "kserve-crd" / "serving.kserve.io_inferenceservices.yaml.gz"
    crd = yaml.safe_load(gzip.decompress(crd_file.read_bytes()))
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for component, model in (
        ("predictor", PredictorSpec),
        ("transformer", TransformerSpec),
        ("explainer", ExplainerSpec),
    ):
        assert set(spec[component]["properties"]) <= model.known_fields(), component
        logger = spec[component]["properties"]["logger"]["properties"]
        assert set(logger) <= LoggerSpec.known_fields(), f"{component}.logger"


@pytest.mark.fast
def test_the_closeness_rule():
    predictor, logger = PredictorSpec.known_fields(), LoggerSpec.known_fields()
    assert {"logger", "containers", "minReplicas", "storageUris", "workerSpec", "tensorflow"} <= predictor
    assert likely_typo("loger", predictor) == "logger"
    assert likely_typo("logr", predictor) == "logger"  # ratio 0.80: the cutoff itself
    assert likely_typo("moed", logger) == "mode"  # same letters, another order
    assert likely_typo("METADATAHEADERS", logger) == "metadataHeaders"
    for far in ("colour", "replicaCount", "volumeMounts", "explainer", "image"):
        assert likely_typo(far, predictor) is None, far


# ---------------------------------------------------------------- the real CLI, in a child process


def infertap(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infertap", *args], cwd=ROOT, capture_output=True, text=True, timeout=180
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "isvc.yaml"
    path.write_text(text)
    return path


# The model is on gs://, which `up` cannot run: should the typo pass the loader, `up` still
# fails (with another sentence) before it starts any process.


@pytest.mark.parametrize("verb", ["up", "render"])
def test_loger_under_the_predictor_exits_2_naming_file_and_field(tmp_path, verb):
    path = write(tmp_path, HEAD + MODEL + "    loger:\n      mode: all\n")
    extra = ["--log-dir", str(tmp_path / "logs")] if verb == "up" else []
    done = infertap(verb, str(path), *extra)
    assert done.returncode == 2, done.stderr + done.stdout
    assert done.stderr.strip() == f"{path}: {WHERE}: spec.predictor.loger: unknown field; did you mean `logger`?"
    assert not (tmp_path / "logs").exists()  # refused before anything started


@pytest.mark.parametrize("verb", ["up", "render"])
def test_mod_in_a_logger_block_exits_2(tmp_path, verb):
    path = write(tmp_path, HEAD + MODEL + "    logger:\n      mod: all\n")
    extra = ["--log-dir", str(tmp_path / "logs")] if verb == "up" else []
    done = infertap(verb, str(path), *extra)
    assert done.returncode == 2, done.stderr + done.stdout
    assert done.stderr.strip() == f"{path}: {WHERE}: spec.predictor.logger.mod: unknown field; did you mean `mode`?"


def test_a_far_unknown_field_is_one_warning_and_render_succeeds(tmp_path):
    path = write(tmp_path, HEAD + MODEL + "    colourScheme: blue\n")
    done = infertap("render", str(path), "--no-dashboards")
    assert done.returncode == 0, done.stderr
    [warning] = [line for line in done.stderr.splitlines() if "colourScheme" in line]
    assert warning.startswith(("warning: ", "note: warning: ")), warning
    assert warning.endswith(f"{path}: {WHERE}: spec.predictor.colourScheme: unknown field, kept but not used")
    assert "kind: Deployment" in done.stdout and "name: sklearn-iris-predictor" in done.stdout
