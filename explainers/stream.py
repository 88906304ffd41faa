"""Attributions on the stream: sample request events from Kafka, explain them, publish explanations.

    python -m infertap.explainers.stream --bootstrap 127.0.0.1:9092 --inference-service sklearn-iris \
        --explainer-type KernelShap --predictor-url http://127.0.0.1:8080 \
        --background models/sklearn-iris/background.npz --sample-rate 0.1 --metrics-port 9112

Reads `<isvc>-events` (the logger's CloudEvents, Kafka binding, binary mode) in a consumer
group, keeps `org.kubeflow.serving.inference.request` events, samples a share of them by a
hash of their id (the same event is always in or out, whichever worker sees it), decodes
the logged body with `infertap.serving.codec` (V1 `instances`/`inputs`, V2 JSON or binary), explains every
instance with the same backends as the server, and publishes one `io.infertap.explanation`
CloudEvent per request event to `<isvc>-explanations`: body the `ExplainResponse` JSON,
`subject` the InferenceService, extension `requestid` the id of the request event (so the
explanation joins its request and response), key that id. Mean absolute attribution per
feature is exported on `/metrics` (`infertap_explainer_mean_abs_attribution`), the series
dashboards and detectors watch for attribution drift.

Offsets are committed after the explanations of a batch are acknowledged: a crash repeats
explanations rather than losing them. Scaling is by consumer group, as detectors.
Undecodable bodies (not V1 or V2, text for tabular models) are counted (`infertap_explainer_stream_events_total{outcome}`), never fatal.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from infertap.explainers.backends import ExplainOptions, create_explainer
from infertap.explainers.errors import ExplainerError
from infertap.explainers.explanation import ExplainResponse
from infertap.explainers.metrics import ExplainerMetrics
from infertap.explainers.settings import ExplainerSettings
from infertap.serving.codec import CodecError, binary_header_length, decode_v1_request, decode_v2_request
from infertap.stream import clients
from infertap.stream.events import EXPLANATION_TYPE, REQUEST_TYPE
from infertap.stream.topics import topics

log = logging.getLogger("infertap.explainers.stream")
#: librdkafka's lines and the clients' errors, each message at most once per 30 s
LIBRDKAFKA_LOG = "infertap.explainers.librdkafka"


class StreamSettings(BaseSettings):
    """The stream worker's own settings (the explainer's are ExplainerSettings).

    Environment variables INFERTAP_EXPLAIN_STREAM_<FIELD> set fields (flags and --help: infertap/flags.py).
    """

    model_config = SettingsConfigDict(env_prefix="INFERTAP_EXPLAIN_STREAM_", extra="forbid")

    bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port].")
    inference_service: str = Field(
        min_length=1, description="The InferenceService whose logged requests are explained (topic prefix)."
    )
    source_topic: str | None = Field(default=None, description="Topic of the request events; default <isvc>-events.")
    target_topic: str | None = Field(
        default=None, description="Topic the explanations go to; default <isvc>-explanations."
    )
    group: str | None = Field(default=None, description="Consumer group; default infertap-explainer-<isvc>.")
    sample_rate: float = Field(
        default=1.0, gt=0, le=1, description="Share of request events explained, by a stable hash of their id."
    )
    batch_records: int = Field(default=100, ge=1, description="Most records consumed (and explained) per batch.")
    poll_timeout_s: float = Field(default=1.0, gt=0, description="Seconds one poll of the consumer waits.")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of /metrics (on the explainer's host); none: no metrics."
    )
    session_timeout_ms: int = Field(default=6000, ge=1, description="Kafka consumer session timeout.")
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka property for the consumer and producer (TLS, SASL: security.protocol=SASL_SSL, "
        "sasl.mechanism=PLAIN, ...).",
        json_schema_extra={"aliases": ["-X"]},
    )

    @property
    def source(self) -> str:
        return self.source_topic or topics(self.inference_service).events

    @property
    def target(self) -> str:
        return self.target_topic or topics(self.inference_service).explanations


def sampled(event_id: str, rate: float) -> bool:
    """Whether the event with this id is explained: a stable hash, so every worker agrees."""
    if rate >= 1.0:
        return True
    digest = int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")
    return digest / 2**64 < rate


def decode_instances(body: bytes, content_type: str | None) -> np.ndarray:
    """The instances of a logged request body (V1, V2 JSON or V2 binary); CodecError when it holds none we can read."""
    header_length = None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:  # a V2 binary body: its JSON header leads it
        header_length = binary_header_length(body)
        obj = orjson.loads(body[:header_length])
    if (
        isinstance(obj, dict)
        and isinstance(obj.get("inputs"), list)
        and obj["inputs"]
        and isinstance(obj["inputs"][0], dict)
    ):
        request = decode_v2_request(body, header_length)
        if len(request.inputs) != 1:
            raise CodecError(f"{len(request.inputs)} input tensors; the explainer takes one")
        return request.inputs[0].data
    decoded = decode_v1_request(body)
    if isinstance(decoded.instances, dict):
        raise CodecError("named V1 input columns; the explainer takes rows")
    return decoded.instances


def decode_llm_request(body: bytes) -> np.ndarray:
    """The completion requests of a logged OpenAI chat/completions body (or a V1 `instances` body of them);
    the explainer generates the completion greedily (the logged answer is a separate response event)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise CodecError(f"not JSON: {err}") from None
    if not isinstance(obj, dict) or not ("messages" in obj or "prompt" in obj or "instances" in obj):
        raise CodecError("not an OpenAI chat/completions request")
    items = obj["instances"] if "instances" in obj else [obj]
    if not isinstance(items, list) or not items:
        raise CodecError("no completion requests in the body")
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def explanation_event(isvc: str, request_id: str, response: ExplainResponse, source: str) -> CloudEvent:
    attrs = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": EXPLANATION_TYPE,
        "source": source,
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
        "subject": isvc,
        "inferenceservicename": isvc,
        "requestid": request_id,
        "explainer": response.explainer,
    }
    return CloudEvent(attrs, orjson.dumps(response.model_dump(mode="json")))


class StreamWorker:
    """One consumer-group member: consume, sample, explain, publish, commit."""

    def __init__(self, stream: StreamSettings, settings: ExplainerSettings):
        self.stream, self.settings = stream, settings
        self.metrics = ExplainerMetrics(
            stream.inference_service, settings.name, settings.explainer_type, settings.token_metric_top_k
        )
        self.events = Counter(
            "infertap_explainer_stream_events",
            "Events read by the stream worker, by outcome.",
            ("inference_service", "model", "explainer", "outcome"),
            registry=self.metrics.registry,
        )
        self.explainer = create_explainer(settings, on_request=self.metrics.on_predictor_request)
        self.source = f"infertap/explainer/{stream.inference_service}"
        self._stop = False
        self.published = 0

    def _count(self, outcome: str, n: int = 1) -> None:
        self.events.labels(
            self.stream.inference_service, self.settings.name, self.settings.explainer_type, outcome
        ).inc(n)

    def stop(self, *_args) -> None:
        self._stop = True

    def run(self, max_seconds: float | None = None) -> None:
        self.explainer.load()
        s = self.stream
        group = s.group or f"infertap-explainer-{s.inference_service}"
        consumer = clients.consumer(
            s.bootstrap,
            group,
            client_id=group,
            log_name=LIBRDKAFKA_LOG,
            session_timeout_ms=s.session_timeout_ms,
            max_poll_interval_ms=300_000,
            kafka_config=s.kafka_config,
        )
        producer = clients.producer(
            s.bootstrap, client_id="infertap-explainer", log_name=LIBRDKAFKA_LOG, kafka_config=s.kafka_config
        )
        consumer.subscribe([s.source])
        started = time.monotonic()
        log.info("explaining %.0f%% of %s into %s", s.sample_rate * 100, s.source, s.target)
        try:
            while not self._stop and (max_seconds is None or time.monotonic() - started < max_seconds):
                messages = consumer.consume(s.batch_records, s.poll_timeout_s)
                records = [m for m in messages if m.error() is None]
                if not records:
                    continue
                for message in self._handle(records):
                    producer.produce(
                        s.target, value=message.value, key=message.key, headers=list(message.headers.items())
                    )
                if producer.flush(30) != 0:
                    raise RuntimeError(f"explanations not acknowledged by {s.bootstrap}")
                consumer.commit(asynchronous=False)
        finally:
            consumer.close()
            self.explainer.close()

    def _handle(self, records) -> list[ce_kafka.KafkaMessage]:
        out = []
        for record in records:
            headers = {k: (v or b"") for k, v in (record.headers() or [])}
            if headers.get("ce_type", b"").decode() != REQUEST_TYPE:
                self._count("not_request")
                continue
            if headers.get("ce_component", b"predictor") not in (b"predictor", b""):
                # a transformer's or explainer's logger writing to the same topic: not the model's inputs
                self._count("not_predictor")
                continue
            event = ce_kafka.from_binary_event(
                ce_kafka.KafkaMessage(headers=headers, key=record.key(), value=record.value() or b"")
            )
            if not sampled(event.get_id(), self.stream.sample_rate):
                self._count("not_sampled")
                continue
            response = self._explain(event)
            if response is not None:
                request_id = event.get_id()
                out.append(
                    ce_kafka.to_binary_event(
                        explanation_event(self.stream.inference_service, request_id, response, self.source),
                        key_mapper=_fixed_key(request_id),
                    )
                )
        self.published += len(out)
        return out

    def _explain(self, event: BaseCloudEvent) -> ExplainResponse | None:
        attrs = event.get_attributes()
        try:
            data = event.get_data() or b""
            body = data if isinstance(data, bytes) else orjson.dumps(data)
            if self.explainer.input_kind == "llm":  # an OpenAI chat/completions request (or a V1 body of them)
                X = decode_llm_request(body)
            else:
                X = decode_instances(body, attrs.get("datacontenttype"))
            X = self.explainer.check_input(X)[: self.settings.max_instances]
            started = time.perf_counter()
            explanations = self.explainer.explain(
                X, ExplainOptions(deadline=time.monotonic() + self.settings.deadline_s)
            )
        except CodecError as err:
            self._count("undecodable")
            log.debug("event %s: %s", event.get_id(), err)
            return None
        except ExplainerError as err:
            self._count("failed")
            self.metrics.observe_error(str(err.status))
            log.warning("event %s not explained: %s", event.get_id(), err)
            return None
        self.metrics.latency.observe(time.perf_counter() - started)
        self.metrics.instances.inc(len(explanations))
        self.metrics.observe_explanations(explanations)
        self._count("explained")
        return ExplainResponse(
            model_name=self.settings.name, explainer=self.settings.explainer_type, explanations=list(explanations)
        )


def _fixed_key(key: str) -> ce_kafka.KeyMapper:
    """A Kafka key mapper that gives every event `key`."""
    return lambda _event: key


def _stream_command():
    from infertap.flags import CommandLine

    return CommandLine(
        prog="python -m infertap.explainers.stream",
        description="infertap explainer stream worker: explains sampled request events of a topic. "
        "Takes the stream flags and the explainer server's flags (python -m infertap.explainers --help).",
        models={"stream": StreamSettings, "explainer": ExplainerSettings},
        extra=lambda p: p.add_argument(
            "--max-seconds", type=float, metavar="SECONDS", help="Stop after this long (tests, benchmarks)."
        ),
    )


def _name_default(parsed) -> None:
    """The explainer's `name` defaults to the InferenceService."""
    explainer, stream = parsed.values["explainer"], parsed.values["stream"]
    if "name" not in explainer and stream.get("inference_service"):
        explainer["name"] = stream["inference_service"]


def parse_args(argv: list[str] | None = None, prog: str | None = None):
    """(StreamSettings, ExplainerSettings, max_seconds) from flags over $INFERTAP_EXPLAIN_STREAM_* and
    $INFERTAP_EXPLAINER_*; bad input exits 2 with a sentence naming the flag."""
    settings, ns = _stream_command().settings_and_args(argv, prog=prog, finish=_name_default)
    return settings["stream"], settings["explainer"], ns.max_seconds


def main(argv: list[str] | None = None) -> None:
    stream, settings, max_seconds = parse_args(argv)
    serve(stream, settings, max_seconds)


def serve(stream: StreamSettings, settings: ExplainerSettings, max_seconds: float | None = None) -> None:
    """Run a stream worker until SIGINT/SIGTERM (or `max_seconds`), metrics on `stream.metrics_port`."""
    from prometheus_client import start_http_server

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = StreamWorker(stream, settings)
    if stream.metrics_port is not None:
        start_http_server(stream.metrics_port, addr=settings.host, registry=worker.metrics.registry)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, worker.stop)
    worker.run(max_seconds)


if __name__ == "__main__":
    main()
