"""What the LLM completion explainers share (huggingface `text_generation` models, captum's LLM attribution).

An instance is one completion to explain: `{"messages": [...]}` (rendered with the model's
chat template, as the OpenAI chat endpoint renders it) or `{"prompt": "..."}` (tokenized as
the completions endpoint does), with the `completion` to explain; without one the explainer
generates it greedily (`max_tokens` or the request parameter `max_new_tokens`, default 16,
at most `max_target_tokens`), as a temperature-0 call to the model would. A V1 string (or V2
BYTES element) is a prompt, or a JSON object of that shape.

Request parameters: `segments` (`words`, default; `sentences`; `messages`), `roles` (the
message roles whose content is attributed; default all), `max_new_tokens`, `per_token`
(attributions per completion token too, in `raw`). Limits: `max_prompt_tokens` for the
prompt, `max_target_tokens` for the completion, the model's positions for both.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import orjson
from pydantic import ValidationError

from infertap.explainers.backends.base import ExplainOptions, Param
from infertap.explainers.backends.hf_text import HFExplainer
from infertap.explainers.backends.llm_prompt import ROLES, SEGMENTATIONS, Prompt, chat_prompt, plain_prompt
from infertap.explainers.errors import BadExplainRequest, ExplainerLoadError
from infertap.explainers.explanation import CompletionExplanation, LLMExplainInstance, PromptSegment

DEFAULT_NEW_TOKENS = 16


def message_dict(message: Any) -> dict[str, Any]:
    """A ChatMessage as the chat template takes it (text parts of a content list joined, as the server does)."""
    content = message.content
    if isinstance(content, list):
        texts = []
        for part in content:
            if part.type != "text" or part.text is None:
                raise BadExplainRequest(f"messages: content of type {part.type!r} cannot be explained (text only)")
            texts.append(part.text)
        content = "".join(texts)
    out: dict[str, Any] = {"role": message.role, "content": content or ""}
    if message.name:
        out["name"] = message.name
    return out


def instance_of(item: Any, i: int) -> LLMExplainInstance:
    """One LLM instance from a V1 item (an object, or a string: a prompt or a JSON object)."""
    if isinstance(item, bytes):
        item = item.decode("utf-8", "replace")
    if isinstance(item, str):
        stripped = item.lstrip()
        if stripped.startswith("{"):
            try:
                item = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                item = {"prompt": item}
        else:
            item = {"prompt": item}
    if not isinstance(item, dict):
        raise BadExplainRequest(
            f'instance {i}: send {{"messages": [...]}} or {{"prompt": "..."}} (with "completion"), '
            f"got {type(item).__name__}"
        )
    try:
        inst = LLMExplainInstance.model_validate(item)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadExplainRequest(f"instance {i}: {where}: {first['msg']}") from None
    if (inst.messages is None) == (inst.prompt is None):
        raise BadExplainRequest(f'instance {i}: give either "messages" (a chat) or "prompt" (a completion), not both')
    return inst


class LLMExplainer(HFExplainer):
    """Explains completions of a causal LM: how much each prompt segment contributed to their log-probability."""

    task = "text_generation"
    input_kind = "llm"
    method: ClassVar[str] = ""

    def _load(self) -> None:
        super()._load()
        self.max_positions = self.max_tokens_of_model()
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {int(e) for e in [*eos, self.tokenizer.eos_token_id] if isinstance(e, int)}
        bounds = self.request_params()
        for key in ("segments", "roles"):  # defaults from the settings' params, checked once here
            if key in self.settings.params:
                try:
                    bounds[key].check(key, self.settings.params[key])
                except BadExplainRequest as err:
                    raise ExplainerLoadError(f"{self.type_name}: params: {err}") from None

    def max_tokens_of_model(self) -> int:
        from infertap.serving.runtimes.huggingface import model_max_length

        return model_max_length(self.config, self.tokenizer) or 10**9

    def request_params(self) -> dict[str, Param]:
        return {
            "segments": Param(str, choices=SEGMENTATIONS),
            "roles": Param(list, choices=ROLES),
            "max_new_tokens": Param(int, 1, self.settings.max_target_tokens, "max_target_tokens"),
            "per_token": Param(bool),
        }

    def check_input(self, X: np.ndarray) -> np.ndarray:
        items = np.asarray(X, dtype=object).reshape(-1).tolist()
        out = np.empty(len(items), dtype=object)
        out[:] = [instance_of(item, i) for i, item in enumerate(items)]
        return out

    # ------------------------------------------------------------------ the prompt and the target

    def prompt(self, inst: LLMExplainInstance, how: str, roles: set[str]) -> Prompt:
        if inst.prompt is not None:
            return plain_prompt(inst.prompt, how)
        if not getattr(self.tokenizer, "chat_template", None):
            raise BadExplainRequest("this model has no chat template: explain a completions prompt instead")
        messages = [message_dict(m) for m in inst.messages or []]

        def render(msgs: list[dict[str, Any]]) -> str:
            try:
                return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            except Exception as err:  # noqa: BLE001 - jinja2's TemplateError, a template's raise_exception(...)
                raise BadExplainRequest(f"the chat template rejected the messages: {err}") from None

        return chat_prompt(render, messages, how, roles)

    def token_ids(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def target(self, inst: LLMExplainInstance, prompt_ids: list[int], options: ExplainOptions, i: int):
        """(completion token ids, generated?); BadExplainRequest past the limits."""
        limit = self.settings.max_target_tokens
        if inst.completion is not None:
            ids = self.token_ids(inst.completion, False)
            if len(ids) > limit:
                raise BadExplainRequest(
                    f"instance {i}: the completion has {len(ids)} tokens; max_target_tokens is {limit}"
                )
            generated = False
        else:
            wanted = options.params.get("max_new_tokens") or inst.max_completion_tokens or inst.max_tokens
            wanted = wanted or min(DEFAULT_NEW_TOKENS, limit)
            if wanted > limit:
                raise BadExplainRequest(
                    f"instance {i}: {wanted} tokens to generate; max_target_tokens is {limit} "
                    "(give the completion, or ask for fewer)"
                )
            self.fits(len(prompt_ids), wanted, i)
            ids, generated = self.generate(prompt_ids, wanted), True
        if not ids:
            why = "the model ended it at once" if generated else "it holds no tokens"
            raise BadExplainRequest(f"instance {i}: the completion is empty ({why}); nothing to attribute it to")
        self.fits(len(prompt_ids), len(ids), i)
        return ids, generated

    def fits(self, prompt_tokens: int, target_tokens: int, i: int) -> None:
        if prompt_tokens + target_tokens > self.max_positions:
            raise BadExplainRequest(
                f"instance {i}: prompt ({prompt_tokens} tokens) and completion ({target_tokens}) exceed the "
                f"model's {self.max_positions} positions"
            )

    def generate(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        """The greedy completion of `prompt_ids`, up to (not including) an end-of-sequence token."""
        torch = self._torch
        ids = torch.tensor([prompt_ids], device=self.device)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=self.pad_id,
            )
        new = out[0, len(prompt_ids) :].tolist()
        for j, token in enumerate(new):
            if token in self.eos_ids:
                return new[:j]
        return new

    def log_probs(self, prompt_ids: Any, target_ids: list[int]) -> np.ndarray:
        """log p(target token t | prompt, target[:t]) per completion token, teacher-forced in one pass."""
        torch = self._torch
        prompt = torch.as_tensor(prompt_ids, device=self.device).reshape(1, -1)
        target = torch.tensor(target_ids, device=self.device)
        with torch.no_grad():
            logits = self.model(input_ids=torch.cat([prompt, target[None]], 1)).logits[0].float()
        n = prompt.shape[1]
        scores = torch.log_softmax(logits[n - 1 : n - 1 + len(target_ids)], -1)
        return scores[torch.arange(len(target_ids)), target].cpu().numpy().astype(np.float64)

    # ------------------------------------------------------------------ explaining

    def explain(self, X: np.ndarray, options: ExplainOptions) -> list[CompletionExplanation]:
        if options.target is not None:
            raise BadExplainRequest(
                f"{self.type_name} explains a completion, not an output column: give the completion instead of target"
            )
        self.set_deadline(options.deadline)
        how = str(options.params.get("segments") or self.settings.params.get("segments", "words"))
        roles = options.params.get("roles") or self.settings.params.get("roles") or ROLES
        roles = set(roles.split(",") if isinstance(roles, str) else roles)
        return [self.explain_one(inst, how, roles, options, i) for i, inst in enumerate(X)]

    def explain_one(
        self, inst: LLMExplainInstance, how: str, roles: set[str], options: ExplainOptions, i: int
    ) -> CompletionExplanation:
        prompt = self.prompt(inst, how, roles)
        prompt_ids = self.token_ids(prompt.text, prompt.add_special_tokens)
        if len(prompt_ids) > self.max_tokens:
            raise self.too_long(i, len(prompt_ids), "prompt")
        if not prompt.segments:
            raise BadExplainRequest(
                f"instance {i}: no text to attribute in the messages of roles {', '.join(sorted(roles))}"
            )
        target_ids, generated = self.target(inst, prompt_ids, options, i)
        token_log_probs = self.log_probs(prompt_ids, target_ids)
        scores, fields, per_token = self.attribute(prompt, prompt_ids, target_ids, token_log_probs, options)
        raw: dict[str, Any] = {"completion_token_log_probs": token_log_probs.tolist(), "device": self.device.type}
        if options.params.get("per_token"):
            raw["token_attributions"] = np.asarray(per_token, dtype=np.float64).tolist()
        return CompletionExplanation(
            method=self.method,
            segmentation=how,  # type: ignore[arg-type]  # checked by the segments Param
            segments=[
                PromptSegment(text=s.text, role=s.role, message=s.message, start=s.start, attribution=float(v))
                for s, v in zip(prompt.segments, scores, strict=True)
            ],
            completion=inst.completion or self.tokenizer.decode(target_ids, skip_special_tokens=True),
            completion_tokens=[self.tokenizer.decode([t]) for t in target_ids],
            generated=generated,
            target_log_prob=float(token_log_probs.sum()),
            prompt_tokens=len(prompt_ids),
            raw=raw | fields.pop("raw", {}),
            **fields,
        )

    @abstractmethod
    def attribute(
        self,
        prompt: Prompt,
        prompt_ids: list[int],
        target_ids: list[int],
        token_log_probs: np.ndarray,
        options: ExplainOptions,
    ) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
        """(attribution per segment, extra CompletionExplanation fields, attributions per completion token
        x segment)."""
