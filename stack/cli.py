"""The `infertap` command line.

Verbs: `up` (everything an InferenceService YAML describes), `serve` (one model server),
`logger` (one logger sidecar, flags named like KServe's agent), `detect` (one detector
worker from a Detector document), `tail` (events on a topic), `broker` (the embedded
Kafka-protocol broker). Bad settings exit with code 2 and a
sentence, never a traceback.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic import BaseModel, ValidationError

from infertap.stack.specs.loader import format_errors

app = typer.Typer(
    name="infertap",
    no_args_is_help=True,
    add_completion=False,
    help="Monitor and explain ML models: a logger sidecar taps inference traffic into Kafka as CloudEvents.",
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` to stderr and exit with `code` (2: bad input)."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def build_settings(model: type[BaseModel], flags: dict[str, str], **values: Any) -> BaseModel:
    """Validate settings; on error exit 2 naming the offending flag (`flags` maps fields to flags)."""
    try:
        return model(**values)
    except ValidationError as exc:
        lines = []
        for line in format_errors(exc):
            field, _, sentence = line.partition(": ")
            flag = next(
                (
                    f
                    for key, f in flags.items()
                    if field == key or field.startswith(key + "[") or field.endswith("." + key)
                ),
                field,
            )
            lines.append(f"{flag}: {sentence}")
        fail("invalid settings: " + "; ".join(lines))


def split_list(values: list[str] | None) -> list[str]:
    """Repeatable flags that also take comma-separated lists, as KServe's agent does."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def key_values(values: list[str], flag: str) -> dict[str, str]:
    """`KEY=VALUE` flags as a dict; exit 2 naming the malformed ones."""
    bad = [v for v in values if "=" not in v or not v.split("=", 1)[0].strip()]
    if bad:
        fail(f"{flag} wants KEY=VALUE, got {', '.join(map(repr, bad))}")
    return dict(v.split("=", 1) for v in values)


# --- up ------------------------------------------------------------------------------------


@app.command()
def up(
    files: list[Path] = typer.Argument(
        ..., metavar="FILE", help="InferenceService YAML files (several documents per file are fine)."
    ),
    log_dir: Path = typer.Option(
        Path(".infertap/logs"), help="Folder for one log file per child, processes.json and the loggers' spools."
    ),
    predictor_port: int = typer.Option(
        8080, help="Port of the first model server; more take the next free ports (0: any free port)."
    ),
    logger_port: int = typer.Option(
        9081, help="Port of the first logger sidecar; more take the next free ports (0: any free port)."
    ),
    broker_port: int | None = typer.Option(
        None,
        help="Point every local kafka:// URL at 127.0.0.1:PORT (where the embedded broker starts if nothing listens).",
    ),
    no_broker: bool = typer.Option(
        False, "--no-broker", help="Never start the embedded broker; loggers spool until a broker appears."
    ),
    detector_port: int = typer.Option(
        9102, help="Metrics port of the first detector worker; more take the next free ports (0: any free port)."
    ),
    ready_timeout: float = typer.Option(120.0, help="Seconds each child gets to become ready."),
) -> None:
    """Start everything the YAML documents describe: model servers, logger sidecars, broker."""
    from infertap.stack.plan import PlanError, PlanOptions, make_plan
    from infertap.stack.specs import SpecError, load_files
    from infertap.stack.supervisor import Supervisor

    try:
        loaded = load_files(files)
        for warning in loaded.warnings:
            typer.echo(f"warning: {warning}", err=True)
        plan = make_plan(
            loaded.documents,
            PlanOptions(
                predictor_port=predictor_port,
                logger_port=logger_port,
                broker_port=broker_port,
                start_broker=not no_broker,
                spool_root=log_dir.resolve() / "spool",
                detector_port=detector_port,
            ),
        )
    except (SpecError, PlanError) as exc:
        fail(str(exc))
    if not plan.processes:
        fail("nothing to run: no InferenceService in " + ", ".join(map(str, files)))
    raise typer.Exit(Supervisor(plan, log_dir, ready_timeout=ready_timeout).run())


# --- serve ---------------------------------------------------------------------------------

SERVE_FLAGS = {
    "name": "--model-name",
    "format": "--model-format",
    "uri": "--storage-uri",
    "http_port": "--http-port",
    "host": "--host",
    "max_batch_size": "--max-batch-size",
    "max_batch_wait_ms": "--max-batch-wait-ms",
    "models": "--model-name",
}


@app.command()
def serve(
    model_name: str = typer.Option(..., help="Model name in URLs: /v1/models/NAME, /v2/models/NAME."),
    model_format: str = typer.Option(
        ..., help="sklearn, xgboost, lightgbm, pytorch or onnx (KServe modelFormat.name)."
    ),
    storage_uri: str = typer.Option(..., help="file://PATH or PATH: a model file or a folder holding one."),
    http_port: int = typer.Option(8080, help="HTTP port."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all)."),
    predict_proba: bool = typer.Option(
        False, "--predict-proba", help="Reply with class probabilities (KServe's PREDICT_PROBA)."
    ),
    max_batch_size: int = typer.Option(32, help="Dynamic batching: most rows merged into one model call."),
    max_batch_wait_ms: float = typer.Option(2.0, help="Dynamic batching: longest wait for more requests."),
) -> None:
    """Run one model server (V1 and Open Inference Protocol REST) from flags."""
    from infertap.serving.settings import ServerSettings

    settings = build_settings(
        ServerSettings,
        SERVE_FLAGS,
        host=host,
        http_port=http_port,
        models=[
            dict(
                name=model_name,
                format=model_format,
                uri=storage_uri,
                predict_proba=predict_proba,
                max_batch_size=max_batch_size,
                max_batch_wait_ms=max_batch_wait_ms,
            )
        ],
    )
    from infertap.serving.server import run

    run(settings)


# --- logger --------------------------------------------------------------------------------

LOGGER_FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in (
        "port",
        "host",
        "component_host",
        "component_port",
        "log_url",
        "log_mode",
        "source_uri",
        "inference_service",
        "namespace",
        "component",
        "endpoint",
        "metadata_headers",
        "metadata_annotations",
        "explainer_url",
        "kafka_client",
        "spool_dir",
    )
} | {"ingest_auth_token": "--auth-token"}


@app.command("logger")
def logger_cmd(
    port: int = typer.Option(9081, help="Where the sidecar listens (KServe's agent: 9081)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all)."),
    component_host: str = typer.Option("127.0.0.1", help="Host of the model server behind the sidecar."),
    component_port: int = typer.Option(8080, help="Port of the model server behind the sidecar."),
    log_url: list[str] | None = typer.Option(
        None, help="Sink: kafka://host:port[,host:port]/topic[?opts], http(s)://..., file://PATH. Repeat for several."
    ),
    log_mode: str = typer.Option("all", help="all, request or response."),
    source_uri: str = typer.Option("http://localhost:9081/", help="CloudEvent `source`."),
    inference_service: str = typer.Option("", help="`inferenceservicename` extension."),
    namespace: str = typer.Option("default", help="`namespace` extension."),
    component: str = typer.Option("predictor", help="`component` extension: predictor, transformer or explainer."),
    endpoint: str = typer.Option("", help="`endpoint` extension (KServe: default or canary)."),
    metadata_headers: list[str] | None = typer.Option(
        None, help="Request headers copied into `metadata` (repeat or comma-separate)."
    ),
    metadata_annotations: list[str] | None = typer.Option(
        None, help="KEY=VALUE pairs for the `annotations` extension (repeat or comma-separate)."
    ),
    explainer_url: str | None = typer.Option(None, help="Where :explain paths go."),
    kafka_client: str = typer.Option("confluent", help="confluent or kafka-python."),
    spool_dir: Path | None = typer.Option(None, help="Disk spool for events a sink cannot take."),
    auth_token: str | None = typer.Option(
        None,
        help="Bearer token the CloudEvents ingest (POST /) requires, else 401; default $INFERTAP_AUTH_TOKEN. Proxied inference traffic is not checked.",
    ),
) -> None:
    """Run one logger sidecar in front of a model server (flags named like KServe's agent)."""
    from infertap.sidecar.settings import LoggerSettings

    annotations = {}
    for pair in split_list(metadata_annotations):
        key, eq, value = pair.partition("=")
        if not eq or not key:
            fail(f"invalid settings: --metadata-annotations: expected KEY=VALUE (got {pair!r})")
        annotations[key] = value
    values: dict[str, Any] = dict(
        port=port,
        host=host,
        component_host=component_host,
        component_port=component_port,
        log_url=split_list(log_url),
        log_mode=log_mode,
        source_uri=source_uri,
        inference_service=inference_service,
        namespace=namespace,
        component=component,
        endpoint=endpoint,
        metadata_headers=split_list(metadata_headers),
        metadata_annotations=annotations,
        explainer_url=explainer_url,
        kafka_client=kafka_client,
        spool_dir=spool_dir,
        ingest_auth_token=auth_token,
    )
    settings = build_settings(LoggerSettings, LOGGER_FLAGS, **values)
    from infertap.sidecar.server import run

    run(settings)


# --- explain -------------------------------------------------------------------------------


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def explain(ctx: typer.Context) -> None:
    """Run one explainer server (`:explain` V1, V2 infer); flags as `python -m infertap.explainers --help`."""
    from pydantic import ValidationError

    from infertap.explainers.__main__ import ArgsError, parser, settings_from_args, validation_sentence

    if any(a in ("-h", "--help") for a in ctx.args):
        typer.echo(parser().format_help().replace("python -m infertap.explainers", "infertap explain"))
        raise typer.Exit(0)
    try:
        settings = settings_from_args(list(ctx.args), raise_errors=True)
    except ArgsError as exc:
        fail(f"invalid settings: {exc}")
    except ValidationError as exc:
        fail(f"invalid settings: {validation_sentence(exc)}")
    from infertap.explainers.server import run

    run(settings)


# --- fit -----------------------------------------------------------------------------------

# Document kind -> "module:function(doc, reference, size, progress) -> list[str]"; one verb for every kind.
FITTERS = {
    "InferenceService": "infertap.stack.explain_plan:fit_explainer",
    "Detector": "infertap.stack.detect_fit:fit_detector",
}


@app.command()
def fit(
    files: list[Path] = typer.Argument(
        ..., metavar="FILE", help="YAML files: InferenceServices with an explainer, Detectors."
    ),
    reference: str | None = typer.Option(
        None, help="Reference rows (.npy, .csv); default: reference.npy beside the model."
    ),
    size: int | None = typer.Option(
        None, min=1, help="Background rows (k-means centres for KernelShap); default 50."
    ),
) -> None:
    """Fit what explainers and detectors need from reference data (SHAP backgrounds, anchor bins), with progress."""
    from importlib import import_module

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from infertap.stack.plan import PlanError
    from infertap.stack.specs import SpecError, load_files

    try:
        loaded = load_files(files)
    except SpecError as exc:
        fail(str(exc))
    jobs = [doc for doc in loaded.documents if doc.spec.kind in FITTERS]
    if not jobs:
        fail("nothing to fit: no InferenceService with an explainer and no Detector in " + ", ".join(map(str, files)))
    lines: list[str] = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task("fitting", total=len(jobs))
        for doc in jobs:
            module, func = FITTERS[doc.spec.kind].split(":")
            try:
                fitter = getattr(import_module(module), func)
            except (ModuleNotFoundError, AttributeError):
                lines.append(f"{doc.where}: fitting {doc.spec.kind} documents is not available yet")
                bar.advance(task)
                continue
            bar.update(task, description=f"{doc.where}")
            try:
                lines += fitter(
                    doc, reference, size, progress=lambda msg: bar.update(task, description=f"{doc.where}: {msg}")
                )
            except PlanError as exc:
                fail(str(exc))
            bar.advance(task)
    for line in lines:
        typer.echo(line)


# --- tail ----------------------------------------------------------------------------------


@app.command()
def tail(
    topic: str = typer.Argument(..., metavar="TOPIC", help="Kafka topic, e.g. sklearn-iris-events."),
    bootstrap: str = typer.Option("localhost:9092", help="Kafka bootstrap servers, host:port[,host:port]."),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="Start at the oldest record instead of new ones."
    ),
    max: int | None = typer.Option(None, "--max", min=1, help="Stop after N records."),
    group: str | None = typer.Option(None, help="Consumer group (commits offsets); default: none."),
    timeout: float | None = typer.Option(None, help="Stop after this many seconds without a record."),
    width: int = typer.Option(120, help="Characters of body preview."),
    kafka_config: list[str] = typer.Option(
        [],
        "-X",
        "--kafka-config",
        metavar="KEY=VALUE",
        help="TLS/SASL as librdkafka properties, repeatable: -X security.protocol=SASL_SSL "
        "-X sasl.mechanism=PLAIN -X sasl.username=U -X sasl.password=P -X ssl.ca.location=ca.pem",
    ),
) -> None:
    """Print the CloudEvents on a topic: time, type, id, key attributes, body preview."""
    from infertap.stack.tail import kafka_python_options
    from infertap.stack.tail import tail as run_tail

    config = key_values(kafka_config, "-X")
    try:
        kafka_python_options(config)
    except ValueError as exc:
        fail(str(exc))
    try:
        run_tail(
            topic,
            bootstrap,
            from_beginning=from_beginning,
            max_events=max,
            group=group,
            idle_timeout=timeout,
            emit=typer.echo,
            width=width,
            kafka_config=config,
        )
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - e.g. NoBrokersAvailable: a sentence, not a traceback
        fail(f"cannot read {topic!r} from {bootstrap}: {type(exc).__name__}: {exc}", code=1)


# --- detect --------------------------------------------------------------------------------


@app.command()
def detect(
    spec: Path = typer.Argument(..., metavar="SPEC", help="YAML file with a `kind: Detector` document."),
    name: str | None = typer.Option(None, help="Which Detector document, when the file holds several."),
    bootstrap: str | None = typer.Option(
        None, help="Override spec.source.bootstrap (host:port or kafka://host:port)."
    ),
    metrics_port: int | None = typer.Option(None, help="Override spec.outputs.metricsPort."),
    group: str | None = typer.Option(None, help="Override spec.source.consumerGroup."),
    allow_pickle: bool = typer.Option(
        False,
        "--allow-pickle",
        help="Load a savedDetector folder holding pickles (dill, joblib, ...): they run code; only for folders you trust (= spec.detector.allowPickle: true).",
    ),
    kafka_config: list[str] = typer.Option(
        [],
        "-X",
        "--kafka-config",
        metavar="KEY=VALUE",
        help="librdkafka property, repeatable (TLS/SASL: -X security.protocol=SASL_SSL ...); added to spec.source.kafkaConfig.",
    ),
) -> None:
    """Run one detector worker: a consumer group on the InferenceService's events, detections to Kafka."""
    from infertap.stack.specs import SpecError, load_files
    from infertap.stack.specs.detector import Detector

    try:
        documents = [d for d in load_files([spec]).documents if isinstance(d.spec, Detector)]
    except SpecError as exc:
        fail(str(exc))
    if name is not None:
        documents = [d for d in documents if d.spec.name == name]
    if len(documents) != 1:
        found = ", ".join(d.spec.name for d in documents) or "none"
        fail(f"{spec}: expected one Detector document{f' named {name!r}' if name else ''} (found {found}); use --name")
    doc = documents[0]
    overrides: dict[str, Any] = {}
    if bootstrap is not None:
        overrides["bootstrap"] = bootstrap.removeprefix("kafka://").split("/")[0]
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    if group is not None:
        overrides["consumer_group"] = group
    if allow_pickle:
        overrides["allow_pickle"] = True
    if kafka_config:
        overrides["kafka_config"] = {**doc.spec.spec.source.kafka_config, **key_values(kafka_config, "-X")}
    try:
        settings = doc.spec.to_settings(doc.source.parent, **overrides)
    except ValidationError as exc:
        fail("\n".join(f"{doc.where}: {line}" for line in format_errors(exc)))
    from infertap.detectors.worker import main as run_worker

    run_worker(settings)


# --- render --------------------------------------------------------------------------------


@app.command()
def render(
    files: list[Path] = typer.Argument(..., metavar="FILE", help="InferenceService and Detector YAML files."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="A .yaml file, or a folder (one file per manifest); default: stdout."
    ),
    target: str = typer.Option(
        "standalone",
        help="standalone (Deployments with the logger as a sidecar) or kserve (the InferenceService, its logger sent to the infertap ingest).",
    ),
    namespace: str | None = typer.Option(None, help="Namespace of every manifest (default: each document's own)."),
    image_prefix: str = typer.Option(
        "infertap/", help="Images are PREFIX{serving,logger,explainer,detector}:TAG (deploy/Dockerfile.*)."
    ),
    tag: str = typer.Option("0.1.0", help="Image tag."),
    kafka_bootstrap: str = typer.Option(
        "kafka:9092", help="Kafka in the cluster: replaces localhost in kafka:// URLs and Detector sources."
    ),
    no_dashboards: bool = typer.Option(
        False, "--no-dashboards", help="Leave out the dashboard and alert-rule ConfigMaps."
    ),
) -> None:
    """Write Kubernetes manifests for the documents: predictor + logger sidecar, explainer, detectors with KEDA, dashboards."""
    from infertap.stack.render import RenderError, RenderOptions, render_files, write
    from infertap.stack.specs import SpecError

    if target not in ("standalone", "kserve"):
        fail(f"invalid settings: --target: expected standalone or kserve (got {target!r})")
    try:
        rendered = render_files(
            files,
            RenderOptions(
                target=target,
                namespace=namespace,
                image_prefix=image_prefix,
                tag=tag,
                kafka_bootstrap=kafka_bootstrap,
                dashboards=not no_dashboards,
            ),
        )
    except (SpecError, RenderError) as exc:
        fail(str(exc))
    if not rendered.manifests:
        fail("nothing to render: no InferenceService or Detector in " + ", ".join(map(str, files)))
    for note in rendered.notes:
        typer.echo(f"note: {note}", err=True)
    text = write(rendered, out)
    if out is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {len(rendered.manifests)} manifests to {out}", err=True)


# --- report --------------------------------------------------------------------------------


@app.command()
def report(
    inference_service: str = typer.Argument(
        ..., metavar="ISVC", help="InferenceService name (metrics label, topic prefix)."
    ),
    out: Path = typer.Option(Path("infertap-report.html"), "--out", "-o", help="HTML file to write."),
    prometheus: str = typer.Option("http://localhost:9090", help="Prometheus to query (query_range over the metrics)."),
    bootstrap: str | None = typer.Option(
        None, help="Read the topics ISVC-detections and ISVC-explanations from this Kafka instead of Prometheus."
    ),
    minutes: float = typer.Option(60.0, min=0.1, help="Prometheus: how far back to look."),
    idle_timeout: float = typer.Option(
        3.0, min=0.1, help="Kafka: stop reading a topic after this many seconds without a record."
    ),
) -> None:
    """Write an HTML page with plots: per-feature drift over time, outlier rate, top attributions."""
    from infertap.stack.report import PrometheusError, from_kafka, from_prometheus, write_report

    try:
        if bootstrap:
            data = from_kafka(bootstrap, inference_service, idle_timeout=idle_timeout)
        else:
            data = from_prometheus(prometheus, inference_service, minutes=minutes)
    except (PrometheusError, ConnectionError) as exc:
        fail(f"cannot build the report: {exc}", code=1)
    path = write_report(data, out)
    found = ", ".join(f"{k} {v}" for k, v in data.summary.items()) or "no data yet"
    typer.echo(f"wrote {path} ({found})")


# --- broker --------------------------------------------------------------------------------


@app.command()
def broker(
    port: int = typer.Option(9092, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    log: Path | None = typer.Option(None, help="Broker log file (default: in the temp folder)."),
) -> None:
    """Run the embedded Kafka-protocol broker (Tansu, memory storage) in the foreground."""
    from infertap.stack.broker import BrokerError, EmbeddedBroker

    stop: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    b = EmbeddedBroker(port=port, host=host, log_path=log)
    try:
        b.start()
    except BrokerError as exc:
        fail(str(exc), code=1)
    typer.echo(f"broker listening on {b.bootstrap} (memory storage; log {b.log_path}); Ctrl-C stops it")
    try:
        while not stop:
            if b.poll() is not None:
                fail(f"broker exited with code {b.poll()}; log: {b.log_path}", code=1)
            time.sleep(0.2)
    finally:
        b.stop()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
