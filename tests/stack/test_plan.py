"""The planner: specs to processes, ports, logger settings, the embedded broker decision."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from cli_support import free_port

from infertap.serving.settings import ServerSettings
from infertap.sidecar.settings import LoggerSettings
from infertap.stack.plan import PlanError, PlanOptions, make_plan, resolve_storage
from infertap.stack.specs import SpecError, load_files

SERVICE = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
  namespace: fraud
  annotations: {{team: risk, cost-centre: "42"}}
spec:
  predictor:
    model:
      modelFormat: {{name: {fmt}, version: "2"}}
      storageUri: {uri}
{logger}"""


def service(name="iris", fmt="sklearn", uri="m/model.joblib", logger=""):
    return SERVICE.format(name=name, fmt=fmt, uri=uri, logger=logger)


@pytest.fixture
def specdir(tmp_path: Path) -> Path:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.joblib").write_bytes(b"x")
    return tmp_path


def plan_of(folder: Path, text: str, **options):
    path = folder / "spec.yaml"
    path.write_text(text)
    return make_plan(load_files([path]).documents, PlanOptions(**options))


def base_port() -> int:
    """A port with a few free ones after it (collisions only make the allocator skip)."""
    return free_port()


def test_predictors_take_consecutive_ports_and_typed_settings(specdir):
    port = base_port()
    plan = plan_of(specdir, service("iris") + "---\n" + service("two", uri=f"file://{specdir}/m"), predictor_port=port)
    first, second = plan.by_role("predictor")
    assert (first.name, second.name) == ("iris/predictor", "two/predictor")
    assert second.port > first.port >= port
    assert isinstance(first.settings, ServerSettings)
    model = first.settings.models[0]
    assert (model.name, model.format, model.version, model.uri) == (
        "iris",
        "sklearn",
        "2",
        str(specdir / "m" / "model.joblib"),
    )
    assert second.settings.models[0].uri == str(specdir / "m")
    assert first.ready_url == f"http://127.0.0.1:{first.port}/v2/health/ready"
    assert plan.by_role("logger") == [] and plan.by_role("broker") == []


def test_a_port_in_use_is_an_error_with_a_sentence(specdir):
    """Issue 14: never a silent move; the sentence names the port, who wanted it and the ways out."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PlanError) as caught:
            plan_of(specdir, service(), predictor_port=port)
    text = str(caught.value)
    assert f"port {port} on 127.0.0.1 (for the predictor of iris) is already in use" in text
    assert "--predictor-port" in text and "--auto-ports" in text


def test_auto_ports_moves_a_port_in_use_and_says_so(specdir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        plan = plan_of(specdir, service(), predictor_port=port, auto_ports=True)
    [predictor] = plan.by_role("predictor")
    assert predictor.port != port
    moved = f"the predictor of iris: port {port} is in use, moved to {predictor.port} (--auto-ports)"
    assert moved in plan.notes


def test_logger_settings_come_from_the_block(specdir):
    bport = free_port()
    logger = f"""\
    logger:
      mode: request
      url: kafka://127.0.0.1:{bport}
      metadataHeaders: [x-request-id]
      metadataAnnotations: [team, missing]
"""
    plan = plan_of(specdir, service(logger=logger), logger_port=base_port(), spool_root=specdir / "spool")
    [broker], [predictor], [sidecar] = plan.by_role("broker"), plan.by_role("predictor"), plan.by_role("logger")
    assert [p.role for p in plan.processes] == ["broker", "predictor", "logger"]  # start order
    s = sidecar.settings
    assert isinstance(s, LoggerSettings)
    assert s.log_url == [f"kafka://127.0.0.1:{bport}/iris-events"]  # default topic <isvc>-events
    assert (s.log_mode, s.inference_service, s.namespace, s.component) == ("request", "iris", "fraud", "predictor")
    assert (s.component_host, s.component_port) == (predictor.host, predictor.port)
    assert s.metadata_headers == ["x-request-id"]
    assert s.metadata_annotations == {"team": "risk"}
    assert s.source_uri == f"http://127.0.0.1:{sidecar.port}/"
    assert s.spool_dir == specdir / "spool" / "iris-predictor"
    assert any("'missing' is not among metadata.annotations" in n for n in plan.notes)
    assert broker.port == bport and broker.argv[1] == "broker"


def test_no_broker_when_one_listens_or_when_told(specdir, broker):
    logger = f"    logger:\n      url: kafka://localhost:{broker.port}/t\n"
    assert plan_of(specdir, service(logger=logger)).by_role("broker") == []
    free = free_port()
    logger = f"    logger:\n      url: kafka://localhost:{free}/t\n"
    off = plan_of(specdir, service(logger=logger), start_broker=False)
    assert off.by_role("broker") == []
    assert any(f"nothing listens on 127.0.0.1:{free}" in note for note in off.notes)
    remote = "    logger:\n      url: kafka://kafka.example:9092/t\n"
    assert plan_of(specdir, service(logger=remote)).by_role("broker") == []


def test_broker_port_moves_local_kafka_urls(specdir):
    port = free_port()
    logger = "    logger:\n      url: kafka://localhost:9092/topic-a?acks=all\n"
    plan = plan_of(specdir, service(logger=logger), broker_port=port)
    assert plan.by_role("logger")[0].settings.log_url == [f"kafka://127.0.0.1:{port}/topic-a?acks=all"]
    assert [b.port for b in plan.by_role("broker")] == [port]


def test_logger_without_url_goes_to_local_kafka(specdir):
    plan = plan_of(specdir, service(logger="    logger:\n      mode: all\n"), start_broker=False)
    assert plan.by_role("logger")[0].settings.log_url == ["kafka://127.0.0.1:9092/iris-events"]


def test_http_sink_is_passed_through(specdir):
    plan = plan_of(specdir, service(logger="    logger:\n      url: http://dumper.example/\n"))
    assert plan.by_role("logger")[0].settings.log_url == ["http://dumper.example/"]
    assert plan.by_role("broker") == []


@pytest.mark.parametrize(
    "text, message",
    [
        (service(uri="gs://bucket/model"), "spec.predictor.model.storageUri: only local storage runs locally"),
        (service(uri="s3://bucket/model"), "only local storage runs locally"),
        (service(uri="nowhere/model.joblib"), "spec.predictor.model.storageUri: no model at"),
        (
            service(fmt="tensorflow"),
            "spec.predictor.model.modelFormat.name: infertap serves sklearn, xgboost, lightgbm, pytorch, onnx, huggingface locally (got 'tensorflow')",
        ),
        (
            service(logger="    logger:\n      url: s3://logs\n"),
            "spec.predictor.logger.url: s3:// is KServe's blob-storage sink",
        ),
    ],
)
def test_what_cannot_run_locally_is_named(specdir, text, message):
    with pytest.raises(PlanError) as err:
        plan_of(specdir, text)
    assert "spec.yaml: document 1 (InferenceService iris): " in str(err.value)
    assert message in str(err.value)


def test_storage_is_looked_up_beside_the_yaml_then_in_cwd(tmp_path, monkeypatch):
    beside, cwd = tmp_path / "specs", tmp_path / "work"
    (beside / "models").mkdir(parents=True)
    (cwd / "other").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    assert resolve_storage("models", beside, "w") == beside / "models"
    assert resolve_storage("file://./other", beside, "w") == cwd / "other"
    assert resolve_storage(f"file://{beside}/models", Path("/"), "w") == beside / "models"


def test_children_get_their_settings_as_json_in_the_environment(specdir):
    [predictor] = plan_of(specdir, service()).by_role("predictor")
    assert predictor.argv[1:] == ["-m", "infertap.stack.runner", "serving"]  # no settings on the command line
    payload = predictor.env["INFERTAP_SETTINGS"]
    assert ServerSettings.model_validate_json(payload) == predictor.settings
    assert json.loads(payload)["models"][0]["name"] == "iris"
    assert os.path.isabs(predictor.argv[0])


def test_example_with_logger_block_plans(models_dir, monkeypatch):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # the example's file://./models/... is relative to the repository root
    docs = load_files([root / "examples" / "sklearn-iris-logger.yaml"]).documents
    plan = make_plan(docs, PlanOptions(start_broker=False))
    assert plan.by_role("predictor")[0].settings.models[0].uri == str((models_dir / "sklearn-iris").resolve())
    s = plan.by_role("logger")[0].settings
    assert s.log_url == ["kafka://127.0.0.1:9092/sklearn-iris-events"]
    assert s.metadata_headers == ["x-request-id", "x-b3-traceid"]
    assert s.metadata_annotations == {"infertap.dev/team": "demo"}


def _monitoring_docs(text: str | None = None):
    root = Path(__file__).resolve().parents[2]
    path = root / "examples" / "sklearn-iris-monitoring.yaml"
    if text is None:
        return load_files([path]).documents
    copy = root / "examples" / f".test-{os.getpid()}.yaml"  # beside the original: same relative paths
    copy.write_text(text)
    try:
        return load_files([copy]).documents
    finally:
        copy.unlink()


def test_explain_sample_annotation_starts_the_stream_worker(models_dir, monkeypatch):
    from infertap.stack.runner import explain_stream_settings

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    plan = make_plan(_monitoring_docs(), PlanOptions(start_broker=False, explain_stream_port=0))
    [stream] = plan.by_role("explain-stream")
    [explainer] = plan.by_role("explainer")
    assert stream.argv[1:] == ["-m", "infertap.stack.runner", "explain-stream"]
    settings, explainer_settings = explain_stream_settings(stream.env["INFERTAP_SETTINGS"])
    assert (settings.bootstrap, settings.source, settings.target) == (
        "127.0.0.1:9092",
        "sklearn-iris-events",
        "sklearn-iris-explanations",
    )
    assert settings.sample_rate == 0.05 and settings.metrics_port == stream.port
    assert explainer_settings == explainer.settings  # the same explainer as the :explain endpoint


@pytest.mark.parametrize("value", ["0", "1.5", "often"])
def test_bad_explain_sample_rate_names_the_annotation(models_dir, monkeypatch, value):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    text = (
        (root / "examples" / "sklearn-iris-monitoring.yaml")
        .read_text()
        .replace('explain-sample-rate: "0.05"', f'explain-sample-rate: "{value}"')
    )
    with pytest.raises(PlanError, match=r'metadata.annotations\["infertap.io/explain-sample-rate"\]: a share'):
        make_plan(_monitoring_docs(text), PlanOptions(start_broker=False))


def test_no_stream_worker_without_the_annotation(models_dir, monkeypatch):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    text = (
        (root / "examples" / "sklearn-iris-monitoring.yaml")
        .read_text()
        .replace('infertap.io/explain-sample-rate: "0.05"', "infertap.dev/team: demo")
    )
    plan = make_plan(_monitoring_docs(text), PlanOptions(start_broker=False))
    assert plan.by_role("explain-stream") == [] and len(plan.by_role("explainer")) == 1


def _secure_monitoring_plan(monkeypatch, password: str):
    """The monitoring example with its logger writing over SASL_SSL with `password`."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    secure = (
        "kafka://localhost:9092/sklearn-iris-events?security_protocol=SASL_SSL&sasl_mechanism=PLAIN"
        f"&sasl_username=u&sasl_password={password}&ssl_cafile=/etc/kafka/ca.pem"
    )
    text = (
        (root / "examples" / "sklearn-iris-monitoring.yaml")
        .read_text()
        .replace("url: kafka://localhost:9092/sklearn-iris-events", f"url: {secure}")
    )
    return make_plan(_monitoring_docs(text), PlanOptions(start_broker=False, explain_stream_port=0))


def test_stream_worker_reads_with_the_loggers_tls_and_sasl_options(models_dir, monkeypatch):
    from infertap.stack.runner import explain_stream_settings

    plan = _secure_monitoring_plan(monkeypatch, "p")
    [stream] = plan.by_role("explain-stream")
    settings, _ = explain_stream_settings(stream.env["INFERTAP_SETTINGS"])
    assert settings.kafka_config == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/etc/kafka/ca.pem",
    }


def test_secrets_stay_off_every_command_line(models_dir, monkeypatch):
    """`ps` shows every user the children's argv; the settings (with the SASL password) go in their env."""
    plan = _secure_monitoring_plan(monkeypatch, "s3cret")
    roles = {p.role for p in plan.processes}
    assert {"predictor", "logger", "explainer", "explain-stream", "detector"} <= roles
    for process in plan.processes:
        assert not any("s3cret" in arg for arg in process.argv), process.name
        if process.role != "broker":
            assert process.argv[1:] == ["-m", "infertap.stack.runner", process.argv[-1]], process.name
            assert json.loads(process.env["INFERTAP_SETTINGS"]), process.name
    carriers = {p.role for p in plan.processes if "s3cret" in p.env.get("INFERTAP_SETTINGS", "")}
    assert {"logger", "explain-stream", "detector"} <= carriers
    # what `up` prints (its table's notes, the plan's notes) shows no password either
    assert not any("s3cret" in text for text in [p.note for p in plan.processes] + plan.notes)
    assert "sasl_password=***" in plan.by_role("logger")[0].note


def test_detector_replicas_share_a_group_with_a_port_each(models_dir, monkeypatch):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    text = (
        (root / "examples" / "sklearn-iris-monitoring.yaml")
        .read_text()
        .replace("  window: {size: 150}\n", "  window: {size: 150}\n  replicas: 3\n", 1)
    )
    plan = make_plan(_monitoring_docs(text), PlanOptions(start_broker=False, detector_port=0))
    drift = [p for p in plan.by_role("detector") if p.name.startswith("iris-drift/")]
    assert [p.name for p in drift] == ["iris-drift/detector", "iris-drift/detector-1", "iris-drift/detector-2"]
    assert len({p.settings.consumer_group for p in drift}) == 1  # one group: Kafka shares the partitions
    assert len({p.port for p in drift}) == 3 and all(p.settings.metrics_port == p.port for p in drift)
    assert len([p for p in plan.by_role("detector") if p.name.startswith("iris-outliers/")]) == 1


def test_detector_replicas_need_kafka_and_no_shared_state(models_dir, monkeypatch):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    base = (root / "examples" / "sklearn-iris-monitoring.yaml").read_text()
    for extra, complaint in [
        ("  replicas: 2\n  stateDir: state\n", "cannot share one stateDir"),
        ("  replicas: 0\n", "greater than or equal to 1"),
    ]:
        text = base.replace("  window: {size: 150}\n", "  window: {size: 150}\n" + extra, 1)
        with pytest.raises(SpecError, match=complaint):
            make_plan(_monitoring_docs(text), PlanOptions(start_broker=False))


def test_detectors_read_with_the_loggers_tls_and_sasl_options(models_dir, monkeypatch):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    secure = "kafka://localhost:9092/sklearn-iris-events?security_protocol=SSL&ssl_cafile=/etc/kafka/ca.pem"
    text = (
        (root / "examples" / "sklearn-iris-monitoring.yaml")
        .read_text()
        .replace("url: kafka://localhost:9092/sklearn-iris-events", f"url: {secure}")
    )
    # one detector names its own properties: they win
    text = text.replace(
        "source: {inferenceService: sklearn-iris, events: request}",
        "source: {inferenceService: sklearn-iris, events: request, kafkaConfig: {security.protocol: SSL, "
        "ssl.ca.location: /mine.pem}}",
        1,
    )
    plan = make_plan(_monitoring_docs(text), PlanOptions(start_broker=False, detector_port=0))
    by_name = {p.name: p.settings.kafka_config for p in plan.by_role("detector")}
    assert by_name == {
        "iris-drift/detector": {"security.protocol": "SSL", "ssl.ca.location": "/mine.pem"},
        "iris-outliers/detector": {"security.protocol": "SSL", "ssl.ca.location": "/etc/kafka/ca.pem"},
    }
