"""What the text detectors share: typed parameters, the judged column, embeddings, the
reference split, and folders of npz + JSON (no pickles).

- **Column**: `field` names the text column judged (a feature of `type: text`); default the
  first one. A window's frame (`infertap.detectors.text.frame`) is an object array, one
  column per text feature.
- **Embeddings**: `model` (a Hugging Face folder; default the packaged all-MiniLM-L6-v2),
  `device` (auto: CUDA when torch sees one), `batch_size`, `max_tokens`. Every text backend in
  one process with the same model shares one `Embedder` and its window cache, so a window is
  embedded once whatever number of detectors judge it (a TextSuite's members).
- **Reference**: a corpus (`infertap.detectors.text.corpus`), at most `max_reference` texts
  (a seeded sample), split once by `seed` into a fitting part and a held-out part
  (`holdout`, 20 %): what needs data the reference did not fit (an out-of-distribution
  threshold, out-of-vocabulary shares) takes the held-out part, and `infertap fit` reports
  what the detector says of it.
- **Folders**: `infertap-detector.json` (backend, params, the model's fingerprint),
  `state.npz` (arrays, loaded with `allow_pickle=False`), `texts.json` where examples are
  kept. A folder saved with another embedding model (other dimensions) is refused at load.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infertap.detectors.backends.base import DetectorBackend
from infertap.detectors.backends.folder import read_manifest, write_manifest
from infertap.detectors.result import DetectionKind
from infertap.detectors.settings import FeatureSettings

log = logging.getLogger(__name__)

STATE = "state.npz"
TEXTS = "texts.json"
#: characters of one text shown in a detection (examples, flagged prompts)
SHOWN_CHARS = 500


class TextParams(BaseModel):
    """Parameters every text detector takes."""

    model_config = ConfigDict(extra="forbid")

    field: str | None = Field(default=None, description="The text column judged; default the first.")
    model: str | None = Field(
        default=None, description="Sentence-embedding model folder; default the packaged all-MiniLM-L6-v2."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: CUDA when torch sees one.")
    batch_size: int | None = Field(default=None, ge=1, le=4096, description="Texts per model call (64 CPU, 256 CUDA).")
    max_tokens: int = Field(default=256, ge=8, le=8192, description="Texts are truncated at this many tokens.")
    threads: int | None = Field(
        default=None, ge=1, le=512, description="torch threads of the detector process (default: torch's, a core each)."
    )
    holdout: float = Field(default=0.2, gt=0, lt=0.9, description="Share of the reference held out of fitting.")
    seed: int = Field(default=0, description="Seed of the reference split and samples.")
    max_reference: int = Field(default=5000, ge=20, description="Most reference texts kept (a seeded sample).")


def parse_params(backend: str, model: type[BaseModel], params: dict[str, Any]) -> Any:
    """The typed parameters; ValueError in one sentence naming the parameter otherwise."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        known = ", ".join(model.model_fields)
        if first["type"] == "extra_forbidden":
            raise ValueError(f"{backend}: unknown parameter {where!r} (known: {known})") from None
        raise ValueError(f"{backend}: parameter {where!r}: {first['msg']}") from None


def shown(text: str) -> str:
    """A text as a detection shows it: as logged (redacted), cut to SHOWN_CHARS."""
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


class TextBackend(DetectorBackend):
    """A detector on one text column of the window's text frame."""

    kind: ClassVar[DetectionKind] = "drift"
    #: the frame it judges (`infertap.detectors.frames.FRAMES` says the same for registry names)
    frame: ClassVar[str] = "text"
    Params: ClassVar[type[TextParams]] = TextParams
    #: needs embeddings (loads the model); the descriptors need only its tokenizer's counts
    embeds: ClassVar[bool] = True

    def __init__(self, feature_names: list[str], params: dict[str, Any]):
        super().__init__(list(feature_names), dict(params))
        self.p = parse_params(type(self).__name__, self.Params, self.params)
        if self.p.field is not None and self.feature_names and self.p.field not in self.feature_names:
            raise ValueError(
                f"{type(self).__name__}: field {self.p.field!r} is not a text feature {self.feature_names}"
            )
        self.on_progress: Callable[[str], None] | None = None  # set by `infertap fit`
        self.summary: dict[str, Any] = {}
        self._embedder: Any = None

    # --- the column ---------------------------------------------------------------------

    @property
    def field(self) -> str:
        return self.p.field or (self.feature_names[0] if self.feature_names else "text")

    def texts(self, x: Any) -> list[str]:
        """The judged column of a frame (or a list of texts as given: the reference)."""
        if isinstance(x, np.ndarray) and x.ndim == 2:
            j = self.feature_names.index(self.field) if self.field in self.feature_names else 0
            column = x[:, j]
        else:
            column = x
        return ["" if t is None else str(t) for t in column]

    def reference_from(self, path: Path, features: Sequence[FeatureSettings]) -> list[str]:
        """The reference corpus's texts of the judged column (`evaluator.read_reference` calls it)."""
        from infertap.detectors.text.corpus import read_texts
        from infertap.detectors.text.frame import TextColumn

        feature = next((f for f in features if f.name == self.field), None)
        column = TextColumn(
            self.field, feature.source if feature else "input", feature.messages if feature else "last_user"
        )
        return read_texts(path, column)

    # --- embeddings ---------------------------------------------------------------------

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from infertap.detectors.text.embed import resolve_model, shared_embedder

            if self.p.threads is not None:  # the detector process is the worker's own: a process-wide setting
                import torch

                torch.set_num_threads(self.p.threads)
            self._embedder = shared_embedder(
                resolve_model(self.p.model), self.p.device, self.p.batch_size, self.p.max_tokens
            )
        return self._embedder

    def embed(self, texts: Sequence[str], reference: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings, token counts) of texts, once per process for the same texts (the window cache)."""
        progress = None
        if reference and self.on_progress is not None:
            report = self.on_progress
            progress = lambda done, total: report(f"embedding the reference {done}/{total}")  # noqa: E731
        return self.embedder.window(list(texts), self.field, progress)

    # --- the reference ------------------------------------------------------------------

    def sample(self, texts: Sequence[str]) -> list[str]:
        """At most `max_reference` texts, a seeded sample in corpus order."""
        texts = list(texts)
        if len(texts) < 10:
            raise ValueError(f"a reference of {len(texts)} texts is too small (10 at least; a few hundred is better)")
        if len(texts) <= self.p.max_reference:
            return texts
        keep = np.sort(np.random.default_rng(self.p.seed).choice(len(texts), self.p.max_reference, replace=False))
        return [texts[i] for i in keep.tolist()]

    def split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(fitting rows, held-out rows) of a reference of `n` texts."""
        order = np.random.default_rng(self.p.seed).permutation(n)
        held = max(1, int(round(n * self.p.holdout)))
        return np.sort(order[held:]), np.sort(order[:held])

    def fit_summary(self) -> dict[str, Any]:
        """What fitting found on the held-out reference (printed by `infertap fit`)."""
        return dict(self.summary)

    # --- folders ------------------------------------------------------------------------

    def save_state(self, path: Path, arrays: dict[str, np.ndarray], texts: list[str] | None = None) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / STATE, **arrays)
        if texts is not None:
            (path / TEXTS).write_text(json.dumps(texts, ensure_ascii=False))
        extra: dict[str, Any] = {"summary": self.summary}
        if self.embeds:
            extra["embedding"] = self.embedder.fingerprint()
        write_manifest(path, type(self).__name__, self.feature_names, self.params, **extra)

    def load_state(self, path: Path) -> tuple[dict[str, np.ndarray], list[str] | None]:
        path = Path(path)
        manifest = read_manifest(path) or {}
        self.summary = dict(manifest.get("summary") or {})
        with np.load(path / STATE, allow_pickle=False) as state:
            arrays = {k: state[k] for k in state.files}
        texts = json.loads((path / TEXTS).read_text()) if (path / TEXTS).is_file() else None
        saved = manifest.get("embedding")
        if self.embeds and saved is not None:
            self.check_model(saved, path)
        return arrays, texts

    def check_model(self, saved: dict[str, Any], path: Path) -> None:
        """A folder fitted with one embedding model does not judge with another."""
        now = self.embedder.fingerprint()
        if saved.get("dimensions") != now["dimensions"]:
            raise ValueError(
                f"{path} was fitted with a {saved.get('dimensions')}-dimensional embedding model; "
                f"{self.embedder.model} gives {now['dimensions']}: fit it again with this model"
            )

    def require(self, value: Any) -> Any:
        if value is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(texts) or load(path) first")
        return value
