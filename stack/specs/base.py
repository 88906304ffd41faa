"""Base of every spec model: KServe's camelCase names, unknown fields kept and reported."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


def join_path(prefix: str, key: str | int) -> str:
    """`spec.predictor` + `logger` -> `spec.predictor.logger`; ints become `[i]`."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


class SpecModel(BaseModel):
    """A part of a Kubernetes-style document.

    Fields use KServe's camelCase names in YAML (`storageUri`) and snake_case in Python.
    Unknown fields are kept (`extra="allow"`) so a YAML written for a newer KServe still
    loads; `unknown_fields()` names them so the loader can warn.
    """

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)

    def unknown_fields(self, prefix: str = "") -> Iterator[str]:
        """YAML paths of every field no model here declares, depth first."""
        for key in self.model_extra or {}:
            yield join_path(prefix, key)
        for name, field in type(self).model_fields.items():
            yield from _unknown_in(getattr(self, name), join_path(prefix, field.alias or name))


def _unknown_in(value: object, prefix: str) -> Iterator[str]:
    if isinstance(value, SpecModel):
        yield from value.unknown_fields(prefix)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unknown_in(item, join_path(prefix, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, SpecModel):
                yield from item.unknown_fields(join_path(prefix, str(key)))
