"""HTTP ingress: binary-mode CloudEvents on `POST /`, as Seldon's alibi-detect-server takes them.

So a worker can sit behind a Knative Trigger (filter `type:
org.kubeflow.serving.inference.request`). Each event goes through the same decoder, window
and detector as on Kafka; when a window closes the reply is the detection, itself a
binary-mode CloudEvent (Knative routes a reply event onward), and it is also POSTed to
`replyUrl` when set. Until then the reply is 202 with how full the window is.

Events that cannot be decoded get 400 `{"error": ...}` and count in the dead-letter metric.
The detector runs in a worker thread, one window at a time: the event loop never blocks.
`GET /metrics` serves the worker's Prometheus metrics on the same port. Bodies over
`max_request_bytes` get 413; with `auth_token` (or `$INFERTAP_AUTH_TOKEN`) every POST needs
`Authorization: Bearer <token>` (401 otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from infertap.detectors.decode import Record, records_to_events
from infertap.detectors.evaluator import Evaluator, build_backend
from infertap.detectors.events import Origin, detection_event, to_http
from infertap.detectors.framing import make_decoder
from infertap.detectors.metrics import DetectorMetrics
from infertap.detectors.settings import WorkerSettings
from infertap.detectors.window import make_window

log = logging.getLogger(__name__)


def http_record(headers: dict[str, str], body: bytes, seq: int) -> Record:
    """A binary-mode HTTP CloudEvent as the Kafka-shaped Record the decoder reads (`ce-x` -> `ce_x`)."""
    mapped = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("ce-"):
            mapped["ce_" + lower[3:]] = value.encode("utf-8")
        elif lower == "content-type":
            mapped["content-type"] = value.encode("utf-8")
    return Record(topic="http", partition=0, offset=seq, value=body, headers=mapped, timestamp=time.time())


def create_app(settings: WorkerSettings, evaluator: Evaluator, metrics: DetectorMetrics | None = None) -> FastAPI:
    """The ingress app around a ready evaluator."""
    if settings.events == "joined":
        raise ValueError("the HTTP ingress takes request or response events, not joined ones (use Kafka)")
    metrics = metrics or DetectorMetrics(settings.inference_service, settings.detector)
    decoder = make_decoder(settings)
    window = make_window(settings.window.size, settings.window.duration, settings.window.slide)
    origin = Origin(settings.source_uri, settings.inference_service, settings.name)
    lock = asyncio.Lock()
    counter = iter(range(1 << 62))
    app = FastAPI(title=f"infertap detector {settings.name}", docs_url=None, redoc_url=None)
    app.state.metrics = metrics

    def judge(events):
        decoded = decoder.decode(events)
        if not decoded.events:
            return [], decoded
        result, seconds = evaluator.evaluate(decoded.x)
        result = result.model_copy(update={"excluded": decoded.excluded})
        metrics.observe(result, seconds)
        companions, result = result.companions, result.model_copy(update={"companions": []})
        for companion in companions:  # a TextSuite's outlier member: an event of its own
            metrics.observe(companion, 0.0, window=False)
        evaluator.save_state()
        parts = (result, *(c.model_copy(update={"excluded": decoded.excluded}) for c in companions))
        return [detection_event(origin, r, decoded.events, len(decoded.rejects)) for r in parts], decoded

    @app.post("/")
    async def receive(request: Request) -> Response:
        body = await request.body()
        record = http_record(dict(request.headers), body, next(counter))
        events, rejects, ignored = records_to_events([record], settings.events)
        if rejects:
            metrics.count_dead(rejects[0].reason)
            metrics.count_events("rejected")
            return JSONResponse({"error": f"{rejects[0].reason}: {rejects[0].message}"}, status_code=400)
        if ignored:
            metrics.count_events("ignored")
            return JSONResponse({"ignored": f"not a {settings.events} event"}, status_code=202)
        # decode this event now so a bad payload is answered 400, not buried in a later window
        single = decoder.decode(events)
        if single.rejects:
            reject = single.rejects[0]
            metrics.count_dead(reject.reason)
            metrics.count_events("rejected")
            return JSONResponse({"error": f"{reject.reason}: {reject.message}"}, status_code=400)
        async with lock:
            closed = window.add(events) + window.tick(time.time())
            replies = []
            for events_of_window in closed:
                published, decoded = await run_in_threadpool(judge, events_of_window)
                metrics.count_events("used", len(decoded.events))
                replies += published
            buffered = len(window.retained())
        if not replies:
            return JSONResponse(
                {"buffered": buffered, "window": settings.window.size or settings.window.duration}, status_code=202
            )
        for event in replies:
            if settings.reply_url:
                await _forward(settings.reply_url, event, metrics)
        headers, data = to_http(replies[-1])
        return Response(content=data, headers=headers, status_code=200)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/protocol")
    async def protocol() -> dict:  # alibi-detect-server answers this too
        return {"protocol": "cloudevents-binary", "events": settings.events, "detector": settings.detector}

    return app


async def _forward(url: str, event, metrics: DetectorMetrics) -> None:
    import httpx

    headers, data = to_http(event)
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            reply = await client.post(url, headers=headers, content=data)
        metrics.count_published("http", "ok" if reply.status_code < 300 else "failed")
    except httpx.HTTPError as exc:
        log.warning("reply URL %s: %s", url, exc)
        metrics.count_published("http", "failed")


def run(settings: WorkerSettings) -> None:
    """Serve the ingress on the metrics port until SIGTERM/SIGINT."""
    import uvicorn

    try:
        evaluator = Evaluator(build_backend(settings), settings.state_dir)
    except Exception as exc:  # noqa: BLE001 - a sentence and exit 1, not a traceback (as the Kafka worker)
        log.error("cannot build detector %s (%s): %s: %s", settings.name, settings.detector, type(exc).__name__, exc)
        raise SystemExit(1) from None
    from infertap.serving.rest.guard import RequestGuard, token_from_env

    app = RequestGuard(create_app(settings, evaluator), settings.max_request_bytes, token_from_env(settings.auth_token))
    uvicorn.run(app, host=settings.host, port=settings.metrics_port, log_level="warning")
