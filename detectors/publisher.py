"""What a worker sends out: detection CloudEvents (Kafka topic, then the reply URL), dead
letters, and the metrics of what it judged and published.

Used from the judge's thread only. A Kafka publish is retried (backing off up to 10 s)
until it succeeds or the worker stops; the reply URL is a courtesy copy, tried three times.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from infertap.detectors.decode import DecodedWindow, Reject
from infertap.detectors.events import Origin, dead_letter_event, to_http, to_kafka, window_event
from infertap.detectors.kafka import PublishError, Sink
from infertap.detectors.metrics import DetectorMetrics
from infertap.detectors.result import DetectionResult
from infertap.detectors.settings import WorkerSettings

if TYPE_CHECKING:
    import httpx
    from cloudevents.core.v1.event import CloudEvent

log = logging.getLogger(__name__)


class Publisher:
    """Publishes detections and dead letters; `open` before the first, `close` at the end."""

    def __init__(self, settings: WorkerSettings, metrics: DetectorMetrics, stop: threading.Event):
        self.settings = settings
        self.metrics = metrics
        self.origin = Origin(settings.source_uri, settings.inference_service, settings.name)
        self._stop = stop
        self._sink: Sink | None = None
        self._http: httpx.Client | None = None
        self.windows_published = 0

    def open(self) -> None:
        self._sink = Sink(self.settings.bootstrap, self.settings.kafka_config)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
        if self._http is not None:
            self._http.close()

    def detection(self, decoded: DecodedWindow, result: DetectionResult, seconds: float) -> None:
        """Publish one judged window (retrying the publish until it succeeds or we stop)."""
        self.metrics.count_events("used", sum(len(e.records) for e in decoded.events))
        self.metrics.observe(result, seconds)
        companions, result = result.companions, result.model_copy(update={"companions": []})
        for companion in companions:  # a TextSuite's outlier member: its own event, its own metrics
            self.metrics.observe(companion, 0.0, window=False)
        events = [window_event(self.origin, decoded, r) for r in (result, *companions)]
        self._publish(
            _filled(self.settings.output_topic), [to_kafka(e, key=self.settings.name) for e in events], "kafka"
        )
        if self.settings.reply_url:
            for event in events:
                self._reply(event, self.settings.reply_url)
        self.windows_published += 1
        for part in (result, *companions):
            log.info("window of %d events (%d rows): %s", len(decoded.events), decoded.x.shape[0], summary(part))

    def dead_letters(self, rejects: list[Reject]) -> None:
        if rejects:
            self._publish(
                _filled(self.settings.dead_letter_topic),
                [to_kafka(dead_letter_event(self.origin, r)) for r in rejects],
                "deadletter",
            )

    def _publish(self, topic: str, messages: list, sink: str) -> None:
        if self._sink is None:
            raise RuntimeError("the publisher is not open (call open first)")
        delay = 0.5
        while True:
            try:
                self._sink.publish(topic, messages)
                self.metrics.count_published(sink, "ok")
                return
            except PublishError as exc:
                self.metrics.count_published(sink, "retried")
                log.warning("publishing to %s failed (%s); retrying in %.1fs", topic, exc, delay)
                if self._stop.wait(delay):
                    raise
                delay = min(delay * 2, 10.0)

    def _reply(self, event: CloudEvent, url: str) -> None:
        import httpx

        headers, body = to_http(event)
        for attempt in range(3):
            try:
                if self._http is None:
                    self._http = httpx.Client(timeout=5.0)
                reply = self._http.post(url, headers=headers, content=body)
                if reply.status_code < 300:
                    self.metrics.count_published("http", "ok")
                    return
                log.warning("reply URL answered %d", reply.status_code)
            except httpx.HTTPError as exc:
                log.warning("reply URL %s: %s", url, exc)
            time.sleep(0.2 * (attempt + 1))
        self.metrics.count_published("http", "failed")  # the topic has it; the reply URL is a courtesy copy


def _filled(topic: str | None) -> str:
    """An output topic: WorkerSettings fills in every one it leaves unset."""
    if topic is None:
        raise ValueError("no output topic: WorkerSettings fills it in")
    return topic


def summary(result: DetectionResult) -> str:
    """One line for the log."""
    excluded = {k: v for k, v in result.excluded.items() if v}
    tail = f" excluded={excluded}" if excluded else ""
    if result.kind == "drift":
        drifted = [f.name for f in result.features if f.is_drift]
        return f"drift={result.is_drift} p={result.p_val} features={drifted}{tail}"
    if result.kind == "performance":
        figures = " ".join(
            f"{m.name}={m.value:.4g}{'!' if m.alert else ''}" for m in result.metrics if m.value is not None
        )
        return f"{result.performance_kind} performance: {figures} alert={result.is_alert}{tail}"
    if result.kind == "dataquality":
        violated = [f"{v.feature}:{v.check}={v.count}" for v in result.violations]
        return f"data quality of {result.n} rows: violations={violated}{tail}"
    flags = result.is_outlier if result.kind == "outlier" else result.is_adversarial
    return f"{result.kind}: {sum(bool(f) for f in flags or [])} of {result.n} flagged{tail}"
