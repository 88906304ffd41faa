"""The explainer server: KServe V1 `:explain` and MLServer-style V2 `infer` for one explainer.

    python -m infertap.explainers --name sklearn-iris --explainer-type KernelShap \
        --predictor-url http://127.0.0.1:8080 --background models/sklearn-iris/reference.npy

Routes:
- `POST /v1/models/{name}:explain`: the V1 predict body (`{"instances": [...]}`), answered
  with `ExplainResponse` JSON: one explanation per instance (feature names, attribution
  values, base value, prediction, target, the backend's raw output). Request `parameters`
  may set `nsamples`, `target`, `deadline_s` (at most the server's) and backend params.
- `POST /v2/models/{name}-explainer/infer`: a V2 infer request (one input tensor; JSON or
  binary), answered as MLServer's alibi runtime does: one BYTES output `explanation`
  holding the same JSON as a string. `parameters.explain_parameters` (MLServer) or
  `parameters` carry the per-request options.
- Health: `GET /`, `/v1/models/{name}`, `/v2/health/live`, `/v2/health/ready`,
  `/v2/models/{name}-explainer/ready`; metrics: `GET /metrics`.

Limits: `max_instances` per request, `max_samples` for nsamples / steps and anchors' sample
counts, `max_sample_rows` for the rows a backend holds at once; every backend parameter a
request may set is declared with bounds (`Explainer.request_params`), a value out of them
is a 400 naming it; a MemoryError is a 503 and the server keeps serving; `deadline_s` per
request (504 with a sentence when hit; black-box explainers stop at their next predictor
call, white-box work already started finishes in its thread but its answer is dropped).
Wrong feature count or shape is a 400 naming what was expected. Bodies over
`max_request_bytes` get 413; with `--auth-token` (or `$INFERTAP_AUTH_TOKEN`) every POST
needs `Authorization: Bearer <token>` (401 otherwise; GETs stay open for probes and metrics).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.responses import Response

from infertap.explainers.backends import Explainer, ExplainOptions, create_explainer
from infertap.explainers.errors import (
    BadExplainRequest,
    DeadlineExceeded,
    ExplainerError,
    ExplainerLoadError,
    MissingExtra,
    ModelNotFound,
    OutOfMemory,
)
from infertap.explainers.explanation import (
    ExplainInferRequest,
    ExplainInputsBody,
    ExplainInstancesBody,
    ExplainResponse,
    LLMExplainBody,
)
from infertap.explainers.metrics import ExplainerMetrics
from infertap.explainers.settings import ExplainerSettings
from infertap.serving.codec import (
    HEADER_LENGTH,
    CodecError,
    InferenceResponse,
    MetadataTensor,
    ModelMetadata,
    ResponseOutput,
    decode_v1_request,
    decode_v2_request,
    encode_v2_response,
)
from infertap.serving.rest.body import decode_body
from infertap.serving.rest.openapi import (
    BINARY_BODY,
    example_bodies,
    install_openapi,
    json_body,
    json_object,
    ref,
    replies,
    served_names,
    set_example,
)

log = logging.getLogger("infertap.explainers")
JSON = "application/json"
OPTION_KEYS = ("nsamples", "target", "deadline_s")
V2_REPLY = {JSON: {"schema": ref(InferenceResponse)}, "application/octet-stream": {"schema": BINARY_BODY}}


class ExplainService:
    """A loaded backend plus its limits, worker threads and metrics; transport-free."""

    def __init__(self, settings: ExplainerSettings, explainer: Explainer | None = None):
        self.settings = settings
        self.metrics = ExplainerMetrics(
            settings.inference_service, settings.name, settings.explainer_type, settings.token_metric_top_k
        )
        self.explainer = explainer or create_explainer(settings, on_request=self.metrics.on_predictor_request)
        self._executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="explain")

    def load(self) -> None:
        self.explainer.load()

    @property
    def ready(self) -> bool:
        return self.explainer.ready

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.explainer.close()

    def options(self, params: dict[str, Any] | None) -> ExplainOptions:
        """Per-request options checked against the limits; BadExplainRequest names the bad one."""
        params = dict(params or {})
        s = self.settings
        deadline_s = params.pop("deadline_s", None)  # null: as if absent (so for nsamples and target)
        deadline_s = s.deadline_s if deadline_s is None else _number(deadline_s, "deadline_s", float)
        if deadline_s <= 0:
            raise BadExplainRequest(f"deadline_s must be > 0, got {deadline_s}")
        nsamples = params.pop("nsamples", None)
        if nsamples is not None:
            nsamples = _number(nsamples, "nsamples", int)
            if not 1 <= nsamples <= s.max_samples:
                raise BadExplainRequest(f"nsamples must be between 1 and max_samples {s.max_samples}, got {nsamples}")
        target = params.pop("target", None)
        if target is not None:
            target = _number(target, "target", int)
        # Only declared, bounded backend parameters go on; other keys (V2's content_type, ...) stay behind.
        bounds = self.explainer.request_params()
        params = {key: bounds[key].check(key, value) for key, value in params.items() if key in bounds}
        return ExplainOptions(
            deadline=time.monotonic() + min(deadline_s, s.deadline_s), nsamples=nsamples, target=target, params=params
        )

    async def explain(self, X: np.ndarray, params: dict[str, Any] | None = None) -> ExplainResponse:
        """Explain every instance of X within the deadline; ExplainerError subclasses on failure."""
        started = time.perf_counter()
        try:
            options = self.options(params)
            X = self.explainer.check_input(np.asarray(X))
            if len(X) == 0:  # e.g. a V2 tensor of shape [0, n]; the backends assume at least one row
                raise BadExplainRequest("no instances to explain")
            if len(X) > self.settings.max_instances:
                raise BadExplainRequest(
                    f"{len(X)} instances in one request; max_instances is {self.settings.max_instances}"
                )
            self.explainer.check_work(len(X), options)
            assert options.deadline is not None  # `options` always sets one
            remaining = options.deadline - time.monotonic()
            future = asyncio.get_running_loop().run_in_executor(self._executor, self._run, X, options)
            try:
                explanations = await asyncio.wait_for(future, timeout=remaining)
            except TimeoutError:
                raise DeadlineExceeded(self._deadline_sentence(options, len(X))) from None
            except DeadlineExceeded as err:
                raise DeadlineExceeded(f"{self._deadline_sentence(options, len(X))} ({err})") from None
        except ExplainerError as err:
            self.metrics.observe_error(_reason(err))
            raise
        except MemoryError:
            raise self._out_of_memory(len(X)) from None
        except Exception as err:  # noqa: BLE001 - a library's own error: answered 500 with its sentence
            self.metrics.observe_error("internal")
            log.exception("explanation failed")
            raise ExplainerError(
                f"{self.settings.explainer_type} failed: {type(err).__name__}: {_reason_of(err)}"
            ) from None
        elapsed = time.perf_counter() - started
        self.metrics.latency.observe(elapsed)
        self.metrics.kserve_explain.observe(elapsed)
        self.metrics.instances.inc(len(explanations))
        self.metrics.observe_explanations(explanations)
        return ExplainResponse(
            model_name=self.settings.name, explainer=self.settings.explainer_type, explanations=list(explanations)
        )

    def _out_of_memory(self, n: int) -> OutOfMemory:
        # What the failed call held is garbage now: collect it before the next request, so one
        # oversized request does not leave the server failing the ones after it (issue 19).
        gc.collect()
        self.metrics.observe_error("out_of_memory")
        log.error("%s ran out of memory explaining %d instance(s)", self.settings.explainer_type, n)
        return OutOfMemory(
            f"{self.settings.explainer_type} ran out of memory explaining {n} instance(s); "
            "send fewer instances or ask for fewer samples (the server keeps serving)"
        )

    def _run(self, X: np.ndarray, options: ExplainOptions):
        if options.deadline is not None and time.monotonic() >= options.deadline:
            raise DeadlineExceeded("waited for a free explainer thread past the deadline")
        return self.explainer.explain(X, options)

    def _deadline_sentence(self, options: ExplainOptions, n: int) -> str:
        limit = self.settings.deadline_s
        return (
            f"{self.settings.explainer_type} did not finish {n} instance(s) within the deadline "
            f"(deadline_s at most {limit:g} s); send fewer instances, lower nsamples, or raise --deadline-s"
        )


def _number(value: Any, name: str, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and float(value) != int(value)):
        raise BadExplainRequest(
            f"parameter {name} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        )
    return kind(value)


def _reason_of(err: Exception) -> str:
    """An error's message for an answer body: a TorchScript interpreter traceback (kept in the log)
    is cut to its last line, the cause."""
    text = str(err)
    if "TorchScript" not in text:
        return text
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _reason(err: ExplainerError) -> str:
    return {400: "bad_input", 404: "not_found", 502: "predictor", 503: "out_of_memory", 504: "deadline"}.get(
        err.status, "internal"
    )


# ---------------------------------------------------------------- HTTP


def create_app(settings: ExplainerSettings, service: ExplainService | None = None) -> FastAPI:
    """The ASGI app; the backend loads at startup (lifespan) unless already loaded."""
    service = service or ExplainService(settings)
    name = settings.name

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not service.ready:
            await asyncio.to_thread(service.load)
        yield
        service.close()

    app = FastAPI(
        title="infertap explainer", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/openapi.json"
    )
    app.state.service = service
    llm = service.explainer.input_kind == "llm"
    bodies: list[type[BaseModel]] = [LLMExplainBody] if llm else [ExplainInstancesBody, ExplainInputsBody]
    install_openapi(
        app,
        [*bodies, ExplainResponse, ExplainInferRequest, InferenceResponse],
        lambda schema: _examples(schema, service),
    )
    ready_reply = replies(json_object(name={"type": "string"}, ready={"type": "boolean"}), 404, 503)
    explain_errors = (400, 404, 413, 502, 503, 504)

    def check_name(model: str) -> None:
        if model != name:
            raise ModelNotFound(f"no explainer for model {model!r}; this server explains {name!r}")

    @app.exception_handler(ExplainerError)
    async def explainer_error(request: Request, err: ExplainerError) -> Response:
        service.metrics.observe_request(err.status)
        return Response(orjson.dumps({"error": str(err)}), status_code=err.status, media_type=JSON)

    @app.exception_handler(MemoryError)
    async def out_of_memory(request: Request, err: MemoryError) -> Response:
        # e.g. decoding a body within max_request_bytes on a server near its memory limit
        gc.collect()
        service.metrics.observe_request(503)
        return Response(b'{"error":"out of memory; the server keeps serving"}', status_code=503, media_type=JSON)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> Response:
        # Still a 500 (a bug to fix), but in the same `{"error"}` shape as every other answer.
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        service.metrics.observe_request(500)
        return Response(
            orjson.dumps({"error": f"internal error: {type(err).__name__}: {err}"}), status_code=500, media_type=JSON
        )

    @app.get("/", responses=replies(json_object(status={"type": "string"})))
    async def alive() -> Response:
        return Response(b'{"status":"alive"}', media_type=JSON)

    @app.get("/v2/health/live", responses=replies(json_object(live={"type": "boolean"})))
    async def live() -> Response:
        return Response(b'{"live":true}', media_type=JSON)

    @app.get("/v2/health/ready", responses=ready_reply)
    @app.get("/v1/models/{model}", responses=ready_reply)
    @app.get("/v2/models/{model}/ready", responses=ready_reply)
    async def ready(model: str | None = None) -> Response:
        if model is not None:
            check_name(model.removesuffix("-explainer"))
        if not service.ready:
            return Response(b'{"error":"explainer is loading"}', status_code=503, media_type=JSON)
        return Response(orjson.dumps({"name": name, "ready": True}), media_type=JSON)

    @app.post(
        "/v1/models/{model}:explain",
        openapi_extra=json_body(*bodies),
        responses=replies(ExplainResponse, *explain_errors),
    )
    async def explain_v1(request: Request, model: str = served_names([name])()) -> Response:
        check_name(model)
        if llm:
            instances, params = llm_body(await request.body())
            return answer(await service.explain(instances, params))
        try:
            decoded = await decode_body(decode_v1_request, await request.body())
        except CodecError as err:
            raise BadExplainRequest(str(err)) from None
        if isinstance(decoded.instances, dict):
            raise BadExplainRequest('send instances as rows ("instances": [[...]]), not named columns')
        result = await service.explain(decoded.instances, decoded.parameters)
        service.metrics.observe_request(200)
        return Response(orjson.dumps(result.model_dump(mode="json")), media_type=JSON)

    @app.post(
        "/v2/models/{model}/infer",
        openapi_extra=json_body(ExplainInferRequest, binary=True),
        responses=replies(V2_REPLY, *explain_errors),
    )
    async def explain_v2(request: Request, model: str = served_names([f"{name}-explainer"])()) -> Response:
        if not model.endswith("-explainer"):
            raise ModelNotFound(f"explain at /v2/models/{name}-explainer/infer (got {model!r})")
        check_name(model.removesuffix("-explainer"))
        length = request.headers.get(HEADER_LENGTH)
        try:
            decoded = await decode_body(
                decode_v2_request, await request.body(), int(length) if length is not None else None
            )
        except (CodecError, ValueError) as err:
            raise BadExplainRequest(str(err)) from None
        if len(decoded.inputs) != 1:
            raise BadExplainRequest(f"send one input tensor to explain, got {len(decoded.inputs)}")
        params = dict(decoded.parameters or {})
        explain_parameters = params.pop("explain_parameters", None)
        if explain_parameters is not None and not isinstance(explain_parameters, dict):
            raise BadExplainRequest(
                f"parameters.explain_parameters must be a JSON object, got {type(explain_parameters).__name__}"
            )
        params = dict(explain_parameters or params)
        data = decoded.inputs[0].data
        if data.dtype == object:  # BYTES: text instances
            data = np.array([_text(v) for v in data.reshape(-1)])
        result = await service.explain(data, params)
        text = orjson.dumps(result.model_dump(mode="json")).decode()
        payload = np.empty(1, dtype=object)
        payload[0] = text.encode()
        response = InferenceResponse.model_construct(
            model_name=model,
            model_version=None,
            id=decoded.id,
            parameters={"content_type": "str", "headers": {"x-infertap-explainer": settings.explainer_type}},
            outputs=[
                ResponseOutput.model_construct(
                    name="explanation", shape=[1, 1], datatype="BYTES", parameters={"content_type": "str"}, data=payload
                )
            ],
        )
        body, headers = encode_v2_response(response, decoded)
        service.metrics.observe_request(200)
        return Response(body, headers=headers, media_type=headers.get("content-type", JSON))

    def answer(result: ExplainResponse) -> Response:
        service.metrics.observe_request(200)
        return Response(orjson.dumps(result.model_dump(mode="json")), media_type=JSON)

    if llm:

        async def explain_openai(request: Request, shape: str) -> Response:
            instances, params = llm_body(await request.body(), shape)
            wanted = instances[0].get("model") if isinstance(instances[0], dict) else None
            if wanted is not None and wanted not in (name, settings.target_model):
                raise ModelNotFound(f"no explainer for model {wanted!r}; this server explains {name!r}")
            return answer(await service.explain(instances, params))

        for path, shape in (("chat/completions", "messages"), ("completions", "prompt")):
            _openai_route(app, f"/openai/v1/{path}:explain", shape, explain_openai, explain_errors)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    return app


def llm_body(raw: bytes, shape: str | None = None) -> tuple[np.ndarray, dict[str, Any] | None]:
    """(instances, parameters) of an LLM explainer's body: `{"messages" | "prompt", "completion", ...}`
    (one completion; `shape` names the field an OpenAI-shaped route requires) or `{"instances": [...]}`."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise BadExplainRequest(f"the body is not JSON: {err}") from None
    if not isinstance(body, dict):
        raise BadExplainRequest(f"send a JSON object, got {type(body).__name__}")
    params = body.pop("parameters", None)
    if params is not None and not isinstance(params, dict):
        raise BadExplainRequest(f"parameters must be a JSON object, got {type(params).__name__}")
    if shape is None and "instances" in body:
        items = body["instances"]
        if not isinstance(items, list) or not items:
            raise BadExplainRequest("instances must be a non-empty list of completions to explain")
    else:
        if shape is not None and shape not in body:
            raise BadExplainRequest(
                f'an OpenAI {"chat " if shape == "messages" else ""}completions body needs "{shape}"'
            )
        if shape == "prompt" and not isinstance(body.get("prompt"), str):
            raise BadExplainRequest("prompt must be one string (one completion is explained at a time)")
        items = [body]
    instances = np.empty(len(items), dtype=object)
    instances[:] = items
    return instances, params


def _openai_route(app: FastAPI, path: str, shape: str, handler, errors: tuple[int, ...]) -> None:
    """An OpenAI-shaped explain route: the request body of the chat or completions endpoint, plus `completion`."""

    async def route(request: Request) -> Response:
        return await handler(request, shape)

    app.post(
        path,
        openapi_extra=json_body(LLMExplainBody),
        responses=replies(ExplainResponse, *errors),
        summary=f"Explain an OpenAI {path.split('/')[-1].removesuffix(':explain')} request's completion",
    )(route)


def _text(value: Any) -> str:
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise BadExplainRequest("BYTES instances must be UTF-8 text") from None


def _examples(schema: dict, service: ExplainService) -> None:
    """Example bodies of one all-zero instance when the instance shape is known (after loading)."""
    name = service.settings.name
    set_example(schema, "/v1/models/{model}", "get", None, {"model": name})
    set_example(schema, "/v2/models/{model}/ready", "get", None, {"model": f"{name}-explainer"})
    shape = getattr(service.explainer, "feature_shape", None)
    if not shape:
        return
    tensor = MetadataTensor(name="input-0", datatype="FP32", shape=[-1, *shape])
    v1_body, v2_body = example_bodies(ModelMetadata(name=name, platform="", inputs=[tensor], outputs=[]))
    set_example(schema, "/v1/models/{model}:explain", "post", v1_body, {"model": name})
    set_example(schema, "/v2/models/{model}/infer", "post", v2_body, {"model": f"{name}-explainer"})


def run(settings: ExplainerSettings) -> None:
    """Load the explainer, then serve until SIGINT/SIGTERM (blocking); a load failure exits with its sentence
    (code 2 for a library that is not installed, as for bad settings; 1 otherwise)."""
    import uvicorn

    from infertap.flags import exit_with

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        service = ExplainService(settings)
        service.load()
    except MissingExtra as err:
        exit_with(f"explainer {settings.name!r}: {err}")
    except ExplainerLoadError as err:
        raise SystemExit(f"explainer {settings.name!r} ({settings.explainer_type}): {err}") from None
    from infertap.serving.rest.guard import RequestGuard, token_from_env

    app = RequestGuard(create_app(settings, service), settings.max_request_bytes, token_from_env(settings.auth_token))
    log.info(
        "%s explainer for %r on http://%s:%d", settings.explainer_type, settings.name, settings.host, settings.http_port
    )
    uvicorn.run(app, host=settings.host, port=settings.http_port, log_level="warning", access_log=False)
