"""The models a server holds, by name: lookup with the right error, loading, readiness."""

from __future__ import annotations

import logging
import time

from infertap.serving.errors import ModelNotFoundError, ModelNotReadyError
from infertap.serving.runtimes import Runtime, create_runtime
from infertap.serving.settings import ModelSettings

log = logging.getLogger("infertap.serving")


class ModelRepository:
    """Runtimes keyed by model name; `get` raises the errors the REST layer maps to 404 / 503."""

    def __init__(self, models: list[ModelSettings]):
        names = [m.name for m in models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {', '.join(duplicates)}")
        self.runtimes: dict[str, Runtime] = {m.name: create_runtime(m) for m in models}

    def get(self, name: str, version: str | None = None) -> Runtime:
        """The ready runtime for `name` (and `version`, when the URL names one)."""
        runtime = self.runtimes.get(name)
        if runtime is None:
            raise ModelNotFoundError(f"model {name!r} not found; served: {', '.join(self.runtimes)}")
        if version is not None and version != runtime.settings.version:
            served = runtime.settings.version or "(none)"
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}; served version: {served}")
        if not runtime.ready:
            raise ModelNotReadyError(f"model {name!r} is not ready")
        return runtime

    def find(self, name: str) -> Runtime | None:
        """The runtime for `name` whether ready or not, None if not served."""
        return self.runtimes.get(name)

    @property
    def ready(self) -> bool:
        return all(r.ready for r in self.runtimes.values())

    def load_all(self) -> None:
        """Load every model not yet loaded; the first ModelLoadError propagates."""
        for runtime in self.runtimes.values():
            if runtime.ready:
                continue
            start = time.perf_counter()
            runtime.load()
            log.info(
                "loaded %s model %r from %s in %.2fs",
                runtime.settings.format,
                runtime.name,
                runtime.path,
                time.perf_counter() - start,
            )

    async def close(self) -> None:
        for runtime in self.runtimes.values():
            if runtime.ready:
                await runtime.close()
