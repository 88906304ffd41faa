"""Delivery: takes CloudEvents off the inference path and gets them to every sink.

    delivery = build_delivery(settings)     # one sink per settings.log_url entry
    await delivery.start()                  # opens spools, replays what a crash left
    delivery.submit(event)                  # from the request path: O(1), never blocks or raises
    await delivery.stop(flush_timeout=10)   # sends what it can, spools the rest

Each sink has its own queue, worker and spool folder (`<spool_dir>/<sink>-<hash>/`), so a
dead sink never holds back another. The folder is named after where the events go (scheme,
brokers or host, topic or path), not after the URL's options: events spooled while a sink's
TLS/SASL options, timeouts or client were wrong are replayed once the URL is fixed. See
`worker.py` for the queue/spool modes and
`spool.py` for what survives a crash. Delivery is at least once.

The spool folder (`spool_dir`) defaults to `$TMPDIR/infertap-spool-<uid>/<inference service>`:
per user, so no other local user can have made it first. Every spool folder is this user's
own, 0700 (`spool.private_dir`); one that belongs to another user is refused with a
`SinkConfigError` (the sidecar exits 2 with the sentence), and segments are written 0600.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from cloudevents.core.v1.event import CloudEvent

from ..metrics import DeliveryMetrics, default_metrics
from ..settings import DeliverySettings
from ..sinks import Sink, SinkConfigError, build_sink, shown_url
from .record import event_size
from .spool import private_dir
from .worker import Limits, SinkWorker

__all__ = ["Delivery", "build_delivery", "Limits"]

log = logging.getLogger(__name__)


def spool_folder_name(sink: Sink, url: str) -> str:
    """Stable per-destination folder name: a readable prefix and a hash of where the events go
    (`scheme://brokers-or-host/topic-or-path`; no credentials, no query options)."""
    parts = urlsplit(url)
    destination = f"{parts.scheme.lower()}://{parts.netloc.rpartition('@')[2].lower()}{parts.path}"
    return _folder_name(sink, destination)


def _legacy_folder_name(sink: Sink, url: str) -> str:
    """The name before 2026-11-28: a hash of the whole URL but its SASL password."""
    return _folder_name(sink, re.sub(r"(sasl_password=)[^&]*", r"\1", url))


def _folder_name(sink: Sink, key: str) -> str:
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "_", sink.name)[:60]
    return f"{prefix}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def default_spool_dir(inference_service: str) -> Path:
    """`$TMPDIR/infertap-spool-<uid>/<service>`: a folder per user, never one shared with others."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", inference_service).strip(".") or "default"
    return Path(tempfile.gettempdir()) / f"infertap-spool-{os.geteuid()}" / name


def safe_spool_dir(path: Path, trusted: Path | None = None) -> Path:
    """`spool.private_dir`, failing with a `SinkConfigError` that says what to do (exit 2)."""
    try:
        return private_dir(path, trusted)
    except OSError as exc:  # SpoolDirError (another user's folder) or the folder cannot be made
        message = str(exc) if exc.errno is None else f"spool folder {path} cannot be used ({exc}); set --spool-dir"
        raise SinkConfigError(message) from None


def _spool_folder(spool_dir: Path, sink: Sink, url: str) -> Path:
    """The sink's spool folder; one left under the legacy name by an older version is taken over."""
    folder, legacy = spool_dir / spool_folder_name(sink, url), spool_dir / _legacy_folder_name(sink, url)
    if legacy != folder and legacy.is_dir() and not folder.exists():
        legacy.rename(folder)
        log.info("%s: spool folder %s renamed to %s (named by destination now)", sink.name, legacy.name, folder.name)
    return folder


class Delivery:
    """Takes CloudEvents off the inference path and gets them to every sink, losing none."""

    def __init__(
        self,
        sinks: Sequence[tuple[str, Sink]],
        spool_dir: Path,
        limits: Limits | None = None,
        metrics: DeliveryMetrics | None = None,
        inference_service: str = "",
        component: str = "",
    ):
        """`sinks`: (url, sink) pairs; the URL names the sink's spool folder."""
        metrics = metrics or default_metrics()
        limits = limits or Limits()
        self.spool_dir = safe_spool_dir(Path(spool_dir))
        seen: dict[str, str] = {}  # spool folder -> the first URL that named it
        for url, sink in sinks:
            first = seen.setdefault(spool_folder_name(sink, url), url)
            if first is not url:
                raise SinkConfigError(
                    f"two sinks deliver to the same place ({shown_url(url)} and {shown_url(first)}): "
                    "give each destination once"
                )
        self.workers = [
            SinkWorker(
                sink,
                safe_spool_dir(_spool_folder(self.spool_dir, sink, url)),
                limits,
                metrics.for_sink(inference_service, component, sink.name, sink),
            )
            for url, sink in sinks
        ]
        self._failed_submits = 0

    def submit(self, event: CloudEvent) -> None:
        """Queue `event` for every sink. Never blocks, never raises; thread-safe."""
        try:
            size = event_size(event)
            for worker in self.workers:
                worker.offer(event, size)
        except Exception:  # noqa: BLE001 - logging must never fail an inference request
            self._failed_submits += 1
            if self._failed_submits == 1 or self._failed_submits % 1000 == 0:
                log.exception("delivery: could not queue an event (%d so far)", self._failed_submits)

    async def start(self) -> None:
        """Open spools (replaying what a previous run left) and start the workers."""
        for worker in self.workers:
            await worker.start()

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Flush: send what the sinks take within `flush_timeout`, spool the rest; close all."""
        await asyncio.gather(*(w.stop(flush_timeout) for w in self.workers))

    def idle(self) -> bool:
        """True when every sink has taken everything (nothing queued, in flight or spooled)."""
        return all(w.idle() for w in self.workers)

    def counts(self) -> dict[str, dict[str, int]]:
        """Events by outcome per sink name, for tests, benchmarks and status pages."""
        return {w.sink.name: dict(w.counts) for w in self.workers}


def build_delivery(settings: DeliverySettings, metrics: DeliveryMetrics | None = None) -> Delivery:
    """A Delivery with one sink per `settings.log_url` (raises SinkConfigError on a bad URL)."""
    http_options = {
        "timeout_s": settings.http_timeout_s,
        "retries": settings.http_retries,
        "concurrency": settings.http_concurrency,
        "ca_cert_file": settings.logger_ca_cert_file,
        "tls_skip_verify": settings.logger_tls_skip_verify,
        "header_encoding": settings.ce_header_encoding,
    }
    sinks = [
        (url, build_sink(url, kafka_client=settings.kafka_client, http_options=http_options))
        for url in settings.log_url
    ]
    spool_dir = settings.spool_dir
    if spool_dir is None:  # the per-user folder under the temp dir: check it from there down
        spool_dir = safe_spool_dir(default_spool_dir(settings.inference_service), Path(tempfile.gettempdir()))
    limits = Limits(
        queue_max_events=settings.queue_max_events,
        queue_max_bytes=settings.queue_max_bytes,
        batch_max_events=settings.batch_max_events,
        batch_max_bytes=settings.batch_max_bytes,
        batch_linger_s=settings.batch_linger_ms / 1000,
        spool_max_bytes=settings.spool_max_bytes,
        spool_segment_bytes=settings.spool_segment_bytes,
        spool_full_policy=settings.spool_full_policy,
        sink_timeout_s=settings.sink_timeout_s,
        retry_backoff_s=settings.retry_backoff_s,
        retry_backoff_max_s=settings.retry_backoff_max_s,
    )
    return Delivery(sinks, spool_dir, limits, metrics, settings.inference_service, settings.component)
