"""Token-by-token generation with transformers: `generate()` in a worker thread, text deltas on the event loop.

`model.generate()` runs in the runtime's model thread with a streamer (transformers'
`BaseStreamer` interface, as `TextIteratorStreamer`) that detokenizes each new token
incrementally and hands the text to the event loop with `call_soon_threadsafe`, so the loop
never blocks. A `StoppingCriteria` reads a flag that the consumer sets when it goes away
(client disconnect, a stop string found, an error), so generation ends within one token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from infertap.serving.errors import InferenceError


@dataclass
class SamplingParams:
    """What one generation asks for (OpenAI's request fields, resolved against the model's defaults)."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off (OpenAI and vLLM have no top-k unless asked)
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    min_new_tokens: int = 0
    repetition_penalty: float = 1.0


class IncrementalDetokenizer:
    """Text of each new token, decoded over a small window (the prefix/read offsets vLLM and TGI use).

    Byte-level BPE splits a multi-byte character over tokens: text ending in U+FFFD waits
    for the next token. Cost per token is constant, not growing with the output.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self._prefix_text = ""  # decode(ids[prefix_offset:read_offset]), kept until the offsets move

    def add(self, token_ids: list[int]) -> str:
        self.ids.extend(token_ids)
        text = self.tokenizer.decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
        prefix = self._prefix_text
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            self._prefix_text = self.tokenizer.decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
            return text[len(prefix) :]
        return ""

    def flush(self) -> str:
        """What is still held back at the end (a trailing partial character, as text)."""
        prefix = self.tokenizer.decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=True)
        text = self.tokenizer.decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
        return text[len(prefix) :] if len(text) > len(prefix) else ""


class Generation:
    """One running generation: iterate `deltas()` for text; counts and finish reason are set as it runs.

    `cancel()` (or leaving `deltas()` early) sets the flag the stopping criteria check in
    the model thread.
    """

    def __init__(
        self,
        tokenizer: Any,
        prompt_ids: list[int],
        params: SamplingParams,
        on_tokens: Callable[[int], None] | None = None,
    ):
        self.prompt_ids = prompt_ids
        self.params = params
        self.cancelled = threading.Event()
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.started = time.perf_counter()
        self.first_token_s: float | None = None
        self._detok = IncrementalDetokenizer(tokenizer)
        self._on_tokens = on_tokens
        self._loop = asyncio.get_running_loop()
        self._items: deque[tuple[str, Any]] = deque()  # (kind, payload) from the model thread
        self._arrived = asyncio.Event()
        self._ended = False
        self.aborted = False

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    def cancel(self) -> None:
        """Stop generating because the consumer went away (client disconnect): `aborted` tells it apart."""
        self.aborted = True
        self.cancelled.set()

    # --- model thread side ---------------------------------------------------------------

    def _push(self, kind: str, payload: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._arrive, (kind, payload))
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancelled.set()

    def put_tokens(self, token_ids: list[int]) -> None:
        self.completion_tokens += len(token_ids)
        if self._on_tokens is not None:
            self._on_tokens(len(token_ids))
        text = self._detok.add(token_ids)
        if text:
            self._push("text", text)

    def end(self, error: BaseException | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None:
            self._push("error", error)
            return
        tail = self._detok.flush()
        if tail:
            self._push("text", tail)
        self._push("end", None)

    # --- event loop side -----------------------------------------------------------------

    def _arrive(self, item: tuple[str, Any]) -> None:
        self._items.append(item)
        self._arrived.set()

    async def _take(self) -> tuple[str, str | None, Any]:
        """(text that arrived, then "end"/"error" or None, its payload). Text that queued up
        meanwhile comes as one piece: a busy event loop catches up instead of falling further
        behind the model; whenever it keeps up, that is one token's text."""
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        texts, last, payload = [], None, None
        while self._items:
            kind, value = self._items.popleft()
            if kind == "text":
                texts.append(value)
            else:
                last, payload = kind, value
                break
        return "".join(texts), last, payload

    async def deltas(self) -> AsyncIterator[str]:
        """Text as it is generated, stop strings cut (and never shown in part); sets `finish_reason`."""
        stops = [s for s in self.params.stop if s]
        hold = max((len(s) for s in stops), default=1) - 1
        pending = ""
        try:
            while True:
                text, last, payload = await self._take()
                if text:
                    if self.first_token_s is None:
                        self.first_token_s = time.perf_counter() - self.started
                    pending += text
                    if stops:
                        cut = min((i for i in (pending.find(s) for s in stops) if i >= 0), default=-1)
                        if cut >= 0:
                            self.cancelled.set()
                            if cut:
                                yield pending[:cut]
                            self.finish_reason = "stop"
                            return
                    if last is None and len(pending) > hold:
                        ready, pending = (pending[:-hold], pending[-hold:]) if hold else (pending, "")
                        yield ready
                if last == "error":
                    raise InferenceError(f"generation failed: {type(payload).__name__}: {payload}") from payload
                if last == "end":
                    if pending:
                        yield pending
                    self.finish_reason = "length" if self.completion_tokens >= self.params.max_new_tokens else "stop"
                    return
        finally:
            self.cancelled.set()

    async def text(self) -> str:
        return "".join([delta async for delta in self.deltas()])


def run_generate(model: Any, generation: Generation, device: Any, pad_token_id: int | None) -> None:
    """`model.generate()` for `generation`, in the calling (model) thread; always ends the generation."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    if generation.cancelled.is_set():  # the client left while the request waited for the thread
        generation.end()
        return

    class _Streamer(BaseStreamer):
        prompt_seen = False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # generate() hands over the prompt first
                self.prompt_seen = True
                return
            generation.put_tokens(value.reshape(-1).tolist())

        def end(self) -> None:
            pass

    class _Cancelled(StoppingCriteria):
        answers: dict[bool, Any] = {}

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            stop = generation.cancelled.is_set()
            answer = self.answers.get(stop)
            if answer is None:  # one tensor per answer, not one per step
                answer = self.answers[stop] = torch.full(
                    (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
                )
            return answer

    p = generation.params
    sample = p.temperature > 0
    kwargs: dict[str, Any] = {
        "max_new_tokens": p.max_new_tokens,
        "min_new_tokens": p.min_new_tokens or None,
        "do_sample": sample,
        "repetition_penalty": p.repetition_penalty,
        "pad_token_id": pad_token_id,
    }
    if sample:
        kwargs.update(temperature=p.temperature, top_p=p.top_p, top_k=p.top_k)
    else:  # greedy: leave the sampling knobs at their neutral values (no warnings about them)
        kwargs.update(temperature=None, top_p=None, top_k=None)
    try:
        if p.seed is not None:
            torch.manual_seed(p.seed)
        input_ids = torch.tensor([generation.prompt_ids], dtype=torch.long, device=device)
        with torch.inference_mode():
            model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                streamer=_Streamer(),
                stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                **kwargs,
            )
    except Exception as err:  # noqa: BLE001 - any library error ends this request, never the thread
        generation.end(err)
        return
    generation.end()
