"""OpenAI-compatible REST for huggingface models: under `/openai/v1/` (KServe's paths) and `/v1/` (vLLM's).

`chat/completions` and `completions` (both streaming as server-sent events), `embeddings`,
`models`. Bodies are read and validated here (not by FastAPI), so every failure answers in
OpenAI's error shape. `GET /v1/models` is shared with KServe's V1 protocol: its body holds
both `models` (V1: every served name) and OpenAI's `object`/`data` list.

A streamed generation stops when its client goes away: Starlette cancels the response,
and the generation's flag stops `generate()` at the next token. A non-streamed one polls
for the disconnect.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response, StreamingResponse

from infertap.serving.errors import InferenceError, ModelNotReadyError
from infertap.serving.metrics import ServerMetrics
from infertap.serving.openai import sse
from infertap.serving.openai.errors import OpenAIError, from_exception, model_not_found, unsupported
from infertap.serving.openai.metrics import LLMMetrics
from infertap.serving.openai.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    ModelList,
    _Sampling,
    new_id,
    now,
)
from infertap.serving.repository import ModelRepository
from infertap.serving.rest.body import read_body
from infertap.serving.rest.metering import UNKNOWN_MODEL
from infertap.serving.rest.openapi import ref
from infertap.serving.runtimes.hf_generation import Generation, SamplingParams
from infertap.serving.runtimes.huggingface import HuggingFaceRuntime
from infertap.serving.settings import ServerSettings

log = logging.getLogger("infertap.serving")

PREFIXES = ("/openai/v1", "/v1")
JSON = "application/json"
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy completions endpoint
DISCONNECT_POLL_S = 0.25
_DUMP = orjson.OPT_SERIALIZE_NUMPY
M = TypeVar("M", bound=BaseModel)


def serves_openai(repository: ModelRepository) -> bool:
    """Whether any model of `repository` is a huggingface one (the OpenAI routes exist only then)."""
    return any(isinstance(r, HuggingFaceRuntime) for r in repository.runtimes.values())


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj, option=_DUMP), status_code=status, media_type=JSON)


def _docs(request_model: type[BaseModel] | None, ok: type[BaseModel], stream: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": ref(ok)}}
    if stream:
        content[sse.MEDIA_TYPE] = {"schema": {"type": "string", "description": "`data: {chunk}` events, then `[DONE]`"}}
    errors = {"description": "OpenAI error", "content": {JSON: {"schema": ref(ErrorResponse)}}}
    out: dict[str, Any] = {
        "responses": {"200": {"description": "OK", "content": content}, "400": errors, "404": errors, "503": errors}
    }
    if request_model is not None:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(request_model)}}}
    return out


def _message_dict(message: Any) -> dict[str, Any]:
    content = message.content
    if isinstance(content, list):
        texts = []
        for part in content:
            if part.type != "text" or part.text is None:
                raise unsupported("messages", f"content of type {part.type!r}")
            texts.append(part.text)
        content = "".join(texts)
    out: dict[str, Any] = {"role": message.role, "content": content or ""}
    if message.name:
        out["name"] = message.name
    return out


def _check_sampling(req: _Sampling) -> None:
    if req.presence_penalty:
        raise unsupported("presence_penalty", "presence_penalty other than 0")
    if req.frequency_penalty:
        raise unsupported("frequency_penalty", "frequency_penalty other than 0")
    if req.logit_bias:
        raise unsupported("logit_bias", "logit_bias")


def _sampling(runtime: HuggingFaceRuntime, req: _Sampling, budget: int, index: int) -> SamplingParams:
    top_k = req.top_k if req.top_k is not None and req.top_k > 0 else (0 if req.top_k is not None else None)
    return runtime.sampling(
        max_new_tokens=budget,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=top_k,
        repetition_penalty=req.repetition_penalty,
        seed=None if req.seed is None else req.seed + index,
        stop=req.stop_list(),
        min_new_tokens=budget if req.ignore_eos else req.min_tokens,
    )


def openai_router(settings: ServerSettings, repository: ModelRepository, metrics: ServerMetrics) -> APIRouter:
    """The OpenAI routes over the huggingface models of `repository`, under both prefixes."""
    router = APIRouter(tags=["openai"])
    llm = LLMMetrics(metrics)
    for runtime in repository.runtimes.values():
        if isinstance(runtime, HuggingFaceRuntime):
            runtime.on_tokens = llm.token_counter(runtime.name)
    started = now()

    def runtime_for(name: str, task: str, what: str) -> HuggingFaceRuntime:
        runtime = repository.find(name)
        if not isinstance(runtime, HuggingFaceRuntime):
            raise model_not_found(name)
        if not runtime.ready:
            raise ModelNotReadyError(f"model {name!r} is not ready")
        if runtime.task != task:
            raise OpenAIError(
                400,
                f"The model `{name}` is a {runtime.task} model; it does not serve {what}.",
                param="model",
                code="model_not_supported",
            )
        return runtime

    async def parse(request: Request, model: type[M]) -> M:
        body = await read_body(request, settings.max_request_bytes)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise OpenAIError(
                400,
                "We could not parse the JSON body of your request. The body must be valid JSON.",
                code="invalid_json",
            ) from None
        if not isinstance(obj, dict):
            raise OpenAIError(400, "The request body must be a JSON object.", code="invalid_json")
        return model.model_validate(obj)

    async def guarded(endpoint: str, request: Request, handle: Callable[[dict], Awaitable[Response]]) -> Response:
        """Run `handle`, answer its failures in OpenAI's shape, count it in infertap_requests_total."""
        start = time.perf_counter()
        ctx: dict[str, Any] = {"model": UNKNOWN_MODEL}
        code = 500
        try:
            response = await handle(ctx)
        except Exception as err:  # noqa: BLE001 - every failure becomes an OpenAI error body
            response = from_exception(err).response()
        code = response.status_code
        label = ctx["model"] if repository.find(ctx["model"]) is not None else UNKNOWN_MODEL
        metrics.observe_request(label, endpoint, code, time.perf_counter() - start)
        return response

    async def tracked(gen: Generation, model: str) -> AsyncIterator[str]:
        """The generation's text deltas, with the LLM metrics recorded and a log line when it is cancelled."""
        labels = llm.labels(model)
        llm.running.labels(*labels).inc()
        llm.prompt_tokens.labels(*labels).inc(gen.prompt_tokens)
        reason, first = "cancelled", True
        try:
            async for delta in gen.deltas():
                if first:
                    llm.ttft.labels(*labels).observe(time.perf_counter() - gen.started)
                    first = False
                yield delta
            reason = "cancelled" if gen.aborted else (gen.finish_reason or "stop")
        except InferenceError:
            reason = "error"
            raise
        finally:
            gen.cancel()
            llm.running.labels(*labels).dec()
            llm.finished.labels(*labels, reason).inc()
            llm.e2e.labels(*labels).observe(time.perf_counter() - gen.started)
            if reason == "cancelled":
                log.info(
                    "generation for model %r cancelled (client went away) after %d tokens",
                    model,
                    gen.completion_tokens,
                )

    async def collect(gens: list[Generation], model: str, request: Request) -> list[str]:
        """Every generation's whole text; all are cancelled if the client disconnects meanwhile."""

        async def texts() -> list[str]:
            return ["".join([d async for d in tracked(g, model)]) for g in gens]

        task = asyncio.ensure_future(texts())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
                if done:
                    return task.result()
                if await request.is_disconnected():
                    for g in gens:
                        g.cancel()
        finally:
            for g in gens:
                g.cancel()
            if not task.done():
                task.cancel()

    def start(
        runtime: HuggingFaceRuntime, req: _Sampling, prompts: list[list[int]], budgets: list[int]
    ) -> list[Generation]:
        gens = []
        for p, (ids, budget) in enumerate(zip(prompts, budgets, strict=True)):
            for j in range(req.n):
                gens.append(runtime.start_generation(ids, _sampling(runtime, req, budget, p * req.n + j)))
        return gens

    # --- chat/completions ------------------------------------------------------------------------

    async def chat(request: Request) -> Response:
        async def handle(ctx: dict) -> Response:
            req = await parse(request, ChatCompletionRequest)
            ctx["model"] = req.model
            runtime = runtime_for(req.model, "text_generation", "chat completions")
            _check_sampling(req)
            if req.logprobs or req.top_logprobs:
                raise unsupported("logprobs", "logprobs")
            if req.tools and req.tool_choice != "none":
                raise unsupported("tools", "tool calling")
            if req.response_format and req.response_format.get("type", "text") != "text":
                raise unsupported("response_format", f"response_format {req.response_format.get('type')!r}")
            prompt = runtime.chat_prompt_ids([_message_dict(m) for m in req.messages])
            max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
            budget = runtime.completion_budget(len(prompt), max_tokens, "messages", None)
            gens = start(runtime, req, [prompt], [budget])
            rid, created = new_id("chatcmpl"), now()
            if req.stream:
                return StreamingResponse(
                    chat_stream(req, gens, rid, created), media_type=sse.MEDIA_TYPE, headers=sse.HEADERS
                )
            texts = await collect(gens, req.model, request)
            completion = sum(g.completion_tokens for g in gens)
            return _json(
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": created,
                    "model": req.model,
                    "choices": [
                        {
                            "index": i,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": g.finish_reason,
                            "logprobs": None,
                        }
                        for i, (g, text) in enumerate(zip(gens, texts, strict=True))
                    ],
                    "usage": _usage(len(prompt), completion),
                }
            )

        return await guarded("openai_chat_completions", request, handle)

    async def chat_stream(req: ChatCompletionRequest, gens: list[Generation], rid: str, created: int):
        head = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": req.model}
        if req.include_usage:
            head["usage"] = None

        def chunk(index: int, delta: dict, finish: str | None = None) -> bytes:
            choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
            return sse.raw_event(orjson.dumps({**head, "choices": [choice]}))

        try:
            for i, gen in enumerate(gens):
                yield chunk(i, {"role": "assistant", "content": ""})
                async for text in tracked(gen, req.model):
                    yield chunk(i, {"content": text})
                yield chunk(i, {}, gen.finish_reason)
            if req.include_usage:
                usage = _usage(gens[0].prompt_tokens, sum(g.completion_tokens for g in gens))
                yield sse.raw_event(orjson.dumps({**head, "choices": [], "usage": usage}))
            yield sse.DONE
        except InferenceError as err:
            yield sse.raw_event(orjson.dumps(from_exception(err).body()))
            yield sse.DONE
        finally:
            for g in gens:
                g.cancel()

    # --- completions -------------------------------------------------------------------------------

    def prompt_ids(runtime: HuggingFaceRuntime, prompt: Any) -> list[list[int]]:
        if isinstance(prompt, str):
            return [runtime.text_prompt_ids(prompt)]
        if not prompt:
            raise OpenAIError(400, "Invalid value for 'prompt': give a prompt.", param="prompt", code="invalid_value")
        if all(isinstance(x, int) for x in prompt):
            prompts = [list(prompt)]
        elif all(isinstance(x, str) for x in prompt):
            return [runtime.text_prompt_ids(p) for p in prompt]
        else:
            prompts = [list(p) for p in prompt]
        vocab = len(runtime.tokenizer)
        for ids in prompts:
            if not ids or any(t < 0 or t >= vocab for t in ids):
                raise OpenAIError(
                    400,
                    f"Invalid value for 'prompt': token ids must lie in [0, {vocab}).",
                    param="prompt",
                    code="invalid_value",
                )
        return prompts

    async def completions(request: Request) -> Response:
        async def handle(ctx: dict) -> Response:
            req = await parse(request, CompletionRequest)
            ctx["model"] = req.model
            runtime = runtime_for(req.model, "text_generation", "completions")
            _check_sampling(req)
            if req.logprobs:
                raise unsupported("logprobs", "logprobs")
            if req.suffix:
                raise unsupported("suffix", "suffix")
            if req.best_of is not None and req.best_of != req.n:
                raise unsupported("best_of", "best_of other than n")
            prompts = prompt_ids(runtime, req.prompt)
            budgets = [
                runtime.completion_budget(len(p), req.max_tokens, "prompt", COMPLETIONS_DEFAULT_MAX_TOKENS)
                for p in prompts
            ]
            echoes = [runtime.tokenizer.decode(p, skip_special_tokens=True) if req.echo else "" for p in prompts]
            gens = start(runtime, req, prompts, budgets)
            rid, created = new_id("cmpl"), now()
            prompt_tokens = sum(len(p) for p in prompts)
            if req.stream:
                return StreamingResponse(
                    completion_stream(req, gens, echoes, prompt_tokens, rid, created),
                    media_type=sse.MEDIA_TYPE,
                    headers=sse.HEADERS,
                )
            texts = await collect(gens, req.model, request)
            return _json(
                {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": req.model,
                    "choices": [
                        {
                            "index": i,
                            "text": echoes[i // req.n] + text,
                            "finish_reason": g.finish_reason,
                            "logprobs": None,
                        }
                        for i, (g, text) in enumerate(zip(gens, texts, strict=True))
                    ],
                    "usage": _usage(prompt_tokens, sum(g.completion_tokens for g in gens)),
                }
            )

        return await guarded("openai_completions", request, handle)

    async def completion_stream(
        req: CompletionRequest, gens: list[Generation], echoes: list[str], prompt_tokens: int, rid: str, created: int
    ):
        head = {"id": rid, "object": "text_completion", "created": created, "model": req.model}
        if req.include_usage:
            head["usage"] = None

        def chunk(index: int, text: str, finish: str | None = None) -> bytes:
            choice = {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
            return sse.raw_event(orjson.dumps({**head, "choices": [choice]}))

        try:
            for i, gen in enumerate(gens):
                if echoes[i // req.n]:
                    yield chunk(i, echoes[i // req.n])
                async for text in tracked(gen, req.model):
                    yield chunk(i, text)
                yield chunk(i, "", gen.finish_reason)
            if req.include_usage:
                usage = _usage(prompt_tokens, sum(g.completion_tokens for g in gens))
                yield sse.raw_event(orjson.dumps({**head, "choices": [], "usage": usage}))
            yield sse.DONE
        except InferenceError as err:
            yield sse.raw_event(orjson.dumps(from_exception(err).body()))
            yield sse.DONE
        finally:
            for g in gens:
                g.cancel()

    # --- embeddings ----------------------------------------------------------------------------------

    async def embeddings(request: Request) -> Response:
        async def handle(ctx: dict) -> Response:
            req = await parse(request, EmbeddingRequest)
            ctx["model"] = req.model
            runtime = runtime_for(req.model, "text_embedding", "embeddings")
            width = runtime.outputs[0].shape[-1] if runtime.outputs else -1
            if req.dimensions is not None and req.dimensions != width:
                raise unsupported("dimensions", f"dimensions other than the model's {width}")
            raw = req.input
            if isinstance(raw, str):
                ids = runtime.tokenize([raw])
            elif not raw:
                raise OpenAIError(
                    400, "Invalid value for 'input': give at least one input.", param="input", code="invalid_value"
                )
            elif all(isinstance(x, str) for x in raw):
                texts = [str(x) for x in raw]
                if len(texts) > 64:  # tokenizing thousands of texts would hold the event loop
                    ids = await asyncio.to_thread(runtime.tokenize, texts)
                else:
                    ids = runtime.tokenize(texts)
            else:
                ids = [list(raw)] if all(isinstance(x, int) for x in raw) else [list(r) for r in raw]  # type: ignore[arg-type]
                _check_token_ids(runtime, ids)
            vectors, counts = await runtime.encode(ids)
            if req.encoding_format == "base64":
                data: list[Any] = [
                    base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode("ascii") for v in vectors
                ]
            else:
                data = list(vectors)
            tokens = int(counts.sum())
            return _json(
                {
                    "object": "list",
                    "data": [{"object": "embedding", "embedding": e, "index": i} for i, e in enumerate(data)],
                    "model": req.model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )

        return await guarded("openai_embeddings", request, handle)

    # --- models --------------------------------------------------------------------------------------

    def cards() -> list[dict[str, Any]]:
        return [
            {"id": name, "object": "model", "created": started, "owned_by": "infertap"}
            for name, r in repository.runtimes.items()
            if isinstance(r, HuggingFaceRuntime)
        ]

    async def list_models() -> Response:
        return _json({"object": "list", "data": cards()})

    async def list_models_shared() -> Response:
        # KServe V1's GET /v1/models ({"models": [...]}) and OpenAI's list in one body.
        return _json({"models": list(repository.runtimes), "object": "list", "data": cards()})

    async def retrieve_model(model: str) -> Response:
        card = next((c for c in cards() if c["id"] == model), None)
        return _json(card) if card is not None else model_not_found(model).response()

    for prefix in PREFIXES:
        router.add_api_route(
            f"{prefix}/chat/completions",
            chat,
            methods=["POST"],
            openapi_extra=_docs(ChatCompletionRequest, ChatCompletion, stream=True),
            summary="Chat completion (stream: chat.completion.chunk events)",
        )
        router.add_api_route(
            f"{prefix}/completions",
            completions,
            methods=["POST"],
            openapi_extra=_docs(CompletionRequest, Completion, stream=True),
            summary="Text completion",
        )
        router.add_api_route(
            f"{prefix}/embeddings",
            embeddings,
            methods=["POST"],
            openapi_extra=_docs(EmbeddingRequest, EmbeddingResponse),
            summary="Embeddings",
        )
    router.add_api_route(
        "/openai/v1/models", list_models, methods=["GET"], openapi_extra=_docs(None, ModelList), summary="Models"
    )
    router.add_api_route(
        "/openai/v1/models/{model}",
        retrieve_model,
        methods=["GET"],
        summary="One model",
    )
    router.add_api_route(
        "/v1/models",
        list_models_shared,
        methods=["GET"],
        openapi_extra=_docs(None, ModelList),
        summary="Models (KServe V1 `models` and OpenAI `data`)",
    )
    return router


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _check_token_ids(runtime: HuggingFaceRuntime, ids: list[list[int]]) -> None:
    vocab = len(runtime.tokenizer)
    for row in ids:
        if not row or any(t < 0 or t >= vocab for t in row):
            raise OpenAIError(
                400,
                f"Invalid value for 'input': token ids must lie in [0, {vocab}).",
                param="input",
                code="invalid_value",
            )
        if len(row) > runtime.max_model_len:
            raise OpenAIError(
                400,
                f"This model's maximum context length is {runtime.max_model_len} tokens, however the input has "
                f"{len(row)} tokens. Please reduce the length of the input.",
                param="input",
                code="context_length_exceeded",
            )


__all__ = ["openai_router", "serves_openai"]
