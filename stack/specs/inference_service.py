"""The `serving.kserve.io/v1beta1` InferenceService subset that infertap runs locally.

Fields infertap acts on are typed; KServe fields it only carries (resources, replicas,
pod settings) are listed in `passthrough` and kept silently; anything else is kept and
reported by `unknown_fields()` so the loader can warn with its YAML path. Directly under a
component (`predictor:`, `transformer:`, `explainer:`) and in a `logger:` block, an unknown
key that is a likely typo of a known one is an error instead (`misspelled_fields()`):
`predictor.loger:` would otherwise run the predictor with no logging at all.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from infertap.stack.specs.base import SpecModel
from infertap.stack.specs.logger_url import check_logger_url

API_VERSION = "serving.kserve.io/v1beta1"
LEGACY_API_VERSION = "serving.kubeflow.org/v1beta1"  # KFServing's group; older samples use it

# Kubernetes Container fields: KServe's ModelSpec and framework specs embed a Container.
CONTAINER_FIELDS = frozenset(
    {
        "name",
        "image",
        "command",
        "args",
        "env",
        "envFrom",
        "resources",
        "ports",
        "volumeMounts",
        "volumeDevices",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "workingDir",
        "imagePullPolicy",
        "securityContext",
        "stdin",
        "stdinOnce",
        "tty",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "resizePolicy",
        "restartPolicy",
    }
)
# KServe's ComponentExtensionSpec (minus logger, typed below) and its copy of the Kubernetes
# PodSpec (pkg/apis/serving/v1beta1/component.go and podspec.go), which every component inlines;
# tests/stack/test_spec_typos.py checks them against KServe's CRD (tests/stack/fixtures/kserve-crd).
COMPONENT_FIELDS = frozenset(
    {
        "minReplicas",
        "maxReplicas",
        "scaleTarget",
        "scaleMetric",
        "scaleMetricType",
        "autoScaling",
        "containerConcurrency",
        "timeout",
        "canaryTrafficPercent",
        "batcher",
        "labels",
        "annotations",
        "deploymentStrategy",
        "workerSpec",
        "storageUris",  # KServe 0.20 has it on every component
        "containers",
        "initContainers",
        "ephemeralContainers",
        "volumes",
        "serviceAccountName",
        "serviceAccount",  # the PodSpec's deprecated alias of serviceAccountName
        "nodeSelector",
        "nodeName",
        "tolerations",
        "affinity",
        "imagePullSecrets",
        "securityContext",
        "priorityClassName",
        "priority",
        "hostNetwork",
        "hostIPC",
        "hostPID",
        "dnsPolicy",
        "dnsConfig",
        "runtimeClassName",
        "schedulerName",
        "topologySpreadConstraints",
        "terminationGracePeriodSeconds",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "hostAliases",
        "shareProcessNamespace",
        "restartPolicy",
        "overhead",
        "readinessGates",
        "preemptionPolicy",
        "os",
        "hostname",
        "hostnameOverride",
        "hostUsers",
        "resources",  # pod-level resources (PodLevelResources)
        "subdomain",
        "setHostnameAsFQDN",
        "activeDeadlineSeconds",
        "resourceClaims",
        "schedulingGates",
    }
)
# The framework shorthands of v1beta1 (`predictor.sklearn: {storageUri: ...}`), still in
# KServe's CRD and in many of its samples.
FRAMEWORKS = (
    "sklearn",
    "xgboost",
    "lightgbm",
    "pytorch",
    "onnx",
    "tensorflow",
    "triton",
    "pmml",
    "paddle",
    "huggingface",
    "catboost",
)

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class Passthrough(SpecModel):
    """A model whose `passthrough` names are KServe fields kept without a warning."""

    passthrough: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def known_fields(cls) -> frozenset[str]:
        return super().known_fields() | cls.passthrough

    def unknown_fields(self, prefix: str = ""):
        for path in super().unknown_fields(prefix):
            key = path[len(prefix) + 1 :] if prefix else path
            if key not in self.passthrough:
                yield path


class ModelFormat(Passthrough):
    name: str = Field(min_length=1)
    version: str | None = None


class LoggerSpec(Passthrough):
    """`logger:` on a component. `mode` omitted means `all`.

    KServe's webhook rejects an omitted mode ("invalid logger type") although its API doc
    calls `all` the default; infertap follows the documented default instead. A likely typo
    of a field (`mod:`) is an error.
    """

    typo_checked = True
    passthrough = frozenset({"marshallerUrl", "batchSize", "batchInterval"})

    mode: Literal["all", "request", "response"] = "all"
    url: str | None = None
    metadata_headers: list[str] = Field(default_factory=list)
    metadata_annotations: list[str] = Field(default_factory=list)
    storage: dict[str, Any] | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else check_logger_url(url)


class ModelSpec(Passthrough):
    """`predictor.model` (or a framework shorthand such as `predictor.sklearn`)."""

    passthrough = CONTAINER_FIELDS | {"runtimeVersion", "storage"}

    model_format: ModelFormat | None = None
    storage_uri: str | None = None
    runtime: str | None = None
    protocol_version: Literal["v1", "v2", "grpc-v1", "grpc-v2"] | None = None
    args: list[str] = Field(default_factory=list)
    env: list[dict[str, Any]] = Field(default_factory=list)

    def env_value(self, name: str) -> str | None:
        """The literal `value` of env var `name` (valueFrom is not resolved locally)."""
        for item in self.env:
            if item.get("name") == name and "value" in item:
                return str(item["value"])
        return None


class ComponentSpec(Passthrough):
    """What predictor, transformer and explainer share: the logger and KServe's extras.

    A likely typo of one of their fields (`loger:`, `minReplica:`) is an error.
    """

    typo_checked = True
    passthrough = COMPONENT_FIELDS

    logger: LoggerSpec | None = None


class PredictorSpec(ComponentSpec):
    # KServe's PredictorSpec (pkg/apis/serving/v1beta1/predictor.go): frameworks without a typed
    # field below are still KServe fields, kept and not warned about; so are its own name and
    # storageContainerName (KServe 0.20).
    passthrough = (
        COMPONENT_FIELDS
        | (frozenset(FRAMEWORKS) - {"sklearn", "xgboost", "lightgbm", "pytorch", "onnx"})
        | {"name", "storageContainerName"}
    )

    model: ModelSpec | None = None
    sklearn: ModelSpec | None = None
    xgboost: ModelSpec | None = None
    lightgbm: ModelSpec | None = None
    pytorch: ModelSpec | None = None
    onnx: ModelSpec | None = None

    def model_with_path(self) -> tuple[str, str, ModelSpec] | None:
        """(format name, YAML path, spec) of the model to serve, or None (custom containers).

        `model:` wins; else the framework shorthand names the format.
        """
        if self.model is not None:
            fmt = self.model.model_format.name if self.model.model_format else ""
            return fmt, "spec.predictor.model", self.model
        for framework in FRAMEWORKS:
            spec = getattr(self, framework, None)
            if spec is None and self.model_extra:
                raw = self.model_extra.get(framework)
                spec = ModelSpec.model_validate(raw) if isinstance(raw, dict) else None
            if spec is not None:
                return framework, f"spec.predictor.{framework}", spec
        return None


class ExplainerSpec(ComponentSpec):
    """Kept as written; `up` runs its `containers`, `alibi` and `art` forms (stack/explain_plan.py)."""

    passthrough = COMPONENT_FIELDS | {"art", "alibi"}


class TransformerSpec(ComponentSpec):
    pass


class InferenceServiceSpec(Passthrough):
    predictor: PredictorSpec
    transformer: TransformerSpec | None = None
    explainer: ExplainerSpec | None = None

    def components(self) -> list[tuple[str, ComponentSpec]]:
        """(name, spec) of each component present, predictor first."""
        found = [("predictor", self.predictor), ("transformer", self.transformer), ("explainer", self.explainer)]
        return [(name, spec) for name, spec in found if spec is not None]


class ObjectMeta(Passthrough):
    passthrough = frozenset(
        {
            "uid",
            "generation",
            "generateName",
            "creationTimestamp",
            "deletionTimestamp",
            "resourceVersion",
            "finalizers",
            "ownerReferences",
            "managedFields",
            "selfLink",
            "deletionGracePeriodSeconds",
        }
    )

    name: str
    namespace: str = "default"
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns_name(cls, name: str) -> str:
        if len(name) > 63 or not _DNS1035.match(name):
            raise ValueError(
                f"must be a DNS-1035 label: lowercase letters, digits and '-', starting with a letter (got {name!r})"
            )
        return name


class InferenceService(Passthrough):
    """One `kind: InferenceService` document."""

    passthrough = frozenset({"status"})

    api_version: Literal["serving.kserve.io/v1beta1", "serving.kubeflow.org/v1beta1"]
    kind: Literal["InferenceService"]
    metadata: ObjectMeta
    spec: InferenceServiceSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def loggers(self) -> list[tuple[str, LoggerSpec]]:
        """(component, logger block) for each component that has one."""
        return [(name, comp.logger) for name, comp in self.spec.components() if comp.logger is not None]


__all__ = [
    "API_VERSION",
    "LEGACY_API_VERSION",
    "FRAMEWORKS",
    "ModelFormat",
    "LoggerSpec",
    "ModelSpec",
    "ComponentSpec",
    "PredictorSpec",
    "ExplainerSpec",
    "TransformerSpec",
    "InferenceServiceSpec",
    "ObjectMeta",
    "InferenceService",
]
