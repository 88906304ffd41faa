"""What the text and LLM explainers share: a Hugging Face model folder, read as the model server reads it.

The folder is the one the predictor serves (`storage_uri`; `infertap up` passes the
predictor's own), loaded with `local_files_only` (nothing is fetched from a hub) in float32
(gradients in half precision are too coarse for attributions), on CUDA when present
(`device`). Parameters are frozen: captum's layer methods differentiate the output of the
embedding layer, never the weights.

Deadlines: every forward pass of the model goes through its input embedding layer, so a
pre-hook there raises `DeadlineExceeded` once the deadline of the request being explained in
that thread has passed. White-box work therefore stops within one forward pass (captum calls
`model.forward` directly, which skips hooks on the model itself, not on its layers).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from infertap.explainers.backends.base import Explainer
from infertap.explainers.errors import BadExplainRequest, DeadlineExceeded, ExplainerLoadError
from infertap.serving.errors import ModelLoadError
from infertap.serving.storage import uri_to_path


def hf_folder(uri: str | None, explainer: str) -> Path:
    """The Hugging Face model folder at `uri`; ExplainerLoadError naming what is missing."""
    if not uri:
        raise ExplainerLoadError(f"{explainer} reads a Hugging Face model folder: give storage_uri")
    path = uri_to_path(uri)
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ExplainerLoadError(f"{explainer}: {path} is not a Hugging Face model folder (no config.json)")
    return path


class HFExplainer(Explainer):
    """A white-box explainer over a transformers model and its (fast) tokenizer."""

    kind = "whitebox"
    requires = ("torch", "transformers", "captum")
    #: The huggingface runtime's task the backend explains (`sequence_classification`, `text_generation`).
    task: ClassVar[str] = ""

    def _load(self) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        from infertap.serving.runtimes.devices import select_torch_device
        from infertap.serving.runtimes.huggingface import infer_task, model_max_length

        path = hf_folder(self.settings.storage_uri, self.type_name)
        self._torch = torch
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
            task = infer_task(getattr(config, "architectures", None), path)
        except (OSError, ValueError, ModelLoadError) as err:
            raise ExplainerLoadError(f"{self.type_name}: cannot read the model config in {path}: {err}") from None
        if task != self.task:
            other = "TextShap or TextIntegratedGradients" if task == "sequence_classification" else "an LLM explainer"
            hint = f"; use {other}" if task in ("sequence_classification", "text_generation") else ""
            raise ExplainerLoadError(f"{self.type_name} explains {self.task} models; {path} is a {task} model{hint}")
        self.device = torch.device(select_torch_device(self.settings.device, torch.cuda.is_available()))
        cls = AutoModelForSequenceClassification if task == "sequence_classification" else AutoModelForCausalLM
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = cls.from_pretrained(path, dtype=torch.float32, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ExplainerLoadError(f"{self.type_name}: cannot load the model in {path}: {err}") from None
        if not getattr(self.tokenizer, "is_fast", False):
            raise ExplainerLoadError(f"{self.type_name} needs a fast tokenizer (tokenizer.json) in {path}")
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]  # transformers' stub of .to
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.embeddings = self.model.get_input_embeddings()
        self.embeddings.register_forward_pre_hook(self._check_deadline)
        self.config = config
        self.labels: dict[int, str] = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
        self.max_tokens = min(self.settings.max_prompt_tokens, model_max_length(config, self.tokenizer) or 10**9)
        self.pad_id = self.baseline_token_id()

    def baseline_token_id(self) -> int:
        """The token put in place of attributed tokens at the IG baseline: pad, else unk, else eos, else 0."""
        for name in ("pad_token_id", "unk_token_id", "eos_token_id"):
            value = getattr(self.tokenizer, name, None)
            if isinstance(value, int):
                return value
        return 0

    def _check_deadline(self, _module: Any, _args: Any) -> None:
        deadline = getattr(self._deadline, "value", None)
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceeded("stopped at the deadline between two forward passes of the model")

    def texts(self, X: np.ndarray, what: str = "text") -> list[str]:
        """The strings of a batch (V1 strings, V2 BYTES as UTF-8); BadExplainRequest for anything else."""
        out = []
        for i, item in enumerate(np.asarray(X, dtype=object).reshape(-1).tolist()):
            if isinstance(item, bytes):
                try:
                    item = item.decode("utf-8")
                except UnicodeDecodeError:
                    raise BadExplainRequest(f"instance {i}: BYTES must be UTF-8 text") from None
            if not isinstance(item, str):
                raise BadExplainRequest(
                    f"{self.type_name} explains {what}: send strings (V1 instances, V2 BYTES), "
                    f"got {type(item).__name__} in instance {i}"
                )
            out.append(item)
        return out

    def too_long(self, i: int, n: int, what: str = "text") -> BadExplainRequest:
        return BadExplainRequest(
            f"instance {i}: the {what} has {n} tokens; this explainer takes at most {self.max_tokens} "
            f"(max_prompt_tokens {self.settings.max_prompt_tokens}, or the model's positions)"
        )
