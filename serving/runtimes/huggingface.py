"""Hugging Face transformers models from a local folder, as KServe's huggingfaceserver (`--backend=huggingface`).

Tasks, as KServe names them: `text_generation` (AutoModelForCausalLM; the OpenAI chat and
completions endpoints stream from it), `text_embedding` (AutoModel, mean pooling over the
attention mask then L2 normalisation, as sentence-transformers does for MiniLM) and
`sequence_classification` (AutoModelForSequenceClassification). The task comes from
`ModelSettings.task` or, absent, from the config's `architectures`.

Every model call runs on one dedicated thread per model, so the event loop never waits on
torch; embeddings and classifications of concurrent requests share batches
(`serving/batching.py`). Weights load only from the folder (`local_files_only`): nothing is
ever fetched from a hub.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from infertap.serving.batching import DynamicBatcher
from infertap.serving.codec import MetadataTensor
from infertap.serving.errors import InferenceError, ModelLoadError
from infertap.serving.runtimes.base import Runtime, Tensors
from infertap.serving.runtimes.devices import select_torch_device
from infertap.serving.runtimes.hf_generation import Generation, SamplingParams, run_generate
from infertap.serving.settings import ModelSettings
from infertap.serving.storage import uri_to_path

log = logging.getLogger("infertap.serving")

TASKS = ("text_generation", "text_embedding", "sequence_classification")
# KServe's architecture suffixes of the tasks infertap serves (huggingfaceserver/task.py).
ARCHITECTURE_TASKS = (("ForCausalLM", "text_generation"), ("ForSequenceClassification", "sequence_classification"))
# Sizes a tokenizer reports when it sets no limit (transformers' VERY_LARGE_INTEGER and kin).
_NO_LIMIT = 10**8
# Completion length for V1/V2 predict on a generation model (OpenAI's default for completions).
PREDICT_MAX_TOKENS = 16


class PromptTooLongError(InferenceError):
    """The prompt (plus the completion asked for) does not fit the model's context: HTTP 400."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def infer_task(architectures: list[str] | None, folder: Path) -> str:
    """KServe's rule (the architecture's suffix), plus: a bare encoder (`BertModel`, ...) or a
    sentence-transformers folder (`modules.json`) is `text_embedding`, KServe's own sample."""
    for arch in architectures or []:
        for suffix, task in ARCHITECTURE_TASKS:
            if arch.endswith(suffix):
                return task
    if (folder / "modules.json").exists() or any(a.endswith("Model") for a in architectures or []):
        return "text_embedding"
    raise ModelLoadError(
        f"cannot infer the task of {folder} from its architectures {architectures}; set --task ({', '.join(TASKS)})"
    )


def torch_dtype(name: str, config_dtype: Any, cuda: bool) -> Any:
    """KServe's dtype rule: auto takes the config's dtype, else float16 on CUDA and float32 on CPU."""
    import torch

    names = {"float32": torch.float32, "float": torch.float32, "float16": torch.float16, "half": torch.float16}
    names["bfloat16"] = torch.bfloat16
    if name != "auto":
        return names[name]
    if isinstance(config_dtype, torch.dtype):
        return config_dtype
    if isinstance(config_dtype, str) and config_dtype in names:
        return names[config_dtype]
    return torch.float16 if cuda else torch.float32


def model_max_length(config: Any, tokenizer: Any) -> int | None:
    """The longest sequence the model takes: its position limit, or the tokenizer's."""
    limits = [
        v
        for v in (getattr(config, k, None) for k in ("max_position_embeddings", "n_positions", "max_seq_len"))
        if isinstance(v, int) and v > 0
    ]
    tok = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok, int) and 0 < tok < _NO_LIMIT:
        limits.append(tok)
    return min(limits) if limits else None


def texts_of(array: np.ndarray, name: str) -> list[str]:
    """The strings of a V1/V2 input (BYTES as UTF-8, or str), flattened in order."""
    out = []
    for item in np.asarray(array).reshape(-1).tolist():
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError:
                raise InferenceError(f"input {name!r}: BYTES elements must be UTF-8 text") from None
        if not isinstance(item, str):
            raise InferenceError(f"input {name!r}: the model takes text (BYTES), got {type(item).__name__} data")
        out.append(item)
    return out


class HuggingFaceRuntime(Runtime):
    """A transformers model and its tokenizer from a local HF-format folder."""

    platform = "huggingface"

    def __init__(self, settings: ModelSettings):
        super().__init__(settings)
        self.task: str = settings.task or ""
        # Called from the model thread with the count of tokens each generation step produced (metrics hook).
        self.on_tokens: Callable[[int], None] | None = None

    def load(self) -> None:
        path = uri_to_path(self.settings.uri)
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelLoadError(
                f"huggingface model {self.name!r}: {path} is not a Hugging Face model folder (no config.json); "
                f"storageUri {self.settings.uri!r}"
            )
        self.path = path
        try:
            self._load(path)
        except ModelLoadError:
            raise
        except Exception as err:  # transformers' own errors: missing weights, unknown architecture
            raise ModelLoadError(
                f"cannot load huggingface model {self.name!r} from {path}: {type(err).__name__}: {err}"
            ) from err
        self.ready = True

    def _load(self, path: Path) -> None:
        import torch
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        s = self.settings
        if s.backend == "vllm":
            raise ModelLoadError(
                f"huggingface model {self.name!r}: --backend=vllm: vLLM is not part of infertap; "
                "use --backend=huggingface (or auto)"
            )
        self._torch = torch
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        self.task = s.task or infer_task(getattr(config, "architectures", None), path)
        self.device = torch.device(select_torch_device(s.device, torch.cuda.is_available()))
        self.dtype = torch_dtype(s.dtype, getattr(config, "dtype", None), self.device.type == "cuda")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        cls = {
            "text_generation": AutoModelForCausalLM,
            "text_embedding": AutoModel,
            "sequence_classification": AutoModelForSequenceClassification,
        }[self.task]
        self.model = cls.from_pretrained(path, dtype=self.dtype, local_files_only=True).to(self.device).eval()
        derived = model_max_length(config, self.tokenizer)
        if s.max_model_len is not None and derived is not None and s.max_model_len > derived:
            raise ModelLoadError(
                f"huggingface model {self.name!r}: --max_model_len {s.max_model_len} is more than the model's "
                f"{derived} positions"
            )
        self.max_model_len: int = s.max_model_len or derived or 2048
        self.labels = dict(getattr(config, "id2label", None) or {})
        self.has_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        self.generation_defaults = self._generation_defaults()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"hf-{self.name}")
        self._batcher: DynamicBatcher | None = None
        if self.task != "text_generation" and s.dynamic_batching:
            self._batcher = DynamicBatcher(self._in_model_thread, s.max_batch_size, s.max_batch_wait_ms, self._observe)
        self.inputs = [MetadataTensor(name="text", datatype="BYTES", shape=[-1])]
        if self.task == "text_embedding":
            width = int(getattr(config, "hidden_size", -1) or -1)
            self.outputs = [MetadataTensor(name="embedding", datatype="FP32", shape=[-1, width])]
        elif self.task == "sequence_classification":
            self.outputs = [MetadataTensor(name="label", datatype="INT64", shape=[-1])]
        else:
            self.outputs = [MetadataTensor(name="text", datatype="BYTES", shape=[-1])]
        log.info(
            "huggingface model %r: task %s on %s in %s, max_model_len %d",
            self.name,
            self.task,
            self.device,
            str(self.dtype).replace("torch.", ""),
            self.max_model_len,
        )

    def _generation_defaults(self) -> dict[str, Any]:
        """Sampling defaults of the model's generation_config.json (vLLM's `--generation-config auto`)."""
        if self.task != "text_generation":
            return {}
        gc = getattr(self.model, "generation_config", None)
        out: dict[str, Any] = {}
        if gc is not None and getattr(gc, "do_sample", False):
            for key in ("temperature", "top_p", "top_k", "repetition_penalty"):
                value = getattr(gc, key, None)
                if value is not None:
                    out[key] = value
        return out

    def _observe(self, rows: int) -> None:
        if self.on_batch is not None:
            self.on_batch(rows)

    # --- encoders: embeddings and classification ---------------------------------------------

    def tokenize(self, texts: list[str], truncate: bool = False, param: str = "input") -> list[list[int]]:
        """Token ids of each text (special tokens added); PromptTooLongError past max_model_len unless `truncate`."""
        if not texts:
            raise InferenceError(f"{param!r}: give at least one text")
        encoded = self.tokenizer(texts, add_special_tokens=True, truncation=truncate, max_length=self.max_model_len)
        ids: list[list[int]] = encoded["input_ids"]
        if not truncate:
            for i, row in enumerate(ids):
                if len(row) > self.max_model_len:
                    where = f"input {i}" if len(ids) > 1 else "the input"
                    raise PromptTooLongError(
                        f"This model's maximum context length is {self.max_model_len} tokens, however {where} "
                        f"has {len(row)} tokens. Please reduce the length of the input.",
                        param,
                    )
        return ids

    async def encode(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings or logits, token counts) for tokenized texts, batched with concurrent requests."""
        rows = np.empty(len(ids), dtype=object)
        rows[:] = ids
        if self._batcher is not None:
            out, counts = await self._batcher.submit([rows])
        else:
            out, counts = await self._in_model_thread([rows])
        return out, counts

    async def embed(self, texts: list[str], truncate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        return await self.encode(self.tokenize(texts, truncate))

    def encode_now(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """`encode` in the calling thread, one batch as given: for a caller without an event loop
        that batches its own texts (the text detectors' embedder, `infertap.detectors.text.embed`)."""
        rows = np.empty(len(ids), dtype=object)
        rows[:] = ids
        out, counts = self._forward(rows)
        return out, counts

    async def _in_model_thread(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._forward, arrays[0])

    def _forward(self, rows: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        width = int(counts.max())
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        with torch.inference_mode():
            ids_t = torch.from_numpy(input_ids).to(self.device)
            mask_t = torch.from_numpy(mask).to(self.device)
            kwargs = {"input_ids": ids_t, "attention_mask": mask_t}
            if "token_type_ids" in getattr(self.tokenizer, "model_input_names", ()):
                kwargs["token_type_ids"] = torch.zeros_like(ids_t)
            result = self.model(**kwargs, return_dict=True)
            if self.task == "text_embedding":
                hidden = result.last_hidden_state.float()
                weights = mask_t.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                out = torch.nn.functional.normalize(pooled, p=2, dim=1)
            else:
                out = result.logits.float()
            return [out.cpu().numpy(), counts]

    # --- generation -----------------------------------------------------------------------------

    def chat_prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The chat template applied to `messages` (with the generation prompt), as token ids."""
        if not self.has_chat_template:
            raise InferenceError(
                f"model {self.name!r} has no chat template (tokenizer_config.json chat_template); use completions"
            )
        try:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as err:  # noqa: BLE001 - jinja2's TemplateError, a template's raise_exception(...)
            raise InferenceError(f"the chat template rejected the messages: {err}") from None
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def text_prompt_ids(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])

    def completion_budget(self, prompt_tokens: int, max_tokens: int | None, param: str, default: int | None) -> int:
        """The completion's token limit; PromptTooLongError when prompt plus completion exceed max_model_len."""
        limit = self.max_model_len
        if prompt_tokens >= limit:
            raise PromptTooLongError(
                f"This model's maximum context length is {limit} tokens. However, your {param} resulted in "
                f"{prompt_tokens} tokens. Please reduce the length of the {param}.",
                param,
            )
        wanted = max_tokens if max_tokens is not None else default
        if wanted is None:
            return limit - prompt_tokens
        if prompt_tokens + wanted > limit:
            raise PromptTooLongError(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + wanted} tokens ({prompt_tokens} in the {param}, {wanted} in the completion). "
                f"Please reduce the length of the {param} or completion.",
                param,
            )
        return wanted

    def start_generation(self, prompt_ids: list[int], params: SamplingParams) -> Generation:
        """Queue `generate()` on the model thread; iterate the result's `deltas()` for the text."""
        if self.task != "text_generation":
            raise InferenceError(f"model {self.name!r} is a {self.task} model; it does not generate text")
        generation = Generation(self.tokenizer, prompt_ids, params, self.on_tokens)
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, run_generate, self.model, generation, self.device, self.pad_token_id
        )
        future.add_done_callback(lambda f: f.exception())  # errors travel through the generation itself
        return generation

    def sampling(
        self,
        max_new_tokens: int,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        stop: list[str] | None = None,
        min_new_tokens: int = 0,
    ) -> SamplingParams:
        """SamplingParams from request values; None takes the model's generation_config, else OpenAI's default."""
        d = self.generation_defaults

        def pick(value: Any, key: str, fallback: Any) -> Any:
            return value if value is not None else d.get(key, fallback)

        return SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=float(pick(temperature, "temperature", 1.0)),
            top_p=float(pick(top_p, "top_p", 1.0)),
            top_k=int(pick(top_k, "top_k", 0)),
            repetition_penalty=float(pick(repetition_penalty, "repetition_penalty", 1.0)),
            seed=seed,
            stop=list(stop or []),
            min_new_tokens=min(min_new_tokens, max_new_tokens),
        )

    # --- V1 / V2 predict ----------------------------------------------------------------------

    async def predict(self, inputs: Tensors, *, proba: bool | None = None) -> Tensors:
        if not inputs:
            raise InferenceError(f"model {self.name!r} needs one text input (BYTES)")
        name, array = next(iter(inputs.items()))
        texts = texts_of(array, name)
        if self.task == "text_generation":
            outputs = np.empty(len(texts), dtype=object)
            for i, text in enumerate(texts):
                ids = self.text_prompt_ids(text)
                budget = self.completion_budget(len(ids), PREDICT_MAX_TOKENS, "prompt", None)
                generation = self.start_generation(ids, self.sampling(max_new_tokens=budget, temperature=0.0))
                outputs[i] = await generation.text()
            return {"text": outputs}
        # KServe's encoders truncate V1/V2 inputs to the model's length.
        out, _counts = await self.encode(self.tokenize(texts, truncate=True))
        if self.task == "text_embedding":
            return {"embedding": out}
        use_proba = self.settings.predict_proba if proba is None else proba
        if use_proba:
            shifted = np.exp(out - out.max(axis=1, keepdims=True))
            return {"probabilities": (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)}
        return {"label": out.argmax(axis=1).astype(np.int64)}

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
        self._executor.shutdown(wait=False)
