"""Fixtures of the tap tests (imported by test_proxy/test_middleware/test_ingest/test_end_to_end).

- `upstream`: a real model-server stand-in (tests/sidecar/tap_upstream.py) in a child process.
- `serve_app`: serves the sidecar's proxy with its own server (`infertap.sidecar.front`), or an ASGI
  app (a middleware-wrapped app) with uvicorn, on a real loopback port, in a thread of the
  test process, so a test can read what a `CollectingDelivery` received.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CollectingDelivery:
    """Delivery-shaped test double for the tap logic: keeps what was submitted."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.started = self.stopped = False

    def submit(self, event: Any) -> None:
        self.events.append(event)

    async def start(self) -> None:
        self.started = True

    async def stop(self, flush_timeout: float = 10.0) -> None:
        self.stopped = True

    def wait(self, n: int, timeout: float = 10.0) -> list[Any]:
        """The events once at least n arrived (the response event follows the last chunk)."""
        deadline = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.events) >= n, f"expected {n} events, got {len(self.events)}: {self.events}"
        return list(self.events)

    def of_type(self, suffix: str) -> list[Any]:
        return [e for e in self.events if e.get_type().endswith(suffix)]


class ThreadServer:
    """uvicorn serving an ASGI app in a background thread, on a real port."""

    def __init__(self, app: Any, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, lifespan="on", log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(15)


class ProxyThread:
    """The sidecar's proxy served by its production server (`infertap.sidecar.front.ProxyServer`) on
    uvloop, in a background thread, on a real port."""

    def __init__(self, proxy: Any, port: int | None = None):
        from infertap.sidecar.front import ProxyServer

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ProxyServer(proxy, "127.0.0.1", self.port, proxy.settings.max_request_bytes, graceful_s=5)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._loop: Any = None
        self._stop: Any = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        import asyncio

        import uvloop

        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            try:
                await self.server.start()
            except BaseException as exc:
                self.error = exc
                self._ready.set()
                raise
            self._ready.set()
            await self._stop.wait()
            await self.server.stop()

        uvloop.run(main())

    def __enter__(self) -> ProxyThread:
        self.thread.start()
        assert self._ready.wait(30), "sidecar did not start"
        assert self.error is None, f"sidecar did not start: {self.error!r}"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._loop is not None and self.thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(15)


@pytest.fixture
def upstream(spawn) -> str:
    """Base URL of a running tap_upstream ("model")."""
    return start_upstream(spawn, "model")


def start_upstream(spawn, name: str) -> str:
    port = free_port()
    child = spawn([sys.executable, str(HERE / "tap_upstream.py"), "--port", str(port), "--name", name], name=name)
    child.wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def serve_app() -> Iterator[Callable[[Any], ThreadServer]]:
    """`serve_app(app)` -> a started server (a ReverseProxy on the sidecar's own server, any
    other app as ASGI on uvicorn); all are stopped at teardown."""
    from infertap.sidecar.proxy import ReverseProxy

    servers: list[Any] = []

    def start(app: Any) -> Any:
        server = (ProxyThread(app) if isinstance(app, ReverseProxy) else ThreadServer(app)).__enter__()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.__exit__(None, None, None)


def port_of(url: str) -> int:
    return httpx.URL(url).port


def sidecar(serve_app, upstream_url: str, delivery: Any = None, **settings: Any) -> tuple[str, Any]:
    """The sidecar app in front of `upstream_url`, served on a real port, with a
    CollectingDelivery (or `delivery`; False: no delivery at all). Returns (url, delivery)."""
    from infertap.sidecar.proxy import ReverseProxy
    from infertap.sidecar.settings import LoggerSettings

    base = {
        "component_port": port_of(upstream_url),
        "inference_service": "iris",
        "namespace": "ns",
        "component": "predictor",
        "source_uri": "http://pod-1/",
    }
    if delivery is None:
        delivery = CollectingDelivery()
    server = serve_app(ReverseProxy(LoggerSettings(**{**base, **settings}), delivery or None))
    return server.url, delivery
