"""Loading InferenceService YAML: KServe's samples unchanged, warnings and errors with paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from infertap.stack.specs import SpecError, load_file, load_files, loader, register_kind
from infertap.stack.specs.logger_url import KafkaURL

pytestmark = pytest.mark.fast  # starts no process (make test-fast)

FIXTURES = Path(__file__).parent / "fixtures"

ISVC = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
spec:
  predictor:
    model:
      modelFormat: {{name: sklearn}}
      storageUri: model.joblib
{extra}"""


def isvc(name: str = "sklearn-iris", extra: str = "") -> str:
    return ISVC.format(name=name, extra=extra)


@pytest.mark.parametrize(
    "sample, name, fmt, path",
    [
        ("kserve-basic-logger.yaml", "sklearn-iris", "sklearn", "spec.predictor.sklearn"),
        ("kserve-basic-logger-modelformat.yaml", "sklearn-iris", "sklearn", "spec.predictor.model"),
        ("kserve-request-header-logger.yaml", "sklearn-iris", "sklearn", "spec.predictor.model"),
        ("kserve-sklearn-iris.yaml", "sklearn-iris", "sklearn", "spec.predictor.model"),
        ("kserve-sklearn-v2.yaml", "sklearn-irisv2", "sklearn", "spec.predictor.sklearn"),
        ("kserve-sklearn-v2-runtime.yaml", "sklearn-v2-iris", "sklearn", "spec.predictor.model"),
        ("kserve-blob-storage-logger.yaml", "sklearn-iris", "sklearn", "spec.predictor.model"),
    ],
)
def test_kserve_samples_load_unchanged_without_warnings(sample, name, fmt, path):
    result = load_file(FIXTURES / sample)
    assert result.warnings == []
    [doc] = result.documents
    assert doc.spec.name == name and doc.spec.metadata.namespace == "default"
    found_fmt, found_path, model = doc.spec.spec.predictor.model_with_path()
    assert (found_fmt, found_path) == (fmt, path)
    assert model.storage_uri.startswith("gs://")


def test_logger_blocks_of_the_samples():
    basic = load_file(FIXTURES / "kserve-basic-logger.yaml").documents[0].spec
    [(component, block)] = basic.loggers()
    assert (component, block.mode, block.url) == ("predictor", "all", "http://message-dumper.default/")
    headers = load_file(FIXTURES / "kserve-request-header-logger.yaml").documents[0].spec.spec.predictor.logger
    assert headers.metadata_headers == ["x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-flags"]
    blob = load_file(FIXTURES / "kserve-blob-storage-logger.yaml").documents[0].spec
    assert blob.spec.predictor.logger.storage["parameters"] == {"type": "s3", "format": "json"}
    assert blob.spec.predictor.model_extra["minReplicas"] == 1  # kept


def test_v2_protocol_is_read():
    v2 = load_file(FIXTURES / "kserve-sklearn-v2-runtime.yaml").documents[0].spec.spec.predictor.model
    assert (v2.protocol_version, v2.runtime) == ("v2", "kserve-sklearnserver")
    shorthand = load_file(FIXTURES / "kserve-sklearn-v2.yaml").documents[0].spec.spec.predictor.sklearn
    assert shorthand.protocol_version == "v2"


def test_misplaced_logger_of_the_website_sample_is_warned_about_with_its_path():
    result = load_file(FIXTURES / "website-basic-logger-misplaced.yaml")
    assert len(result.warnings) == 1
    assert "document 1 (InferenceService sklearn-iris): spec.logger: unknown field" in result.warnings[0]
    doc = result.documents[0].spec
    assert doc.loggers() == []  # not a predictor logger, as in KServe
    assert doc.spec.model_extra["logger"]["mode"] == "all"  # kept


def test_unknown_fields_are_kept_and_warned_with_paths(write_yaml):
    path = write_yaml(
        isvc(
            extra="""\
      futureField: 1
      resources: {limits: {cpu: "1"}}
    logger:
      url: http://sink/
      colour: blue
    containers: [{name: c, image: x}]
  canary: true
status: {url: http://x}
"""
        )
    )
    result = load_file(path)
    paths = sorted(w.split(": ")[2] for w in result.warnings)
    assert paths == ["spec.canary", "spec.predictor.logger.colour", "spec.predictor.model.futureField"]
    assert all(w.startswith(f"{path}: document 1 (InferenceService sklearn-iris): ") for w in result.warnings)
    model = result.documents[0].spec.spec.predictor.model
    assert model.model_extra["futureField"] == 1


def test_omitted_mode_defaults_to_all(write_yaml):
    path = write_yaml(isvc(extra="    logger:\n      url: http://sink/\n"))
    assert load_file(path).documents[0].spec.spec.predictor.logger.mode == "all"


def test_bad_mode_names_file_document_and_path(write_yaml):
    path = write_yaml(isvc(extra="    logger:\n      mode: everything\n"), name="x.yaml")
    with pytest.raises(SpecError) as err:
        load_file(path)
    assert str(err.value) == (
        f"{path}: document 1 (InferenceService sklearn-iris): spec.predictor.logger.mode: "
        "must be one of all, request, response (got 'everything')"
    )


@pytest.mark.parametrize(
    "extra, expected",
    [
        (
            "    logger:\n      url: ftp://sink\n",
            "spec.predictor.logger.url: must be an http(s)://, kafka://host:port/topic or file:// URL (got 'ftp://sink')",
        ),
        (
            "    logger:\n      url: kafka://host:notaport/t\n",
            "spec.predictor.logger.url: kafka URL has a bad port 'notaport'",
        ),
        (
            "    logger:\n      metadataHeaders: x-request-id\n",
            "spec.predictor.logger.metadataHeaders: input should be a valid list",
        ),
    ],
)
def test_invalid_logger_fields(write_yaml, extra, expected):
    with pytest.raises(SpecError, match="document 1") as err:
        load_file(write_yaml(isvc(extra=extra)))
    assert expected in str(err.value)


def test_errors_of_several_documents_are_all_reported(write_yaml):
    text = (
        isvc("Bad_Name")
        + "---\n"
        + "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: b}\nspec: {}\n"
    )
    with pytest.raises(SpecError) as err:
        load_file(write_yaml(text))
    lines = str(err.value).splitlines()
    assert len(lines) == 2
    assert "document 1 (InferenceService Bad_Name): metadata.name: must be a DNS-1035 label" in lines[0]
    assert lines[1].endswith("document 2 (InferenceService b): spec.predictor: required field is missing")


def test_unknown_kind_and_wrong_api_version(write_yaml):
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n" + isvc().replace(
        "serving.kserve.io/v1beta1", "serving.kserve.io/v1alpha1"
    )
    with pytest.raises(SpecError) as err:
        load_file(write_yaml(text))
    message = str(err.value)
    assert (
        "document 1 (Service s): unknown kind 'Service' (apiVersion 'v1'); infertap reads InferenceService" in message
    )
    assert (
        "document 2 (InferenceService sklearn-iris): apiVersion: InferenceService must be serving.kserve.io/v1beta1"
        in message
    )


def test_new_kinds_register_without_touching_the_loader(write_yaml, monkeypatch):
    monkeypatch.setattr(loader, "_KINDS", dict(loader._KINDS))  # registry restored afterwards

    class Meta(BaseModel):
        name: str

    class Widget(BaseModel):
        api_version: str = ""
        kind: str
        metadata: Meta
        size: int

    register_kind("TestWidget", "example.dev/v1")(Widget)
    text = isvc() + "---\napiVersion: example.dev/v1\nkind: TestWidget\nmetadata: {name: w}\nsize: 3\n---\n"
    result = load_file(write_yaml(text))
    assert [d.spec.kind for d in result.documents] == ["InferenceService", "TestWidget"]
    assert result.of_kind("TestWidget")[0].spec.size == 3


def test_invalid_yaml_names_the_line(write_yaml):
    with pytest.raises(SpecError, match=r"not valid YAML \(line 3, column"):
        load_file(write_yaml("apiVersion: x\nkind: y\n  bad: [indent\n"))


def test_duplicate_names_across_files_are_refused(write_yaml):
    a, b = write_yaml(isvc(), "a.yaml"), write_yaml(isvc(), "b.yaml")
    with pytest.raises(SpecError, match="metadata.name: 'sklearn-iris' is already used by .*a.yaml: document 1"):
        load_files([a, b])


def test_missing_file(tmp_path: Path):
    with pytest.raises(SpecError, match="nope.yaml: cannot read"):
        load_files([tmp_path / "nope.yaml"])


def test_legacy_kfserving_group_loads_with_a_warning(write_yaml):
    result = load_file(write_yaml(isvc().replace("serving.kserve.io", "serving.kubeflow.org")))
    assert result.documents[0].spec.name == "sklearn-iris"
    assert any("KFServing's old group" in w for w in result.warnings)


def test_kafka_urls():
    url = KafkaURL.parse("kafka://a:1,b:2/topic-x?acks=all")
    assert (url.bootstrap, url.topic, url.query, url.is_local) == ("a:1,b:2", "topic-x", "acks=all", False)
    local = KafkaURL.parse("kafka://localhost")
    assert (local.hosts, local.topic, local.is_local) == ((("localhost", 9092),), None, True)
    assert str(local.with_topic("iris-events").with_port(19092)) == "kafka://127.0.0.1:19092/iris-events"
    with pytest.raises(ValueError, match="names no broker"):
        KafkaURL.parse("kafka:///topic")
