"""The model server: `create_app(settings)` builds the FastAPI app, `run(settings)` serves it with uvicorn.

python -m infertap.serving --model-name iris --model-format sklearn --storage-uri models/sklearn-iris
"""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from infertap.serving.errors import ModelLoadError
from infertap.serving.metrics import ServerMetrics
from infertap.serving.openai import SCHEMA_MODELS as OPENAI_SCHEMA_MODELS
from infertap.serving.openai import openai_router, serves_openai
from infertap.serving.repository import ModelRepository
from infertap.serving.rest import v1, v2
from infertap.serving.rest.errors import install_error_handlers
from infertap.serving.rest.openapi import example_bodies, install_openapi, set_example
from infertap.serving.rest.v1 import v1_router
from infertap.serving.rest.v2 import v2_router
from infertap.serving.settings import ServerSettings

log = logging.getLogger("infertap.serving")


def _version() -> str:
    try:
        return package_version("infertap")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(settings: ServerSettings) -> FastAPI:
    """The ASGI app for `settings`. Models load at startup (lifespan) unless already loaded.

    `app.state.repository` holds the runtimes, `app.state.metrics` the Prometheus registry.
    """
    repository = ModelRepository(settings.models)
    metrics = ServerMetrics(settings.inference_service, settings.component)
    for runtime in repository.runtimes.values():
        runtime.on_batch = metrics.batch_observer(runtime.name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(repository.load_all)
        _report_ready(metrics, repository)
        yield
        await repository.close()

    app = FastAPI(
        title="infertap model server",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings, app.state.repository, app.state.metrics = settings, repository, metrics
    install_error_handlers(app)
    openai = serves_openai(repository)
    if openai:  # huggingface models: OpenAI-compatible routes (before V1's, which share GET /v1/models)
        app.include_router(openai_router(settings, repository, metrics))
    app.include_router(v1_router(settings, repository, metrics))
    app.include_router(v2_router(settings, repository, metrics, _version()))
    install_openapi(
        app,
        [*v1.SCHEMA_MODELS, *v2.SCHEMA_MODELS, *(OPENAI_SCHEMA_MODELS if openai else [])],
        lambda schema: _examples(schema, repository),
    )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


def _examples(schema: dict, repository: ModelRepository) -> None:
    """Example bodies that fit the first ready model (clients and fuzzers reach the model with them)."""
    runtime = next((r for r in repository.runtimes.values() if r.ready and r.inputs), None)
    if runtime is None:
        return
    v1_body, v2_body = example_bodies(runtime.metadata())
    names = {"name": runtime.name}
    set_example(schema, "/v1/models/{name}:predict", "post", v1_body, names)
    set_example(schema, "/v2/models/{name}/infer", "post", v2_body, names)
    if runtime.settings.version:
        versioned = {**names, "model_version": runtime.settings.version}
        set_example(schema, "/v2/models/{name}/versions/{model_version}/infer", "post", v2_body, versioned)
        set_example(schema, "/v2/models/{name}/versions/{model_version}", "get", None, versioned)
        set_example(schema, "/v2/models/{name}/versions/{model_version}/ready", "get", None, versioned)


def _report_ready(metrics: ServerMetrics, repository: ModelRepository) -> None:
    for name, runtime in repository.runtimes.items():
        metrics.set_ready(name, runtime.ready)


def _settle_garbage_collector() -> None:
    """Keep the collector off the request path once the models are loaded.

    The libraries and models make a heap of some 150,000 objects that live as long as the
    process; every full collection walked all of them (pauses of 100+ ms seen under load,
    straight into p99). `gc.freeze()` moves them out of the collector's view. Requests
    free their garbage by reference counting, so a larger first threshold costs little
    memory and saves most young collections.
    """
    gc.collect()
    gc.freeze()
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, 10_000), second, third)


def run(settings: ServerSettings) -> None:
    """Load every model, then serve until SIGINT/SIGTERM (blocking).

    A model that cannot be loaded ends the process before the port opens, with SystemExit
    carrying the sentence that names the file.
    """
    import uvicorn

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    try:
        app.state.repository.load_all()
    except ModelLoadError as err:
        log.error("%s", err)
        raise SystemExit(f"infertap serve: {err}") from None
    _report_ready(app.state.metrics, app.state.repository)
    _settle_garbage_collector()
    names = ", ".join(f"{m.name} ({m.format})" for m in settings.models)
    print(f"infertap model server: {names} on http://{settings.host}:{settings.http_port} (V1 and V2)", flush=True)
    # uvicorn's own info lines repeat what we print; keep them for debug and below.
    level = settings.log_level.lower()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.http_port,
        log_level="warning" if level == "info" else level,
        access_log=False,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
