"""The stream contract: what every part that writes or reads infertap's Kafka topics agrees on.

- `events`: CloudEvent types. KServe's `org.kubeflow.serving.inference.request` /
  `.response` (the logger's), `io.infertap.detection.drift|outlier|adversarial` and
  `.deadletter` (detectors), `io.infertap.explanation` (the explainer stream), and the
  second wave: `io.infertap.feedback`, `io.infertap.performance`, `io.infertap.dataquality`.
- `topics`: `topics(isvc).events` = `<isvc>-events`, `.detections`, `.explanations`,
  `.feedback`, `.deadletter`. Nothing else derives a topic name.
- `kafka_url`: the one `kafka://host:port[,host:port]/[topic][?options]` parser
  (`KafkaURL`); the topic is optional, a writer asks for it with `require_topic()`.
- `security`: a URL's TLS/SASL options (`KafkaSecurity`) as librdkafka properties and as
  kafka-python arguments.
- `clients`: the consumer and producer factories (librdkafka options, group settings, and
  a rate-limited log and error callback, `RepeatFilter`); keyed records are partitioned
  with murmur2 (`PARTITIONER`, Java's default) whichever client writes them.
- `feedback`: ground truth for a logged id (`{"id", "target", "time"}`), one item per record
  of `<isvc>-feedback`, keyed by the prediction's id so it is co-partitioned with the events;
  parsed and checked in one place (`parse_items`, `from_record`, `Targets`).

Envelope (all types): CloudEvents 1.0 over the Kafka protocol binding, binary mode (`ce_`
headers, the raw body as value); the key is the event id (a request and its response share
a partition), a detector's name for detections. `subject` is the InferenceService on
everything infertap emits itself.

This package imports nothing else of infertap's (import-linter checks it: see
pyproject.toml); the logger, detectors, explainers and the stack import it.
"""

from __future__ import annotations

from .clients import (
    PARTITIONER,
    RepeatFilter,
    consumer,
    consumer_config,
    kafka_python_consumer,
    librdkafka_logger,
    producer,
    producer_config,
)
from .events import (
    ADVERSARIAL_TYPE,
    DATA_QUALITY_TYPE,
    DEAD_LETTER_TYPE,
    DETECTION_TYPES,
    DRIFT_TYPE,
    EXPLANATION_TYPE,
    FEEDBACK_TYPE,
    OUTLIER_TYPE,
    PERFORMANCE_TYPE,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    detection_kind,
    detection_type,
)
from .kafka_url import KafkaURL, KafkaURLError
from .security import KafkaSecurity, kafka_python_options
from .topics import Topics, check_topic, topics

__all__ = [
    "PARTITIONER",
    "ADVERSARIAL_TYPE",
    "DATA_QUALITY_TYPE",
    "DEAD_LETTER_TYPE",
    "DETECTION_TYPES",
    "DRIFT_TYPE",
    "EXPLANATION_TYPE",
    "FEEDBACK_TYPE",
    "OUTLIER_TYPE",
    "PERFORMANCE_TYPE",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "KafkaSecurity",
    "KafkaURL",
    "KafkaURLError",
    "RepeatFilter",
    "Topics",
    "check_topic",
    "consumer",
    "consumer_config",
    "detection_kind",
    "detection_type",
    "kafka_python_consumer",
    "kafka_python_options",
    "librdkafka_logger",
    "producer",
    "producer_config",
    "topics",
]
