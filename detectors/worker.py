"""The detector worker: a consumer-group member that judges windows of inference events.

Reading and decoding the next window overlaps the detector's work on this one. The detector
runs in a process of its own (`infertap.detectors.predictor`: a predict holds the GIL, so a
thread beside it would slow it down rather than overlap it); this process has two threads
with a bounded hand-off between them (`infertap.detectors.handoff`). Four parts, one job each;
this module wires them:

- `reader.Reader` (its own thread): owns the Kafka consumer, turns records into events,
  fills the window, decodes each window that closes and hands it over; commits what the
  ledger allows, and before partitions move;
- `judge.Judge` (the thread that called `run`): sends windows to the detector process and
  gets their results, has them published, settles their ledger tickets;
- `ledger.CommitLedger`: which offsets are safe to commit, the commit rules in one place: an
  offset is committed only once every window that covers it has its detection published and
  its dead letters written (and an online detector's state saved);
- `publisher.Publisher`: detections (Kafka topic, then the reply URL), dead letters, and the
  metrics of what was judged and published.

So a worker killed at any moment loses nothing: its successor re-reads from the last commit
(at-least-once; detections carry offsets so duplicates can be recognised), and a worker
stopped with windows in flight commits exactly the windows it published.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

from infertap.detectors.decode import Decoder
from infertap.detectors.evaluator import Evaluator
from infertap.detectors.handoff import Handoff, Work
from infertap.detectors.judge import Judge
from infertap.detectors.ledger import CommitLedger
from infertap.detectors.metrics import DetectorMetrics
from infertap.detectors.predictor import PredictorError, RemoteEvaluator
from infertap.detectors.publisher import Publisher
from infertap.detectors.reader import Reader
from infertap.detectors.settings import WorkerSettings

if TYPE_CHECKING:
    from infertap.detectors.text.frame import TextDecoder

log = logging.getLogger(__name__)


class Worker:
    """One worker process's parts; `run()` until `stop()` (or SIGTERM/SIGINT via `main`)."""

    def __init__(
        self,
        settings: WorkerSettings,
        evaluator: Evaluator | RemoteEvaluator | None = None,
        metrics: DetectorMetrics | None = None,
    ):
        self.settings = settings
        self.metrics = metrics or DetectorMetrics(settings.inference_service, settings.detector)
        self.evaluator = evaluator
        self._stop = threading.Event()
        self.ledger = CommitLedger()
        self.handoff: Handoff[Work] = Handoff(slots=1)
        self.publisher = Publisher(settings, self.metrics, self._stop)
        self.judge = Judge(self.handoff, self.publisher, self.ledger)
        self.reader = Reader(
            settings, self.metrics, self.ledger, self.handoff, self._stop, judging=lambda: self.judge.running
        )

    @property
    def decoder(self) -> Decoder | TextDecoder:
        return self.reader.decoder

    @property
    def windows_published(self) -> int:
        return self.publisher.windows_published

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Start the detector process (unless given an evaluator), join the group, judge until
        stopped, then leave cleanly."""
        s = self.settings
        if self.evaluator is None:
            self.evaluator = RemoteEvaluator(s)
        # Detector libraries (an in-process evaluator's) leave millions of long-lived objects;
        # without this, full collections triggered by the per-record allocations walk them all
        # (measured: ~40% of a TabularDrift worker's time on 1,000-event windows).
        gc.freeze()
        self.publisher.open()
        self.reader.open()
        log.info(
            "detector %s (%s) reading %s as group %s; detections to %s",
            s.name,
            s.detector,
            s.topic,
            s.consumer_group,
            s.output_topic,
        )
        reader = threading.Thread(target=self.reader.run, name=f"reader-{s.name}", daemon=True)
        # The judge mostly waits (detector process, broker acks); when it wakes, it needs the GIL
        # from the busy reader. 1 ms switches instead of 5 keep the detector fed (measured: the
        # detector idled 1-2 ms a window at 5 ms, 0.5 ms at 1 ms).
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, 0.001))
        self.judge.running = True
        reader.start()
        try:
            self.judge.run(self.evaluator, reader)
        finally:
            sys.setswitchinterval(switch)
            self.judge.running = False
            self._stop.set()
            reader.join()
            self.handoff.abandon()  # work never taken stays owed in the ledger
            try:
                self.reader.commit()  # only what is safe: retained and unsettled events stay uncommitted
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                log.warning("final commit failed: %s", exc)
            self.reader.close()
            self.publisher.close()
            self.evaluator.close()
        if self.reader.error is not None:
            raise self.reader.error


def serve_metrics(settings: WorkerSettings, metrics: DetectorMetrics) -> None:
    """GET /metrics on the metrics port (a daemon thread)."""
    from prometheus_client import start_http_server

    start_http_server(settings.metrics_port, addr=settings.host, registry=metrics.registry)


def main(settings: WorkerSettings) -> None:
    """Run a worker in this process until SIGTERM or SIGINT; metrics served once the detector is ready."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.transport == "http":
        from infertap.detectors.ingress import run

        run(settings)
        return
    worker = Worker(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    try:
        worker.evaluator = RemoteEvaluator(settings)
    except PredictorError as exc:  # a sentence and exit 1, not a traceback
        log.error("cannot build detector %s (%s): %s", settings.name, settings.detector, exc)
        raise SystemExit(1) from None
    serve_metrics(settings, worker.metrics)
    try:
        worker.run()
    except PredictorError as exc:  # e.g. killed for memory: exit 1 and let the supervisor restart us
        log.error("detector %s (%s) stopped: %s", settings.name, settings.detector, exc)
        raise SystemExit(1) from None
