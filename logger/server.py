"""Running the logger sidecar: `run(settings)` serves `create_app(settings)` with uvicorn.

uvloop and httptools are used when installed (the `uvicorn[standard]` extra): the proxy hop
is on every inference request, so the fastest event loop and HTTP parser pay.
"""
from __future__ import annotations

import gc
import importlib.util
import logging

import uvicorn

from logger.proxy import create_app
from logger.settings import LoggerSettings

log = logging.getLogger("infertap.logger")


def uvicorn_config(settings: LoggerSettings, app=None) -> uvicorn.Config:
    """The uvicorn configuration the sidecar runs with (also used by tests and benchmarks)."""
    return uvicorn.Config(
        app if app is not None else create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # the sidecar forwards X-Forwarded-* itself; skip uvicorn's rewrite
        # transparent: the model server's Date (and Server, if any) pass through; uvicorn's own
        # would duplicate them
        server_header=False,
        date_header=False,
        log_level="info",
        timeout_graceful_shutdown=15,
        # the proxy streams bodies itself; keep-alive long enough for pooled clients
        timeout_keep_alive=75,
    )


def run(settings: LoggerSettings) -> None:
    """Serve the sidecar until SIGINT/SIGTERM; shutdown flushes the delivery."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("logger sidecar on %s:%d -> %s:%d, sinks %s, mode %s", settings.host, settings.port,
             settings.component_host, settings.component_port, settings.log_url or "none", settings.log_mode)
    config = uvicorn_config(settings)
    _settle_garbage_collector()
    uvicorn.Server(config).run()


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
