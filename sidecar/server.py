"""Running the logger sidecar: `run(settings)` serves the proxy with `infertap.sidecar.front` on uvloop.

uvloop is used when installed (the `uvicorn[standard]` extra brings it, and httptools, which
`infertap.sidecar.front` and `infertap.sidecar.upstream` need): the proxy hop is on every inference request, so
the fastest event loop pays.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

from infertap.logger.sinks import SinkConfigError
from infertap.logger.sinks.base import redact_text, shown_url
from infertap.sidecar.front import ProxyServer
from infertap.sidecar.proxy import create_app
from infertap.sidecar.settings import LoggerSettings

log = logging.getLogger("infertap.logger")

KEEP_ALIVE_S = 75.0  # client connections idle this long are closed (pooled clients reuse them)
GRACEFUL_S = 15.0  # on SIGTERM, requests in flight get this long to finish


def proxy_server(settings: LoggerSettings, delivery=None) -> ProxyServer:
    """The sidecar's server, not yet started (also used by tests and benchmarks)."""
    return ProxyServer(
        create_app(settings, delivery),
        settings.host,
        settings.port,
        settings.max_request_bytes,
        keep_alive_s=KEEP_ALIVE_S,
        graceful_s=GRACEFUL_S,
    )


async def serve(settings: LoggerSettings) -> None:
    """Serve until SIGINT/SIGTERM; the stop lets requests finish and flushes the delivery."""
    try:
        server = proxy_server(settings)
    except SinkConfigError as exc:  # a bad --log-url: say which and why, no traceback
        print(f"logger sidecar: {redact_text(str(exc))}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        await server.start()
    except OSError as exc:  # the port is taken, the spool folder cannot be written...
        raise SystemExit(
            f"logger sidecar could not start on {settings.host}:{settings.port}: {redact_text(str(exc))}"
        ) from None
    log.info(
        "logger sidecar on %s:%d -> %s:%d, sinks %s, mode %s",
        settings.host,
        server.port,
        settings.component_host,
        settings.component_port,
        ", ".join(map(shown_url, settings.log_url)) or "none",
        settings.log_mode,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _settle_garbage_collector()
    await stop.wait()
    log.info("stopping: finishing requests in flight, flushing the delivery")
    await server.stop()


class RedactingFormatter(logging.Formatter):
    """Formats a record, then stars out the secrets of every URL in the text (`redact_text`):
    sink URLs carry passwords (`sasl_password=`, `user:pass@`), and a library's message or a
    traceback may quote one (issue 19)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def setup_logging() -> None:
    """INFO lines on stderr, URLs redacted; httpx's line per request (the HTTP sink's every
    event, its URL included) only at WARNING."""
    logging.basicConfig(level=logging.INFO)
    formatter = RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run(settings: LoggerSettings) -> None:
    setup_logging()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


def _settle_garbage_collector() -> None:
    """Keep the collector off the proxy path (as the model server does).

    The imports (Kafka client, cloudevents, pydantic, httpx, prometheus_client) leave a
    heap of objects that live as long as the process, which every older-generation
    collection would walk again; `gc.freeze()` takes them out of the collector's view.
    A request's garbage is freed by reference counting, so a larger first threshold costs
    little memory and saves most young collections.
    """
    gc.collect()
    gc.freeze()
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, 10_000), second, third)
