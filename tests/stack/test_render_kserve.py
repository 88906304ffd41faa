"""`infertap render` output that applies: no local paths left, every claim it references created (or
named by --existing-pvc), InferenceService and LLMInferenceService documents valid against KServe's
own CRD schemas (vendored, tests/stack/fixtures/kserve-crd/), the explainer's stream worker and the
transformer rendered, the logger's spool where it survives, and paths found as `infertap up` finds them."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
from pathlib import Path

import kserve_crd  # tests/stack/kserve_crd.py (rootdir-relative imports, as cli_support)
import kubernetes_validate
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from infertap.stack.cli import app
from infertap.stack.processes import PlanError, resolve_storage
from infertap.stack.render import Rendered, RenderError, RenderOptions, render_files
from infertap.stack.render_storage import local_leftovers
from infertap.stack.specs import load_files

pytestmark = pytest.mark.fast  # starts no process (make test-fast)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
K8S_VERSION = "1.30.0"
CRD_KINDS = ("InferenceService", "LLMInferenceService")
TARGETS = ["standalone", "kserve"]


@pytest.fixture
def at_root(monkeypatch):
    """The examples' `file://./models/...` are found from the repository root, as `make demo` runs them."""
    monkeypatch.chdir(ROOT)


# --- checks every render here passes ----------------------------------------------------------


def strings(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def assert_applies(out: Rendered, existing: frozenset[str] = frozenset()) -> None:
    """What makes the output apply to a cluster with KServe (the issue's list), checked independently of
    render's own checks where it can be."""
    pvcs = {
        (m["metadata"]["namespace"], m["metadata"]["name"])
        for m in out.manifests
        if m["kind"] == "PersistentVolumeClaim"
    }
    for m in out.manifests:
        if m["kind"] == "ConfigMap":
            continue  # dashboards and reference data
        for path, value in strings(m):
            assert "file://" not in value.lower(), (m["metadata"]["name"], path, value)
            assert not re.search(r"(^|=)\.\.?/", value), (m["metadata"]["name"], path, value)  # ./x, ../x, --f=./x
        assert list(local_leftovers(m)) == []  # render's own check agrees
        ns = m["metadata"]["namespace"]
        for path, value in strings(m):  # every claim mounted or named in a pvc:// URI
            claim = value if path.endswith(".persistentVolumeClaim.claimName") else None
            if value.startswith("pvc://"):
                claim = value.removeprefix("pvc://").split("/", 1)[0]
            if claim is not None:
                assert (ns, claim) in pvcs or claim in existing, f"{m['kind']} {m['metadata']['name']}: {path}: {claim}"
        if m["kind"] in CRD_KINDS:
            assert kserve_crd.errors(m) == [], m["metadata"]["name"]
        elif m["apiVersion"] in ("v1", "apps/v1"):
            kubernetes_validate.validate(m, K8S_VERSION, strict=True)
    for pvc in (m for m in out.manifests if m["kind"] == "PersistentVolumeClaim"):
        assert re.fullmatch(r"\d+Gi", pvc["spec"]["resources"]["requests"]["storage"])


def by(out: Rendered, kind: str, name: str | None = None) -> list[dict]:
    return [m for m in out.manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def container_of(deployment: dict, name: str | None = None) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def arg(args: list[str], flag: str) -> str:
    for i, a in enumerate(args):
        if a == flag:
            return args[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1 :]
    raise KeyError(flag)


# --- the vendored schemas and the validator ---------------------------------------------------


def test_vendored_crds_are_kserves():
    """The vendored files are KServe v0.20.0's, byte for byte (the checksums of the README's table)."""
    table = (kserve_crd.CRD_DIR / "README.md").read_text()
    import gzip

    for name in kserve_crd.CRDS.values():
        digest = hashlib.sha256(gzip.decompress((kserve_crd.CRD_DIR / name).read_bytes())).hexdigest()
        assert f"`{name}` |" in table and digest in table.split(f"`{name}` |", 1)[1].split("\n", 1)[0], name
    assert "Apache License" in (kserve_crd.CRD_DIR / "LICENSE").read_text()
    assert "1fb781055dd1567164358233e1125142ca6ef1fe" in table
    crd = kserve_crd.load_crd("LLMInferenceService")
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1", "v1alpha2"]


SAMPLE = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "sklearn-iris", "namespace": "default"},
    "spec": {
        "predictor": {
            "minReplicas": 1,
            "logger": {"mode": "all", "url": "http://sink.default/"},
            "model": {
                "modelFormat": {"name": "sklearn"},
                "storageUri": "gs://kfserving-examples/models/sklearn/1.0/model",
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": 1}},
                "env": [{"name": "A", "value": "1"}],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            },
        }
    },
}


def broken(change):
    doc = copy.deepcopy(SAMPLE)
    change(doc)
    return doc


@pytest.mark.parametrize(
    ("label", "doc", "wanted"),
    [
        ("wrong type", broken(lambda d: d["spec"]["predictor"].update(minReplicas="two")), "minReplicas"),
        ("enum", broken(lambda d: d["spec"]["predictor"]["logger"].update(mode="everything")), "mode"),
        ("unknown field", broken(lambda d: d["spec"]["predictor"]["model"].update(storageURI="gs://x")), "storageURI"),
        ("misplaced", broken(lambda d: d["spec"].update(logger={"mode": "all"})), "logger"),
        ("null", broken(lambda d: d["spec"]["predictor"].update(maxReplicas=None)), "maxReplicas"),
        ("quantity", broken(lambda d: d["spec"]["predictor"]["model"]["resources"]["limits"].update(cpu=[1])), "cpu"),
        (
            "duplicate env (list-map)",
            broken(lambda d: d["spec"]["predictor"]["model"]["env"].append({"name": "A", "value": "2"})),
            "duplicate",
        ),
        ("required", broken(lambda d: d["spec"].pop("predictor")), "predictor"),
        ("apiVersion", broken(lambda d: d.update(apiVersion="serving.kserve.io/v1")), "v1"),
        ("no name", broken(lambda d: d["metadata"].pop("name")), "name"),
    ],
)
def test_a_broken_inference_service_fails_the_crd_schema(label, doc, wanted):
    """The validator is not vacuous: the sample passes, each broken copy fails, naming what broke."""
    assert kserve_crd.errors(SAMPLE) == []
    found = kserve_crd.errors(doc) if doc["apiVersion"].endswith("v1beta1") else ["apiVersion: " + doc["apiVersion"]]
    assert found and any(wanted in e for e in found), (label, found)


def test_apiversion_outside_the_crd_is_refused():
    with pytest.raises(KeyError):
        kserve_crd.validator("InferenceService", "v1")


def test_a_broken_llm_inference_service_fails_its_crd_schema():
    good = {
        "apiVersion": "serving.kserve.io/v1alpha2",
        "kind": "LLMInferenceService",
        "metadata": {"name": "llm"},
        "spec": {"model": {"uri": "hf://org/model", "name": "m"}, "replicas": 1},
    }
    assert kserve_crd.errors(good) == []
    assert kserve_crd.errors({**good, "apiVersion": "serving.kserve.io/v1alpha1"}) == []
    no_uri = copy.deepcopy(good)
    del no_uri["spec"]["model"]["uri"]
    assert any("uri" in e for e in kserve_crd.errors(no_uri))
    typo = copy.deepcopy(good)
    typo["spec"]["replica"] = 2
    assert any("replica" in e for e in kserve_crd.errors(typo))


def test_kserves_published_misplaced_logger_sample_fails_the_schema():
    """KServe's website sample with `logger:` under `spec:` is what strict field validation rejects."""
    out = render_files([FIXTURES / "website-basic-logger-misplaced.yaml"], RenderOptions(target="kserve"))
    (isvc,) = by(out, "InferenceService")
    assert kserve_crd.errors(isvc) == ["spec: Additional properties are not allowed ('logger' was unexpected)"]


# --- the repository's examples and KServe's samples -------------------------------------------

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SAMPLES = sorted(p for p in FIXTURES.glob("kserve-*.yaml"))


def test_the_examples_include_hf_and_llm_inference_service():
    names = {p.name for p in EXAMPLES}
    assert {"hf-llm-inference-service.yaml", "hf-tiny-llm.yaml", "hf-minilm-embedding.yaml"} <= names


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_render_to_manifests_that_apply(example, target, at_root):
    out = render_files([example], RenderOptions(target=target))
    assert_applies(out)
    loaded = load_files([example])
    local = [
        d
        for d in loaded.documents
        if d.spec.kind in CRD_KINDS and "file://" in example.read_text()  # every example names a local model
    ]
    assert local, example
    assert out.copies, "the local model is copied onto a claim"
    for c in out.copies:
        # `make models` built them; only an explainer's background.npz waits for `infertap fit`
        assert c.found or c.source.name == "background.npz", c
        assert c.source.is_absolute() and (not c.found or (ROOT / "models") in c.source.parents), c
        assert any(f"cp {c.source} " in n and f":/data/{c.dest}" in n for n in out.notes), c
    if target == "kserve":
        for m in by(out, "InferenceService") + by(out, "LLMInferenceService"):
            uri = (
                m["spec"]["model"]["uri"]
                if m["kind"] == "LLMInferenceService"
                else m["spec"]["predictor"]["model"]["storageUri"]
            )
            claim, folder = uri.removeprefix("pvc://").split("/", 1)
            assert claim == f"{m['metadata']['name']}-models" and by(out, "PersistentVolumeClaim", claim)
            assert any(c.claim == claim and c.dest.split("/")[0] == folder for c in out.copies)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_kserve_samples_render_to_manifests_that_apply(sample, target):
    out = render_files([sample], RenderOptions(target=target))
    assert_applies(out)
    assert out.copies == []  # remote storage: nothing to copy, no claim
    assert by(out, "PersistentVolumeClaim") == []


# --- a KServe-like spec with a locally built model --------------------------------------------

LOCAL = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  namespace: ml
  annotations:
    infertap.io/explain-sample-rate: "0.1"
spec:
  predictor:
    logger:
      mode: all
      url: kafka://localhost:9092/iris-events
    sklearn:
      storageUri: file://./build/iris/model.joblib
  transformer:
    containers:
      - name: kserve-container
        image: kserve/image-transformer:v0.20.0
        args: [--protocol, v1]
  explainer:
    containers:
      - name: kserve-container
        image: infertap/explainer:0.1.0
        args: [--explainer-type=TreeShap, --background, data/background.npy]
"""


BUILT = ROOT / "models" / "sklearn-iris"  # built by `make models` (a prerequisite of `make test` and `test-fast`)


@pytest.fixture
def local_spec(tmp_path: Path) -> Path:
    """A KServe sample's shape with a model built here: a model file (not a folder), a transformer, a
    white-box explainer whose background lies outside the model's folder."""
    (tmp_path / "build" / "iris").mkdir(parents=True)
    shutil.copy(BUILT / "model.joblib", tmp_path / "build" / "iris" / "model.joblib")
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "background.npy", np.load(BUILT / "reference.npy")[:20])
    path = tmp_path / "specs" / "iris.yaml"
    path.parent.mkdir()
    path.write_text(LOCAL.replace("./build", "../build").replace("data/background", "../data/background"))
    return path


def test_local_model_file_goes_into_a_folder_of_the_claim(local_spec):
    out = render_files([local_spec], RenderOptions(target="kserve"))
    assert_applies(out)
    (isvc,) = by(out, "InferenceService")
    assert isvc["spec"]["predictor"]["sklearn"]["storageUri"] == "pvc://iris-models/iris"  # KServe mounts folders
    (pvc,) = by(out, "PersistentVolumeClaim", "iris-models")
    assert pvc["metadata"]["namespace"] == "ml" and pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    root = local_spec.parent.parent.resolve()
    assert {(c.claim, str(c.source), c.dest) for c in out.copies} == {
        ("iris-models", str(root / "build/iris/model.joblib"), "iris/model.joblib"),
        ("iris-models", str(root / "build/iris/model.joblib"), "explainer/model.joblib"),
        ("iris-models", str(root / "data/background.npy"), "explainer/background.npy"),
    }
    # the white-box explainer gets the model, as `up` gives it; its files come through KServe's STORAGE_URI
    explainer = isvc["spec"]["explainer"]["containers"][0]
    assert explainer["env"] == [{"name": "STORAGE_URI", "value": "pvc://iris-models/explainer"}]
    assert arg(explainer["args"], "--background") == "/mnt/models/background.npy"
    assert arg(explainer["args"], "--storage-uri") == "/mnt/models/model.joblib"
    assert arg(explainer["args"], "--model-format") == "sklearn"
    note = next(n for n in out.notes if "'iris-models'" in n)
    assert f"kubectl -n ml cp {root / 'data/background.npy'} iris-models-copy:/data/explainer/background.npy" in note
    assert "kubectl -n ml exec iris-models-copy -- mkdir -p /data/explainer" in note


def test_transformer_is_kept_for_kserve_and_rendered_standalone(local_spec):
    out = render_files([local_spec], RenderOptions(target="kserve"))
    (isvc,) = by(out, "InferenceService")
    assert isvc["spec"]["transformer"]["containers"][0]["image"] == "kserve/image-transformer:v0.20.0"
    out = render_files([local_spec], RenderOptions(target="standalone"))
    assert_applies(out)
    (dep,) = by(out, "Deployment", "iris-transformer")
    c = container_of(dep)
    assert c["image"] == "kserve/image-transformer:v0.20.0"
    assert arg(c["args"], "--predictor_host") == "iris-predictor.ml.svc.cluster.local"
    assert arg(c["args"], "--model_name") == "iris" and arg(c["args"], "--http_port") == "8080"
    (svc,) = by(out, "Service", "iris-transformer")
    assert svc["spec"]["ports"][0]["targetPort"] == 8080


@pytest.mark.parametrize("target", TARGETS)
def test_a_transformer_without_image_gets_one_warning_line(local_spec, target):
    local_spec.write_text(local_spec.read_text().replace("        image: kserve/image-transformer:v0.20.0\n", ""))
    out = render_files([local_spec], RenderOptions(target=target))
    warnings = [n for n in out.notes if "spec.transformer" in n]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "image" in warnings[0]
    assert by(out, "Deployment", "iris-transformer") == []
    done = CliRunner().invoke(app, ["render", str(local_spec), "--target", target, "--no-dashboards"])
    assert done.exit_code == 0
    lines = [line for line in done.stderr.splitlines() if "spec.transformer" in line]
    assert len(lines) == 1 and lines[0].startswith("note: warning: "), lines  # as the loader's warnings print


@pytest.mark.parametrize("target", TARGETS)
def test_the_explainer_stream_worker_is_rendered(local_spec, target):
    out = render_files([local_spec], RenderOptions(target=target))
    assert_applies(out)
    (dep,) = by(out, "Deployment", "iris-explain-stream")
    c = container_of(dep)
    assert c["command"] == ["python", "-m", "infertap.explainers.stream"]
    from infertap.explainers.stream import parse_args

    stream, explainer, _ = parse_args(c["args"])  # what the container will parse
    assert (stream.bootstrap, stream.source, stream.sample_rate) == ("kafka:9092", "iris-events", 0.1)
    assert explainer.explainer_type == "TreeShap" and explainer.background == "/mnt/models/background.npy"
    assert explainer.predictor_url == "http://iris-predictor.ml.svc.cluster.local"
    assert c["volumeMounts"] == [
        {"name": "models", "mountPath": "/mnt/models", "readOnly": True, "subPath": "explainer"}
    ]
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "models", "persistentVolumeClaim": {"claimName": "iris-models", "readOnly": True}}]


def test_the_stream_worker_reads_the_topic_with_the_loggers_credentials(local_spec):
    secure = "kafka://localhost:9092/iris-events?security_protocol=SASL_SSL&sasl_mechanism=PLAIN&sasl_username=u&sasl_password=s3cret"
    local_spec.write_text(local_spec.read_text().replace("kafka://localhost:9092/iris-events", secure))
    out = render_files([local_spec], RenderOptions(target="kserve"))
    assert_applies(out)
    (dep,) = by(out, "Deployment", "iris-explain-stream")
    assert "s3cret" not in yaml.safe_dump(dep)
    (secret,) = by(out, "Secret", "iris-explain-stream-secrets")
    assert "sasl.password=s3cret" in secret["stringData"].values()
    assert arg(container_of(dep)["args"], "--kafka-config") == "security.protocol=SASL_SSL"


def test_no_stream_worker_without_the_annotation(local_spec):
    local_spec.write_text(
        local_spec.read_text().replace('    infertap.io/explain-sample-rate: "0.1"\n', "    infertap.dev/team: demo\n")
    )
    for target in TARGETS:
        assert by(render_files([local_spec], RenderOptions(target=target)), "Deployment", "iris-explain-stream") == []


def test_a_bad_sample_rate_is_a_sentence(local_spec):
    local_spec.write_text(local_spec.read_text().replace('"0.1"', '"lots"'))
    with pytest.raises(RenderError, match=r"explain-sample-rate.*\(0, 1\]"):
        render_files([local_spec], RenderOptions(target="kserve"))


def test_explainer_files_inside_the_model_folder_share_its_mount(tmp_path, at_root):
    spec = tmp_path / "e.yaml"
    spec.write_text((ROOT / "examples" / "sklearn-iris-monitoring.yaml").read_text())
    out = render_files([spec], RenderOptions(target="kserve"))
    (isvc,) = by(out, "InferenceService")
    explainer = isvc["spec"]["explainer"]["containers"][0]
    assert explainer["env"] == [{"name": "STORAGE_URI", "value": isvc["spec"]["predictor"]["model"]["storageUri"]}]
    assert arg(explainer["args"], "--background") == "/mnt/models/reference.npy"
    assert {c.dest for c in out.copies} == {"sklearn-iris"}  # one copy: the model folder holds reference.npy


# --- refuse, existing claims, spool -----------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_local_models_refuse_names_the_field_and_exits_2(local_spec, target):
    with pytest.raises(
        RenderError,
        match=r"spec\.predictor\.sklearn\.storageUri: 'file://\.\./build/iris/model\.joblib' is a local path",
    ):
        render_files([local_spec], RenderOptions(target=target, local_models="refuse"))
    done = CliRunner().invoke(app, ["render", str(local_spec), "--target", target, "--local-models", "refuse"])
    assert done.exit_code == 2 and "storageUri" in done.stderr and "--local-models pvc" in done.stderr
    done = CliRunner().invoke(app, ["render", str(local_spec), "--local-models", "maybe"])
    assert done.exit_code == 2 and "--local-models" in done.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_a_pvc_uri_needs_its_claim_created_or_named_existing(local_spec, target):
    text = local_spec.read_text().replace("file://../build/iris/model.joblib", "pvc://task-pv-claim/iris")
    local_spec.write_text(text)
    with pytest.raises(
        RenderError, match=r"'task-pv-claim' is not created by these manifests.*--existing-pvc task-pv-claim"
    ):
        render_files([local_spec], RenderOptions(target=target))
    done = CliRunner().invoke(app, ["render", str(local_spec), "--target", target])
    assert done.exit_code == 2 and "--existing-pvc task-pv-claim" in done.stderr
    out = render_files([local_spec], RenderOptions(target=target, existing_pvcs=frozenset({"task-pv-claim"})))
    assert_applies(out, existing=frozenset({"task-pv-claim"}))
    assert by(out, "PersistentVolumeClaim", "task-pv-claim") == []


def test_an_existing_claim_takes_the_local_files_and_is_not_created(local_spec):
    out = render_files([local_spec], RenderOptions(target="kserve", existing_pvcs=frozenset({"iris-models"})))
    assert_applies(out, existing=frozenset({"iris-models"}))
    assert by(out, "PersistentVolumeClaim") == []
    assert any("'iris-models'" in n and "exists already (--existing-pvc)" in n for n in out.notes)


def test_storage_class_and_size(local_spec):
    out = render_files([local_spec], RenderOptions(target="kserve", storage_class="fast-rwo"))
    (pvc,) = by(out, "PersistentVolumeClaim", "iris-models")
    assert pvc["spec"]["storageClassName"] == "fast-rwo" and pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"


@pytest.mark.parametrize("target", TARGETS)
def test_the_spool_is_an_empty_dir_that_survives_container_restarts_or_a_claim(local_spec, target):
    logger = "iris-predictor" if target == "standalone" else "iris-infertap-ingest"
    out = render_files([local_spec], RenderOptions(target=target))
    (dep,) = by(out, "Deployment", logger)
    assert {"name": "spool", "emptyDir": {"sizeLimit": "1Gi"}} in dep["spec"]["template"]["spec"]["volumes"]
    assert any("emptyDir" in n and "restarts of the logger container" in n for n in out.notes)
    out = render_files([local_spec], RenderOptions(target=target, spool="pvc", spool_size="5Gi"))
    assert_applies(out)
    (dep,) = by(out, "Deployment", logger)
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    assert {"name": "spool", "persistentVolumeClaim": {"claimName": f"{logger}-spool"}} in volumes
    assert dep["spec"]["strategy"] == {"type": "Recreate"} and dep["spec"]["replicas"] == 1
    (pvc,) = by(out, "PersistentVolumeClaim", f"{logger}-spool")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_cli_flags_reach_the_manifests(local_spec, tmp_path):
    out_file = tmp_path / "m.yaml"
    done = CliRunner().invoke(
        app,
        [
            "render",
            str(local_spec),
            "--target",
            "kserve",
            "--spool",
            "pvc",
            "--storage-class",
            "std",
            "-o",
            str(out_file),
        ],
    )
    assert done.exit_code == 0, done.output
    docs = list(yaml.safe_load_all(out_file.read_text()))
    pvcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert set(pvcs) == {"iris-models", "iris-infertap-ingest-spool"}
    assert {p["spec"]["storageClassName"] for p in pvcs.values()} == {"std"}
    assert "kubectl -n ml cp" in done.stderr


# --- paths resolve as `up` resolves them ------------------------------------------------------


def test_paths_resolve_the_same_way_in_up_and_render(tmp_path, monkeypatch):
    """One rule (stack/specs/paths.py): beside the YAML file first, then the current folder."""
    x = np.load(BUILT / "reference.npy")
    work, specs = tmp_path / "work", tmp_path / "specs"
    (work / "models" / "m").mkdir(parents=True)
    specs.mkdir()
    shutil.copy(BUILT / "model.joblib", work / "models" / "m" / "model.joblib")
    np.save(work / "ref.npy", x[:10])
    spec = specs / "s.yaml"
    spec.write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: m}\n"
        "spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: file://models/m}}}\n---\n"
        "apiVersion: infertap.dev/v1alpha1\nkind: Detector\nmetadata: {name: d}\n"
        "spec: {source: {inferenceService: m}, features: [{name: a}, {name: b}, {name: c}, {name: e}],"
        " detector: {name: ScipyKS, reference: ref.npy}}\n"
    )
    monkeypatch.chdir(work)  # found in the current folder: nothing beside the YAML
    docs = load_files([spec]).documents

    def both():
        up_model = resolve_storage("file://models/m", spec.parent, "x")
        up_reference = docs[1].spec.to_settings(spec.parent).reference
        out = render_files([spec], RenderOptions(target="kserve"))
        (copied,) = out.copies
        (cm,) = by(out, "ConfigMap", "d-reference")
        return up_model, copied.source, Path(up_reference).resolve(), cm["binaryData"]["ref.npy"]

    up_model, render_model, up_ref, ref_data = both()
    assert up_model == render_model == (work / "models" / "m").resolve()
    assert up_ref == (work / "ref.npy").resolve()
    import base64

    assert base64.b64decode(ref_data) == (work / "ref.npy").read_bytes()
    # now beside the YAML too: both pick that one
    (specs / "models" / "m").mkdir(parents=True)
    shutil.copy(BUILT / "model.joblib", specs / "models" / "m" / "model.joblib")
    np.save(specs / "ref.npy", x[10:20])
    up_model, render_model, up_ref, ref_data = both()
    assert up_model == render_model == (specs / "models" / "m").resolve()
    assert up_ref == (specs / "ref.npy").resolve()
    assert base64.b64decode(ref_data) == (specs / "ref.npy").read_bytes()
    # neither: up refuses naming both places, render says where it expected the model
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(specs / "models")
    with pytest.raises(PlanError, match="no model at"):
        resolve_storage("file://models/m", spec.parent, "x")
    out = render_files([spec], RenderOptions(target="kserve", dashboards=False))
    (copied,) = out.copies
    assert copied.source == specs / "models" / "m" and not copied.found
    assert any("not found on this machine" in n and str(specs / "models" / "m") in n for n in out.notes)


def test_render_output_is_json_serialisable_and_round_trips(local_spec):
    """What `write` prints loads back as the same manifests (no Path objects or anchors in them)."""
    out = render_files([local_spec], RenderOptions(target="kserve"))
    assert list(yaml.safe_load_all(out.to_yaml())) == json.loads(json.dumps(out.manifests))


def test_the_render_check_fires_on_a_local_path_it_does_not_move(local_spec):
    """A transformer's local STORAGE_URI: KServe mounts it (kserve: moved onto the claim); a standalone
    Deployment would not, so render stops there with a sentence naming the field."""
    text = local_spec.read_text().replace(
        "        args: [--protocol, v1]\n",
        "        args: [--protocol, v1]\n        env: [{name: STORAGE_URI, value: 'file://../build/iris'}]\n",
    )
    local_spec.write_text(text)
    out = render_files([local_spec], RenderOptions(target="kserve"))
    assert_applies(out)
    (isvc,) = by(out, "InferenceService")
    assert isvc["spec"]["transformer"]["containers"][0]["env"] == [
        {"name": "STORAGE_URI", "value": "pvc://iris-models/iris-2"}  # "iris" holds the predictor's model file alone
    ]
    assert any(
        c.dest == "iris-2" and c.source == (local_spec.parent.parent / "build/iris").resolve() for c in out.copies
    )
    with pytest.raises(
        RenderError,
        match=r"iris-transformer.*containers\[0\]\.env\[0\]\.value: 'file://\.\./build/iris' is a local path",
    ):
        render_files([local_spec], RenderOptions(target="standalone"))


def test_detector_data_too_large_for_a_configmap_goes_on_a_created_claim(tmp_path):
    np.save(tmp_path / "big.npy", np.zeros((300_000, 1), dtype="float32"))  # 1.2 MB > a ConfigMap
    spec = tmp_path / "d.yaml"
    spec.write_text(
        "apiVersion: infertap.dev/v1alpha1\nkind: Detector\nmetadata: {name: d, namespace: ml}\n"
        "spec: {source: {inferenceService: m}, features: [{name: a}], detector: {name: ScipyKS, reference: big.npy}}\n"
    )
    out = render_files([spec], RenderOptions(dashboards=False))
    assert_applies(out)
    (pvc,) = by(out, "PersistentVolumeClaim", "d-data")
    assert pvc["metadata"]["namespace"] == "ml"
    assert [(c.claim, c.source, c.dest) for c in out.copies] == [
        ("d-data", (tmp_path / "big.npy").resolve(), "big.npy")
    ]
    settings = json.loads(container_of(by(out, "Deployment", "d")[0])["args"][0])
    assert settings["reference"] == "/etc/infertap/reference/big.npy"
    with pytest.raises(RenderError, match=r"spec\.detector\.reference: 'big\.npy' is a local path"):
        render_files([spec], RenderOptions(local_models="refuse"))


def test_llm_inference_service_v1alpha1_validates_against_its_version(tmp_path, at_root):
    text = (ROOT / "examples" / "hf-llm-inference-service.yaml").read_text()
    spec = tmp_path / "llm.yaml"
    spec.write_text(
        text.replace("serving.kserve.io/v1alpha2", "serving.kserve.io/v1alpha1").replace(
            "./models", str(ROOT / "models")
        )
    )
    out = render_files([spec], RenderOptions(target="kserve"))
    assert_applies(out)
    (llm,) = by(out, "LLMInferenceService")
    assert (
        llm["apiVersion"] == "serving.kserve.io/v1alpha1"
        and llm["spec"]["model"]["uri"] == "pvc://tiny-llm-models/tiny-llm"
    )
    llm["spec"]["model"]["uri"] = 7
    assert any("uri" in e for e in kserve_crd.errors(llm))
