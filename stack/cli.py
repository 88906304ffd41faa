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
from typing import Any, Literal, NoReturn, cast

import typer
from pydantic import ValidationError

app = typer.Typer(
    name="infertap",
    no_args_is_help=True,
    add_completion=False,
    help="Monitor and explain ML models: a logger sidecar taps inference traffic into Kafka as CloudEvents.",
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` to stderr (URLs' secrets starred out) and exit with `code` (2: bad input)."""
    from infertap.logger.sinks.base import redact_text

    typer.echo(redact_text(message), err=True)
    raise typer.Exit(code)


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
    explainer_port: int = typer.Option(
        8082, help="Port of the first explainer server; more take the next free ports (0: any free port)."
    ),
    auto_ports: bool = typer.Option(
        False,
        "--auto-ports",
        help="A port in use moves to the next free one (said under the table) instead of failing with a sentence.",
    ),
    ready_timeout: float = typer.Option(120.0, help="Seconds each child gets to become ready."),
    max_start_failures: int = typer.Option(
        5,
        help="A child that dies (or is not ready in time) this many starts in a row stops `up`; a child that dies after it was ready is restarted with backoff, as restartPolicy: Always.",
    ),
) -> None:
    """Start everything the YAML documents describe: model servers, logger sidecars, broker, detectors.

    TensorFlow detectors (OutlierAE/VAE, AdversarialAE, ModelDistillation) run with a Python that has
    TensorFlow: the Detector's spec.runtime.python, else $INFERTAP_TF_PYTHON, else the nearest
    .venv-tf/bin/python (`make venv-tf`) above the current or the YAML's folder.
    """
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
                explainer_port=explainer_port,
                auto_ports=auto_ports,
            ),
        )
    except (SpecError, PlanError) as exc:
        fail(str(exc))
    if not plan.processes:
        fail("nothing to run: no InferenceService in " + ", ".join(map(str, files)))
    supervisor = Supervisor(plan, log_dir, ready_timeout=ready_timeout, max_start_failures=max_start_failures)
    raise typer.Exit(supervisor.run())


# --- serve, logger, explain: each component's own command line -----------------------------
#
# The flags are generated from each component's settings model (`infertap.flags`); these verbs
# hand their raw arguments to the parser `python -m infertap.<part>` uses, so `infertap logger
# --help` lists the very flags `python -m infertap.sidecar --help` does.

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=PASS_THROUGH, add_help_option=False)
def serve(ctx: typer.Context) -> None:
    """Run one model server (V1 and Open Inference Protocol REST); flags: `infertap serve --help`."""
    from infertap.serving.__main__ import main as run_server

    run_server(list(ctx.args), prog="infertap serve")


@app.command("logger", context_settings=PASS_THROUGH, add_help_option=False)
def logger_cmd(ctx: typer.Context) -> None:
    """Run one logger sidecar in front of a model server (flags named like KServe's agent; `--help` lists them)."""
    from infertap.sidecar.__main__ import main as run_sidecar

    run_sidecar(list(ctx.args), prog="infertap logger")


@app.command(context_settings=PASS_THROUGH, add_help_option=False)
def explain(ctx: typer.Context) -> None:
    """Run one explainer server (`:explain` V1, V2 infer); flags: `infertap explain --help`."""
    from infertap.explainers.__main__ import main as run_explainer

    run_explainer(list(ctx.args), prog="infertap explain")


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
    size: int | None = typer.Option(None, min=1, help="Background rows (k-means centres for KernelShap); default 50."),
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
            where = doc.where
            try:
                lines += fitter(
                    doc,
                    reference,
                    size,
                    progress=lambda msg, where=where: bar.update(task, description=f"{where}: {msg}"),
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


def _detect_command():
    from infertap.detectors.replay import ReplaySettings
    from infertap.detectors.settings import WorkerSettings
    from infertap.flags import CommandLine

    return CommandLine(
        prog="infertap detect",
        description="Run one detector worker for a `kind: Detector` document: a consumer group on the "
        "InferenceService's events, detections to Kafka. The flags override the document's values "
        "(--name picks the document when the file holds several; -X adds to spec.source.kafkaConfig). "
        "--replay FILE runs the detector over a csv or parquet file instead, in the spec's windows, and "
        "writes the detections as JSON lines (--output).",
        models={"worker": WorkerSettings, "replay": ReplaySettings},
        config_flag=False,
        usage="%(prog)s [-h] SPEC [FLAGS]",
        extra=lambda p: p.add_argument("spec", metavar="SPEC", type=Path, help="YAML file with a Detector document."),
    )


@app.command(context_settings=PASS_THROUGH, add_help_option=False)
def detect(ctx: typer.Context) -> None:
    """Run one detector worker: a consumer group on the InferenceService's events, detections to Kafka
    (or, with --replay FILE, the detector over a file's rows, detections as JSON lines)."""
    from infertap.detectors.replay import ReplaySettings
    from infertap.flags import FlagError
    from infertap.stack.specs import SpecError, load_files
    from infertap.stack.specs.detector import Detector

    command = _detect_command()
    try:
        parsed = command.parse(list(ctx.args))
    except FlagError as exc:
        fail(f"invalid settings: {exc} (see infertap detect --help)")
    spec: Path = parsed.namespace.spec
    overrides: dict[str, Any] = dict(parsed.values["worker"])
    name = overrides.pop("name", None)
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
    source = doc.spec.spec
    for key, base in (("kafka_config", source.source.kafka_config), ("params", source.detector.params)):
        if key in overrides:  # dict flags add to the document's
            overrides[key] = {**(base or {}), **overrides[key]}
    origins = dict(parsed.origins)
    try:
        settings = doc.spec.to_settings(doc.source.parent, **overrides)
    except ValidationError as exc:
        for err in exc.errors():
            field = (str(err["loc"][0]),) if err["loc"] else None
            if field and ("worker", field) not in origins:
                origins[("worker", field)] = f"{doc.where}: {field[0]}"
        fail("invalid settings: " + "; ".join(command.describe(exc, "worker", origins=origins)))
    replay = ReplaySettings(**parsed.values["replay"])
    if doc.spec.spec.detector.performance:  # RealisedPerformance: labels joined to predictions (docs/ground-truth.md)
        if replay.replay is not None:
            fail(
                f"{doc.where}: RealisedPerformance joins labels arriving on Kafka and cannot be replayed; replay a "
                "CBPE or DLE document over a file with the target column: its realised lines follow each estimate"
            )
        from infertap.detectors.performance.worker import main as run_performance

        run_performance(settings)
        return
    if replay.replay is not None:
        from infertap.stack.detect_replay import ReplayFailed, run_replay

        try:
            lines = run_replay(settings, replay, doc.where)
        except ReplayFailed as exc:
            fail(str(exc))
        for line in lines:
            typer.echo(line, err=True)
        return
    from infertap.detectors.worker import main as run_worker

    run_worker(settings)


# --- feedback ------------------------------------------------------------------------------


@app.command()
def feedback(
    file: Path = typer.Argument(
        ..., metavar="FILE", help="Labels, a .csv or .parquet file: one row per logged prediction."
    ),
    id_column: str = typer.Option(
        ..., help="Column of the ids the logged events carry (the CloudEvent id, or X-Request-Id)."
    ),
    target_column: str = typer.Option(..., help="Column of the ground truth: a class, or a number."),
    time_column: str | None = typer.Option(
        None, help="Column of when each label became known (ISO 8601 or epoch seconds); default: now."
    ),
    inference_service: str | None = typer.Option(
        None, "--inference-service", "-s", help="The InferenceService: labels go to ISVC-feedback."
    ),
    topic: str | None = typer.Option(None, help="The topic to write instead of ISVC-feedback."),
    bootstrap: str = typer.Option("localhost:9092", help="Kafka bootstrap servers, host:port[,host:port]."),
    task: str | None = typer.Option(
        None, help="classification or regression: rows whose target does not fit are refused (exit 2)."
    ),
    classes: list[str] = typer.Option(
        [], "--class", help="A class the model predicts, repeatable: a target naming another is refused."
    ),
    kafka_config: list[str] = typer.Option(
        [], "-X", "--kafka-config", metavar="KEY=VALUE", help="TLS/SASL as librdkafka properties, repeatable."
    ),
) -> None:
    """Backfill ground truth from a csv or parquet file onto ISVC-feedback (checked first, with progress)."""
    from infertap.stack.feedback_backfill import BackfillError, Columns, send
    from infertap.stream.topics import check_topic, topics

    if (topic is None) == (inference_service is None):
        fail("invalid settings: give --inference-service (labels go to ISVC-feedback) or --topic")
    if task not in (None, "classification", "regression"):
        fail(f"invalid settings: --task: expected classification or regression (got {task!r})")
    if classes and task != "classification":
        fail("invalid settings: --class needs --task classification")
    try:
        name = check_topic(topic) if topic else topics(inference_service or "").feedback
    except ValueError as exc:
        fail(f"invalid settings: {exc}")
    columns = Columns(id_column, target_column, time_column)
    with _bar() as bar:
        job = bar.add_task("checking", total=None)
        try:
            sent = send(
                file,
                columns,
                name,
                bootstrap,
                inference_service=inference_service or "",
                kafka_config=key_values(kafka_config, "-X"),
                task=cast(Any, task),
                classes=classes or None,
                progress=lambda stage, done, total: bar.update(job, description=stage, completed=done, total=total),
            )
        except BackfillError as exc:
            fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - the client's errors: a sentence, not a traceback
            fail(f"cannot send feedback to {bootstrap}: {type(exc).__name__}: {exc}", code=1)
    if sent.failed:
        fail(
            f"{sent.failed} of {sent.rows} feedback records were not acknowledged by {bootstrap}: {'; '.join(sent.errors)}",
            code=1,
        )
    typer.echo(f"sent {sent.rows} feedback records to {name}")


def _bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


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
    local_models: str = typer.Option(
        "pvc",
        help="Local files of the specs (storageUri file:// or a path, --background...): pvc (onto PersistentVolumeClaims "
        "these manifests create, fields rewritten to pvc://CLAIM/FOLDER, with the commands that copy them in) or refuse (exit 2).",
    ),
    existing_pvc: list[str] = typer.Option(
        [],
        "--existing-pvc",
        metavar="CLAIM",
        help="A PersistentVolumeClaim that exists in the cluster: mounted or named by pvc://, not created (repeatable).",
    ),
    storage_class: str | None = typer.Option(
        None, help="storageClassName of the PersistentVolumeClaims created (default: the cluster's default class)."
    ),
    spool: str = typer.Option(
        "emptydir",
        help="The logger's disk spool: emptydir (survives restarts of the logger container, not of its pod) or pvc "
        "(a PersistentVolumeClaim per logger Deployment, which outlives the pod).",
    ),
    spool_size: str = typer.Option("1Gi", help="Size of the spool (the emptyDir's sizeLimit, or the claim's request)."),
) -> None:
    """Write Kubernetes manifests for the documents: predictor + logger sidecar, explainer, detectors with KEDA, dashboards."""
    from infertap.stack.render import RenderError, RenderOptions, render_files, write
    from infertap.stack.specs import SpecError

    if target not in ("standalone", "kserve"):
        fail(f"invalid settings: --target: expected standalone or kserve (got {target!r})")
    if local_models not in ("pvc", "refuse"):
        fail(f"invalid settings: --local-models: expected pvc or refuse (got {local_models!r})")
    if spool not in ("emptydir", "pvc"):
        fail(f"invalid settings: --spool: expected emptydir or pvc (got {spool!r})")
    try:
        rendered = render_files(
            files,
            RenderOptions(
                target=cast(Literal["standalone", "kserve"], target),
                namespace=namespace,
                image_prefix=image_prefix,
                tag=tag,
                kafka_bootstrap=kafka_bootstrap,
                dashboards=not no_dashboards,
                local_models=cast(Literal["pvc", "refuse"], local_models),
                existing_pvcs=frozenset(existing_pvc),
                storage_class=storage_class,
                spool=cast(Literal["emptydir", "pvc"], spool),
                spool_size=spool_size,
            ),
        )
    except (SpecError, RenderError) as exc:
        fail(str(exc))
    if not rendered.manifests:
        fail("nothing to render: no InferenceService or Detector in " + ", ".join(map(str, files)))
    for note in rendered.notes:
        typer.echo(f"note: {note}", err=True)  # warnings read "note: warning: ..." (tests/stack/test_spec_typos.py)
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
    detector: Path | None = typer.Option(
        None,
        help="A Detector YAML with reference data: histograms of it beside the latest logged events of its "
        "topic, per feature (events read from --bootstrap, else the document's source.bootstrap).",
    ),
) -> None:
    """Write an HTML page with plots: per-feature drift over time, outlier rate, top attributions,
    realised and estimated performance, data-quality violations, reference-vs-current histograms."""
    from infertap.stack.report import PrometheusError, from_kafka, from_prometheus, write_report
    from infertap.stack.report_quality import HistogramError, detector_settings, feature_histograms

    try:
        drift = detector_settings(detector, inference_service) if detector is not None else None
    except HistogramError as exc:
        fail(str(exc))
    try:
        if bootstrap:
            data = from_kafka(bootstrap, inference_service, idle_timeout=idle_timeout)
        else:
            data = from_prometheus(prometheus, inference_service, minutes=minutes)
        if drift is not None:
            data.histograms, data.section_notes["histograms"] = feature_histograms(drift, bootstrap)
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
