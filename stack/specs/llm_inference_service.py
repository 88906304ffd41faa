"""`serving.kserve.io/v1alpha2` (older docs: v1alpha1) `kind: LLMInferenceService`.

```yaml
apiVersion: serving.kserve.io/v1alpha2
kind: LLMInferenceService
metadata: {name: tiny-llm}
spec:
  model:
    uri: file://./models/tiny-llm     # hf:// is for a cluster; locally a folder
    name: llama3                      # the OpenAI `model` name (default: metadata.name)
  replicas: 1
  template: {containers: [...]}       # kept, not used locally
  router: {...}                       # kept, not used locally
```

Locally `infertap up` serves `spec.model.uri` with the huggingface runtime (OpenAI endpoints
under /openai/v1 and /v1). KServe's LLMInferenceService has no logger block; its other
fields (replicas, template, router, parallelism, prefill, worker, tracing, baseRefs) are
kept without a warning and not run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from infertap.stack.specs.inference_service import ObjectMeta, Passthrough

LLM_API_VERSIONS = ("serving.kserve.io/v1alpha2", "serving.kserve.io/v1alpha1")


class LLMModelSpec(Passthrough):
    passthrough = frozenset({"criticality", "lora", "storage"})

    uri: str = Field(min_length=1)
    name: str | None = None


class LLMInferenceServiceSpec(Passthrough):
    passthrough = frozenset(
        {"replicas", "template", "router", "parallelism", "prefill", "worker", "tracing", "baseRefs"}
    )

    model: LLMModelSpec


class LLMInferenceService(Passthrough):
    """One `kind: LLMInferenceService` document."""

    passthrough = frozenset({"status"})

    api_version: Literal["serving.kserve.io/v1alpha2", "serving.kserve.io/v1alpha1"]
    kind: Literal["LLMInferenceService"]
    metadata: ObjectMeta
    spec: LLMInferenceServiceSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def model_name(self) -> str:
        return self.spec.model.name or self.metadata.name


def _register() -> None:
    from infertap.stack.specs.loader import register_kind

    register_kind("LLMInferenceService", *LLM_API_VERSIONS)(LLMInferenceService)


_register()
