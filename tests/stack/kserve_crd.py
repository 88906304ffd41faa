"""KServe's CRD schemas (vendored in fixtures/kserve-crd/) as JSON Schema validators.

A CRD's `openAPIV3Schema` is Kubernetes' structural subset of OpenAPI v3.0, close to JSON
Schema draft 4. What the API server (and `kubectl apply`, whose field validation is strict
by default since Kubernetes 1.27) does with it, and what this module makes jsonschema do:

- unknown fields are errors where a schema lists `properties`, unless it says
  `x-kubernetes-preserve-unknown-fields: true` (`additionalProperties: false` is added);
  an object schema without `properties` (ObjectMeta inside a template) is left open;
- `nullable: true` admits null; elsewhere null is an error here (the API server would prune
  it silently: stricter, since a null in a rendered document is a bug);
- `x-kubernetes-int-or-string: true` admits integers and strings (quantities, ports);
- `x-kubernetes-embedded-resource: true` admits apiVersion, kind and metadata;
- `x-kubernetes-list-type: set | map` (with `x-kubernetes-list-map-keys`) rejects duplicate
  items or keys, as the API server does;
- the root's apiVersion and kind must be the CRD's group/version and kind, metadata.name is
  required, labels and annotations are string maps (ObjectMeta, which CRDs leave open);
- not checked: CEL rules (`x-kubernetes-validations`), `format`, defaults.
"""

from __future__ import annotations

import copy
import gzip
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

CRD_DIR = Path(__file__).parent / "fixtures" / "kserve-crd"
CRDS = {
    "InferenceService": "serving.kserve.io_inferenceservices.yaml.gz",
    "LLMInferenceService": "serving.kserve.io_llminferenceservices.yaml.gz",
}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_crd(kind: str) -> dict[str, Any]:
    """KServe's CustomResourceDefinition of `kind`, as vendored."""
    with gzip.open(CRD_DIR / CRDS[kind], "rt", encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)  # noqa: S506 - a SafeLoader


def structural_to_jsonschema(schema: Any) -> Any:
    """A copy of a structural schema that jsonschema's draft-4 validator checks as Kubernetes would."""
    if isinstance(schema, list):
        return [structural_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: structural_to_jsonschema(s) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = structural_to_jsonschema(value)
        elif key in ("default", "example", "description", "x-kubernetes-validations"):
            continue  # not validation (CEL rules are not evaluated here)
        else:
            out[key] = copy.deepcopy(value)
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        if "anyOf" not in out:
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        for combinator in ("anyOf", "oneOf"):
            if combinator in out:
                out[combinator] = [*out[combinator], {"type": "null"}]
    return out


def _list_type(validator, list_type, instance, schema):
    """`x-kubernetes-list-type`: set items and map keys are unique."""
    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        seen: list[Any] = []
        for item in instance:
            if item in seen:
                yield ValidationError(f"duplicate item {item!r} in a list of type set")
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        defaults = {k: (schema.get("items") or {}).get("properties", {}).get(k, {}).get("default") for k in keys}
        seen_keys: set[tuple] = set()
        for item in instance:
            if not isinstance(item, dict):
                continue
            key = tuple(repr(item.get(k, defaults[k])) for k in keys)
            if key in seen_keys:
                yield ValidationError(f"duplicate entry with {dict(zip(keys, key, strict=True))} in a list of type map")
            seen_keys.add(key)


KubernetesValidator = jsonschema.validators.extend(Draft4Validator, {"x-kubernetes-list-type": _list_type})

OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


@cache
def validator(kind: str, version: str) -> Any:
    """A validator for `kind` at `version` (e.g. InferenceService, v1beta1) from KServe's CRD."""
    crd = load_crd(kind)
    group = crd["spec"]["group"]
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version and entry.get("served", True):
            schema = structural_to_jsonschema(entry["schema"]["openAPIV3Schema"])
            break
    else:
        raise KeyError(f"KServe's CRD serves no {kind} {version}")
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    props = schema["properties"]
    props["apiVersion"] = {"enum": [f"{group}/{version}"]}
    props["kind"] = {"enum": [crd["spec"]["names"]["kind"]]}
    props["metadata"] = {**OBJECT_META, "additionalProperties": True}  # the API server checks the rest of ObjectMeta
    KubernetesValidator.check_schema(schema)
    return KubernetesValidator(schema)


def errors(manifest: dict[str, Any]) -> list[str]:
    """Every way `manifest` breaks KServe's CRD schema for its kind and version ([] when it conforms)."""
    version = str(manifest.get("apiVersion", "")).rsplit("/", 1)[-1]
    found = validator(manifest["kind"], version).iter_errors(manifest)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in found)
