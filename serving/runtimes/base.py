"""The one interface every runtime implements (MLServer style: load once, predict many)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from infertap.serving.codec import MetadataTensor, ModelMetadata
from infertap.serving.errors import ModelLoadError
from infertap.serving.settings import ModelSettings
from infertap.serving.storage import resolve_model_file

Tensors = dict[str, np.ndarray]


class Runtime(ABC):
    """A loaded model behind one interface.

    `load()` is synchronous and may be slow (the server calls it before reporting ready);
    `predict()` is a coroutine that must not block the event loop: runtimes run the model
    call in a thread. Inputs and outputs are named numpy arrays whose first axis is the batch.
    """

    platform: ClassVar[str] = ""

    def __init__(self, settings: ModelSettings):
        self.settings = settings
        self.name = settings.name
        self.path: Path | None = None
        self.ready = False
        self.inputs: list[MetadataTensor] = []
        self.outputs: list[MetadataTensor] = []
        # Called with the rows of every model call that merged requests (metrics hook).
        self.on_batch: Callable[[int], None] | None = None

    def load(self) -> None:
        """Find the model file from `settings.uri` and load it; ModelLoadError names the file."""
        self.path = resolve_model_file(self.settings.uri, self.settings.format)
        try:
            self._load(self.path)
        except ModelLoadError:
            raise
        except Exception as err:  # any library's own error: corrupt file, wrong format, missing dependency
            raise ModelLoadError(
                f"cannot load {self.settings.format} model {self.name!r} from {self.path}: {type(err).__name__}: {err}"
            ) from err
        self.ready = True

    @abstractmethod
    def _load(self, path: Path) -> None:
        """Load the model from `path` and fill `inputs` / `outputs` metadata."""

    @abstractmethod
    async def predict(self, inputs: Tensors, *, proba: bool | None = None) -> Tensors:
        """Run the model. `proba` asks classifiers for probabilities (None: the model's setting).

        Raises InferenceError when the inputs do not fit the model.
        """

    def metadata(self) -> ModelMetadata:
        """V2 model metadata: name, versions, platform, input and output tensors."""
        versions = [self.settings.version] if self.settings.version else None
        return ModelMetadata(
            name=self.name, versions=versions, platform=self.platform, inputs=self.inputs, outputs=self.outputs
        )

    async def close(self) -> None:  # noqa: B027 - optional hook: a no-op for runtimes that hold nothing
        """Release what `load()` took (threads, devices)."""

    @staticmethod
    async def _in_thread(fn: Callable, *args):
        # The default executor: model libraries release the GIL in their native code.
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
