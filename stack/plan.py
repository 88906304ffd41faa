"""From loaded specs to the processes `infertap up` starts.

Per InferenceService: one model server for the predictor (port 8080, then the next free
port), and a logger sidecar (port 9081, then the next free) in front of it when the
predictor has a `logger:` block; the transformer when its container's command runs here
(stack/transformer_plan.py, the next free port after the predictor's) and the explainer
(stack/explain_plan.py, 8082), each with a logger sidecar of its own in front of it when
it has a `logger:` block (the next free port after 9081; events with `component`
transformer or explainer). One embedded broker per local `kafka://` address that
nothing listens on. Settings are built here, typed, so a bad spec fails before anything
starts.

Local choices (documented in the README):
- `storageUri` `file://PATH` or a plain PATH; a relative PATH is looked up beside the YAML
  file first, then in the current folder. `gs://`, `s3://` and other remote schemes fail
  with a sentence: only local storage runs locally.
- A `logger:` block without `url` logs to `kafka://localhost:9092/<isvc>-events` (KServe's
  webhook would use its ConfigMap's `http://default-broker`); a `kafka://` URL without a
  topic gets `<isvc>-events`.
- The annotation `infertap.io/explain-sample-rate: "0.05"` on an InferenceService with an
  explainer and a `kafka://` logger also starts the explainer's stream worker: it explains
  that share of the logged requests and publishes to `<isvc>-explanations` (opt-in: each
  explanation costs predictor calls).
- A Detector's worker runs with the Python `stack/interpreter.py` picks: its
  `spec.runtime.python`, or for the TensorFlow detectors one with TensorFlow
  ($INFERTAP_TF_PYTHON, infertap's own, or the nearest `.venv-tf/bin/python`); none is an
  error naming `make venv-tf` and the field.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from infertap.serving.settings import ServerSettings
from infertap.sidecar.settings import LoggerSettings
from infertap.stack.broker import broker_command, broker_env, is_listening, kafka_probe_error
from infertap.stack.interpreter import detector_python
from infertap.stack.llm_plan import logger_overrides
from infertap.stack.processes import PlanError, ProcessSpec, Role, resolve_storage, runner_command
from infertap.stack.specs import Detector, Document, InferenceService, KafkaURL, LLMInferenceService, LoggerSpec
from infertap.stack.specs.loader import format_errors
from infertap.stream.topics import topics

__all__ = ["Plan", "PlanError", "PlanOptions", "ProcessSpec", "Role", "make_plan", "resolve_storage", "runner_command"]

SERVED_FORMATS = ("sklearn", "xgboost", "lightgbm", "pytorch", "onnx", "huggingface")
EXPLAIN_SAMPLE_ANNOTATION = "infertap.io/explain-sample-rate"


@dataclass
class Plan:
    processes: list[ProcessSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def by_role(self, role: Role) -> list[ProcessSpec]:
        return [p for p in self.processes if p.role == role]


@dataclass
class PlanOptions:
    predictor_port: int = 8080
    logger_port: int = 9081
    explainer_port: int = 8082
    broker_port: int | None = None  # moves every local kafka:// URL to 127.0.0.1:broker_port
    start_broker: bool = True
    host: str = "127.0.0.1"
    spool_root: Path | None = None  # loggers spool under spool_root/<isvc>-<component>; None: their default
    detector_port: int = 9102  # metrics port of the first detector worker; more take the next free ports
    explain_stream_port: int = 9112  # metrics port of the first explainer stream worker
    auto_ports: bool = False  # a port in use moves to the next free one (said in the notes) instead of failing


class PortAllocator:
    """Hands out ports from a base upward, past the ones this plan took already (the second
    predictor gets 8081).

    A port something else listens on is an error with a sentence naming it, never a silent
    move; with `auto` (`--auto-ports`) it moves to the next free one and says so in `moves`
    (printed under the table)."""

    def __init__(self, host: str, auto: bool = False):
        self.host, self.taken, self.auto = host, set[int](), auto
        self.moves: list[str] = []

    def take(self, base: int, what: str = "", flag: str = "") -> int:
        if base == 0:  # any free port
            with socket.socket() as s:
                s.bind((self.host, 0))
                port = s.getsockname()[1]
        else:
            port = base
            while port in self.taken:
                port += 1
            first = port
            while is_listening(self.host, port):
                if not self.auto:
                    how = f"pass {flag} PORT, " if flag else ""
                    raise PlanError(
                        f"port {port} on {self.host}{f' (for {what})' if what else ''} is already in use: "
                        f"stop what listens there, {how}or give --auto-ports to move to a free port"
                    )
                port += 1
                if port > 65535:
                    raise PlanError(f"no free port at or above {base}")
            if port != first:
                self.moves.append(f"{what or 'a process'}: port {first} is in use, moved to {port} (--auto-ports)")
        self.taken.add(port)
        return port


def make_plan(documents: list[Document], options: PlanOptions | None = None) -> Plan:
    """Processes for every InferenceService and Detector in `documents`, brokers first, detectors last."""
    opts = options or PlanOptions()
    ports, plan, errors = PortAllocator(opts.host, auto=opts.auto_ports), Plan(), []
    brokers: dict[int, ProcessSpec] = {}
    detectors = []
    for doc in documents:
        if isinstance(doc.spec, Detector):
            detectors.append(doc)
            continue
        if isinstance(doc.spec, LLMInferenceService):
            try:
                plan.processes.append(_llm_predictor(doc, opts, ports))
            except PlanError as exc:
                errors.append(str(exc))
            continue
        if not isinstance(doc.spec, InferenceService):
            plan.notes.append(f"{doc.where}: {doc.spec.kind} documents are not run by `up` yet")
            continue
        try:
            plan.processes += _plan_service(doc, opts, ports, brokers, plan.notes)
        except PlanError as exc:
            errors.append(str(exc))
    for doc in detectors:  # after the services: a detector reads where its service's logger writes
        try:
            plan.processes += plan_detector(doc, opts, ports, brokers, plan)
        except PlanError as exc:
            errors.append(str(exc))
    if errors:
        raise PlanError("\n".join(errors))
    plan.processes = list(brokers.values()) + plan.processes
    plan.notes += ports.moves
    return plan


def _name_of(doc: Document) -> str:
    """The document's metadata.name, for sentences."""
    meta = getattr(doc.spec, "metadata", None)
    return str(getattr(meta, "name", None) or doc.where)


def _plan_service(
    doc: Document, opts: PlanOptions, ports: PortAllocator, brokers: dict[int, ProcessSpec], notes: list[str]
) -> list[ProcessSpec]:
    """The processes of one InferenceService, in start order: the predictor and its logger, the
    transformer and its logger, the explainer and its logger, the explainer's stream worker.

    Each component's `logger:` block gets a sidecar of its own in front of that component (as
    KServe's agent sits in that component's pod), logging with `component` set to it. The
    transformer calls the predictor through the predictor's sidecar, so the predictor's events
    carry what the transformer sent, as on KServe. Explain calls on the predictor's and the
    transformer's sidecars (V1 `:explain`, V2 `/v2/models/{name}-explainer/infer`) are routed to
    the explainer's sidecar (else the explainer), as KServe's ingress routes `:explain`.
    """
    isvc: InferenceService = doc.spec
    predictor = _predictor(doc, opts, ports)
    out = [predictor]
    blocks = dict(isvc.loggers())
    if "predictor" in blocks:
        out.append(_logger(doc, blocks["predictor"], predictor, opts, ports, brokers, notes))
    if isvc.spec.transformer is not None:
        transformer = _transformer(doc, out[-1], opts, ports, notes)
        if transformer is not None:
            out.append(transformer)
            if "transformer" in blocks:
                out.append(_logger(doc, blocks["transformer"], transformer, opts, ports, brokers, notes, "transformer"))
        elif "transformer" in blocks:
            notes.append(
                f"{doc.where}: spec.transformer.logger: the transformer does not run locally; no sidecar for it"
            )
    if isvc.spec.explainer is not None:
        explainer = _explainer(doc, predictor, out, opts, ports, notes)
        out.append(explainer)
        front = explainer
        if "explainer" in blocks:
            front = _logger(doc, blocks["explainer"], explainer, opts, ports, brokers, notes, "explainer")
            out.append(front)
        _route_explain(out, front)
        stream = _explain_stream(doc, out, opts, ports, notes)
        if stream is not None:
            out.append(stream)
    return out


def component_logger(planned: list[ProcessSpec], component: str = "predictor") -> ProcessSpec | None:
    """The logger sidecar in front of `component` among `planned`, if it has one."""
    return next(
        (p for p in planned if p.role == "logger" and getattr(p.settings, "component", None) == component), None
    )


def _route_explain(planned: list[ProcessSpec], front: ProcessSpec) -> None:
    """The predictor's and transformer's sidecars send explain calls to `front` (the explainer's
    sidecar, or the explainer), as KServe's ingress does."""
    for logger in planned:
        if logger.role != "logger" or getattr(logger.settings, "component", None) == "explainer":
            continue
        logger.settings = logger.settings_as(LoggerSettings).model_copy(
            update={"explainer_url": f"http://{front.address}"}
        )
        argv, env = runner_command("logger", logger.settings)
        logger.argv, logger.env = argv, {**logger.env, **env}


def _predictor(doc: Document, opts: PlanOptions, ports: PortAllocator) -> ProcessSpec:
    isvc: InferenceService = doc.spec
    found = isvc.spec.predictor.model_with_path()
    if found is None:
        raise PlanError(
            f"{doc.where}: spec.predictor: no model to serve (custom containers are not run locally); give spec.predictor.model"
        )
    fmt, path, model = found
    if fmt not in SERVED_FORMATS:
        at = f"{path}.modelFormat.name" if path.endswith(".model") else path
        raise PlanError(f"{doc.where}: {at}: infertap serves {', '.join(SERVED_FORMATS)} locally (got {fmt!r})")
    if not model.storage_uri:
        raise PlanError(f"{doc.where}: {path}.storageUri: required to serve the model locally")
    uri = resolve_storage(model.storage_uri, doc.source.parent, f"{doc.where}: {path}.storageUri")
    proba = (model.env_value("PREDICT_PROBA") or "").lower() in ("1", "true", "yes")
    hf_fields = _huggingface_fields(doc, path, model.args) if fmt == "huggingface" else {}
    port = ports.take(opts.predictor_port, f"the predictor of {_name_of(doc)}", "--predictor-port")
    labels = {"inference_service": isvc.name} if "inference_service" in ServerSettings.model_fields else {}
    settings = _settings(
        doc,
        ServerSettings,
        host=opts.host,
        http_port=port,
        **labels,
        models=[
            {
                "name": isvc.name,
                "format": fmt,
                "uri": str(uri),
                "version": model.model_format.version if model.model_format else None,
                "predict_proba": proba,
                **hf_fields,
            }
        ],
    )
    argv, env = runner_command("serving", settings)
    return ProcessSpec(
        name=f"{isvc.name}/predictor",
        role="predictor",
        host=opts.host,
        port=port,
        argv=argv,
        env=env,
        ready_path="/v2/health/ready",
        settings=settings,
        inference_service=isvc.name,
        note=f"{fmt} model {uri}",
    )


def _llm_predictor(doc: Document, opts: PlanOptions, ports: PortAllocator) -> ProcessSpec:
    """An LLMInferenceService: its `spec.model.uri` served by the huggingface runtime (OpenAI endpoints)."""
    llm: LLMInferenceService = doc.spec
    uri = resolve_storage(llm.spec.model.uri, doc.source.parent, f"{doc.where}: spec.model.uri")
    port = ports.take(opts.predictor_port, f"the predictor of {_name_of(doc)}", "--predictor-port")
    settings = _settings(
        doc,
        ServerSettings,
        host=opts.host,
        http_port=port,
        inference_service=llm.name,
        models=[{"name": llm.model_name, "format": "huggingface", "uri": str(uri)}],
    )
    argv, env = runner_command("serving", settings)
    return ProcessSpec(
        name=f"{llm.name}/predictor",
        role="predictor",
        host=opts.host,
        port=port,
        argv=argv,
        env=env,
        ready_path="/v2/health/ready",
        settings=settings,
        inference_service=llm.name,
        note=f"LLM {llm.model_name!r} (huggingface) {uri}",
    )


def _huggingface_fields(doc: Document, path: str, args: list[str]) -> dict:
    """KServe's huggingface `args` (--model_name, --task, --backend, --dtype, --max_model_len) as model
    settings; vLLM engine arguments mean nothing to the transformers backend: ignored with a warning."""
    import logging

    from infertap.flags import FlagError
    from infertap.serving.kserve_args import model_fields_from_args

    try:
        fields, ignored = model_fields_from_args(args)
    except FlagError as err:
        raise PlanError(f"{doc.where}: {path}.args: {err}") from None
    if ignored:
        logging.getLogger("infertap.stack").warning(
            "%s: %s.args: ignoring arguments the huggingface runtime does not use: %s",
            doc.where,
            path,
            " ".join(ignored),
        )
    return {k: v for k, v in fields.items() if k not in ("format", "uri")}


def _logger(
    doc: Document,
    block: LoggerSpec,
    target: ProcessSpec,
    opts: PlanOptions,
    ports: PortAllocator,
    brokers: dict[int, ProcessSpec],
    notes: list[str],
    component: str = "predictor",
) -> ProcessSpec:
    """The logger sidecar of `component` (its `logger:` block), in front of `target`."""
    isvc: InferenceService = doc.spec
    where = f"{doc.where}: spec.{component}.logger"
    url = _log_url(block.url, isvc.name, opts, brokers, where, notes)
    annotations = {}
    for key in block.metadata_annotations:
        if key in isvc.metadata.annotations:
            annotations[key] = isvc.metadata.annotations[key]
        else:
            notes.append(f"{where}.metadataAnnotations: {key!r} is not among metadata.annotations; left out")
    what = "the logger" if component == "predictor" else f"the {component}'s logger"
    port = ports.take(opts.logger_port, f"{what} of {_name_of(doc)}", "--logger-port")
    settings = _settings(
        doc,
        LoggerSettings,
        host=opts.host,
        port=port,
        component_host=target.host,
        component_port=target.port,
        log_url=[url],
        log_mode=block.mode,
        source_uri=f"http://{opts.host}:{port}/",
        inference_service=isvc.name,
        namespace=isvc.metadata.namespace,
        component=component,
        metadata_headers=block.metadata_headers,
        metadata_annotations=annotations,
        spool_dir=opts.spool_root / f"{isvc.name}-{component}" if opts.spool_root else None,
        **logger_overrides(isvc.metadata.annotations, doc.where),  # infertap.io/redact, log-sample-rate
    )
    from infertap.logger.sinks.base import shown_url

    argv, env = runner_command("logger", settings)
    return ProcessSpec(
        name=f"{isvc.name}/logger" if component == "predictor" else f"{isvc.name}/{component}-logger",
        role="logger",
        host=opts.host,
        port=port,
        argv=argv,
        env=env,
        ready_path=getattr(settings, "metrics_path", None),
        settings=settings,
        inference_service=isvc.name,
        note=f"{block.mode} -> {shown_url(url)}" + ("" if component == "predictor" else f" ({component})"),
    )


def _explainer(
    doc: Document,
    predictor: ProcessSpec,
    planned: list[ProcessSpec],
    opts: PlanOptions,
    ports: PortAllocator,
    notes: list[str],
) -> ProcessSpec:
    """The explainer (stack/explain_plan.py), calling the predictor through its logger when it has one
    (as KServe's explainer calls the predictor's service: never the transformer)."""
    from infertap.stack.explain_plan import plan_explainer

    logger = component_logger(planned)
    port = ports.take(opts.explainer_port, f"the explainer of {_name_of(doc)}", "--explainer-port")
    return plan_explainer(doc, predictor, logger or predictor, opts.host, port, notes)


def _transformer(
    doc: Document, predictor_front: ProcessSpec, opts: PlanOptions, ports: PortAllocator, notes: list[str]
) -> ProcessSpec | None:
    """`spec.transformer` when its container's command runs here (stack/transformer_plan.py), else
    None with a note saying why; it calls the predictor through `predictor_front`."""
    from infertap.stack.transformer_plan import plan_transformer

    return plan_transformer(doc, predictor_front, opts.host, ports.take, opts.predictor_port, notes)


def _explain_stream(
    doc: Document, planned: list[ProcessSpec], opts: PlanOptions, ports: PortAllocator, notes: list[str]
) -> ProcessSpec | None:
    """The explainer's stream worker, when the InferenceService asks for it by annotation."""
    isvc: InferenceService = doc.spec
    rate = explain_sample_rate(doc)
    if rate is None:
        return None
    where = f'{doc.where}: metadata.annotations["{EXPLAIN_SAMPLE_ANNOTATION}"]'
    explainer = next(p for p in planned if p.role == "explainer")
    logger = component_logger(planned)
    kafka = [
        str(u) for u in (getattr(logger.settings, "log_url", []) if logger else []) if str(u).startswith("kafka://")
    ]
    if not kafka:
        notes.append(
            f"{where}: the stream worker reads the predictor logger's Kafka topic; there is none, so it is not started"
        )
        return None
    url = KafkaURL.parse(kafka[0])
    port = ports.take(opts.explain_stream_port, f"the explainer stream of {_name_of(doc)}")
    stream = {
        "bootstrap": url.bootstrap,
        "inference_service": isvc.name,
        "source_topic": url.topic,
        "sample_rate": rate,
        "metrics_port": port,
        "kafka_config": kafka_security(kafka[0], f"{doc.where}: spec.predictor.logger.url"),
    }
    payload = {"stream": stream, "explainer": explainer.settings_as(BaseModel).model_dump(mode="json")}
    argv, env = runner_command("explain-stream", payload)
    return ProcessSpec(
        name=f"{isvc.name}/explain-stream",
        role="explain-stream",
        host=opts.host,
        port=port,
        argv=argv,
        env=env,
        ready_path="/metrics",
        inference_service=isvc.name,
        note=f"explains {rate:g} of {url.topic} -> {topics(isvc.name).explanations}",
    )


def explain_sample_rate(doc: Document) -> float | None:
    """The share of logged requests the explainer's stream worker explains (the annotation
    `infertap.io/explain-sample-rate`); None without it. Shared with `infertap render`."""
    raw = doc.spec.metadata.annotations.get(EXPLAIN_SAMPLE_ANNOTATION)
    if raw is None:
        return None
    try:
        rate = float(raw)
    except ValueError:
        rate = float("nan")
    if not 0.0 < rate <= 1.0:
        raise PlanError(
            f'{doc.where}: metadata.annotations["{EXPLAIN_SAMPLE_ANNOTATION}"]: a share of requests to explain '
            f'in (0, 1], e.g. "0.05" (got {raw!r})'
        )
    return rate


def kafka_security(url: str, where: str) -> dict[str, str]:
    """TLS/SASL options of a logger's kafka:// URL as librdkafka properties, for the workers
    that read its topic with the same credentials."""
    try:
        return KafkaURL.parse(url).security.librdkafka()  # the stream contract's TLS/SASL options
    except ValueError as exc:  # a KafkaURLError, or options that do not fit together: never a secret in it
        raise PlanError(f"{where}: {exc}") from None


def _log_url(
    url: str | None, isvc: str, opts: PlanOptions, brokers: dict[int, ProcessSpec], where: str, notes: list[str]
) -> str:
    url = url or "kafka://localhost:9092"
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("s3", "gs", "abfs"):
        raise PlanError(
            f"{where}.url: {scheme}:// is KServe's blob-storage sink; infertap runs http(s)://, kafka:// and file:// sinks locally (got {url!r})"
        )
    if scheme != "kafka":
        return url
    kafka = KafkaURL.parse(url)
    if not kafka.topic:
        kafka = kafka.with_topic(topics(isvc).events)
    if kafka.is_local:
        port = opts.broker_port or kafka.hosts[0][1]
        kafka = kafka.with_port(port)
        if port not in brokers and is_listening("127.0.0.1", port):
            problem = kafka_probe_error("127.0.0.1", port)
            if problem is not None:
                raise PlanError(
                    f"{where}.url: 127.0.0.1:{port} is in use by something that is not a Kafka broker ({problem}); "
                    "stop it, or point the URL (or --broker-port) at a free port or a real broker"
                )
        elif port not in brokers:
            if opts.start_broker:
                brokers[port] = broker_process(port)
            else:
                notes.append(
                    f"{where}.url: nothing listens on 127.0.0.1:{port} and the embedded broker is off; "
                    "the logger spools events until a broker appears there"
                )
    return str(kafka)


def plan_detector(
    doc: Document, opts: PlanOptions, ports: PortAllocator, brokers: dict[int, ProcessSpec], plan: Plan
) -> list[ProcessSpec]:
    """`spec.replicas` workers per Detector (one consumer group, a metrics port each); the source
    is the Kafka URL its InferenceService's logger writes to."""
    det: Detector = doc.spec
    first = _detector_worker(doc, opts, ports, brokers, plan)
    workers = [first]
    component = "performance" if det.spec.detector.performance else "detector"  # stack/performance_plan.py
    for i in range(1, det.spec.replicas):
        port = ports.take(first.port + 1, f"a replica of the detector {_name_of(doc)}", "--detector-port")
        settings = first.settings_as(BaseModel).model_copy(update={"metrics_port": port})
        argv, env = runner_command(component, settings, python=first.argv[0])
        workers.append(
            ProcessSpec(
                name=f"{det.name}/detector-{i}",
                role="detector",
                host=opts.host,
                port=port,
                argv=argv,
                env=env,
                ready_path="/metrics",
                settings=settings,
                inference_service=first.inference_service,
                note=f"{first.note} (replica {i + 1} of {det.spec.replicas})",
                interpreter=first.interpreter,
            )
        )
    return workers


def _detector_worker(
    doc: Document, opts: PlanOptions, ports: PortAllocator, brokers: dict[int, ProcessSpec], plan: Plan
) -> ProcessSpec:
    """The first (or only) worker of a Detector."""
    det: Detector = doc.spec
    where = f"{doc.where}: spec.source.bootstrap"
    logged = [  # the predictor's logger: a transformer's or explainer's logs other traffic
        p
        for p in plan.by_role("logger")
        if det.inference_service
        and p.inference_service == det.inference_service
        and getattr(p.settings, "component", "predictor") == "predictor"
    ]
    kafka_urls = [str(u) for p in logged for u in getattr(p.settings, "log_url", []) if str(u).startswith("kafka://")]
    overrides: dict = {}
    if kafka_urls and det.spec.source.topic is None and "bootstrap" not in det.spec.source.model_fields_set:
        url = KafkaURL.parse(kafka_urls[0])
        overrides.update(bootstrap=url.bootstrap, topic=url.topic)
        if not det.spec.source.kafka_config:  # read the topic with the credentials it is written with
            overrides["kafka_config"] = kafka_security(kafka_urls[0], f"{logged[0].name}: log_url")
    elif det.spec.source.transport == "kafka":
        url = KafkaURL.parse(
            _log_url(
                f"kafka://{det.spec.source.bootstrap}/-",
                det.inference_service or det.name,
                opts,
                brokers,
                where,
                plan.notes,
            )
        )
        overrides["bootstrap"] = url.bootstrap
    if det.spec.detector.performance:  # its state folder; the logger takes its feedback (stack/performance_plan.py)
        from infertap.stack.performance_plan import performance_overrides, wire_loggers

        overrides.update(performance_overrides(doc, opts.spool_root))
        wire_loggers(doc, logged, plan.notes)
    wanted = det.spec.outputs.metrics_port
    port = ports.take(
        opts.detector_port if wanted == 9102 else wanted, f"the detector {_name_of(doc)}", "--detector-port"
    )
    try:
        settings = det.to_settings(doc.source.parent, host=opts.host, metrics_port=port, **overrides)
    except ValidationError as exc:
        raise PlanError("\n".join(f"{doc.where}: {line}" for line in format_errors(exc))) from None
    for name, path in (("reference", "spec.detector.reference"), ("saved_detector", "spec.detector.savedDetector")):
        value = getattr(settings, name, None)  # a RealisedPerformance worker reads no reference
        if value is not None and not value.exists():
            raise PlanError(f"{doc.where}: {path}: {value} does not exist")
    python = detector_python(doc)  # a TensorFlow detector's worker runs in a Python with TensorFlow
    source = settings.topic if getattr(settings, "transport", "kafka") == "kafka" else f"HTTP on :{port}"
    if det.spec.detector.performance:
        source = f"{settings.topic} + {getattr(settings, 'feedback_topic', '')}"
    component = "performance" if det.spec.detector.performance else "detector"
    argv, env = runner_command(component, settings, python=python.path)
    return ProcessSpec(
        name=f"{det.name}/detector",
        role="detector",
        host=opts.host,
        port=port,
        argv=argv,
        env=env,
        ready_path="/metrics",
        settings=settings,
        inference_service=det.inference_service or None,
        note=f"{settings.detector} on {source} -> {settings.output_topic}",
        interpreter=python.shown(),
    )


def broker_process(port: int, host: str = "127.0.0.1") -> ProcessSpec:
    name = "broker" if port == 9092 else f"broker:{port}"
    return ProcessSpec(
        name=name,
        role="broker",
        argv=broker_command(host, port),
        host=host,
        port=port,
        env=broker_env(),
        note="embedded Tansu broker, memory storage",
    )


def _settings(doc: Document, model: type[BaseModel], **values) -> BaseModel:
    try:
        return model(**values)
    except ValidationError as exc:
        raise PlanError("\n".join(f"{doc.where}: {model.__name__}.{line}" for line in format_errors(exc))) from None
