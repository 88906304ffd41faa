"""Base of every spec model: KServe's camelCase names, unknown fields kept and reported.

An unknown field is a warning (a newer KServe, or a field infertap does not model), except
in the blocks that say `typo_checked`: there a key that is a likely misspelling of a known
one (`loger:` for `logger:`, which would silently turn logging off) is an error that names
the known field (`misspelled_fields`, `likely_typo`).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator
from typing import ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

#: How close (difflib's `SequenceMatcher.ratio`, on case-folded names: 2 x matched characters /
#: total characters) an unknown key must be to a known one to be called a typo of it. 0.8 is one
#: dropped, doubled or changed letter in a name of four letters or more: `loger`/`logger` 0.91,
#: `mod`/`mode` 0.86, `logr`/`logger` 0.80, `resoruces`/`resources` 0.89, `minReplica` 0.95.
#: Below it stay warnings: `colour`/`url` 0.44, `tolerance`/`tolerations` 0.70, `uri`/`url` 0.67,
#: `volumeMounts`/`volumes` 0.74. KServe's own fields that close to each other at one level
#: (`scaleMetric`/`scaleMetricType` 0.85, `minReplicas`/`maxReplicas` 0.82, `serviceAccount`/
#: `serviceAccountName` 0.88) are all listed as known, so only a field of a newer KServe that
#: close to a listed one would be refused, and the test against KServe's CRD says so. Besides the
#: ratio, a key spelling a known name with its letters in another order (`mdoe`: 0.75) and a
#: key differing from one only in case (`Logger`) are typos.
TYPO_CUTOFF = 0.8


def likely_typo(key: str, known: Collection[str]) -> str | None:
    """The known name `key` is most likely a misspelling of, or None (see TYPO_CUTOFF)."""
    folded = {name.casefold(): name for name in known}
    key_folded = key.casefold()
    if key_folded in folded:
        return folded[key_folded]
    close = difflib.get_close_matches(key_folded, list(folded), n=1, cutoff=TYPO_CUTOFF)
    if close:
        return folded[close[0]]
    for name_folded, name in folded.items():
        if len(name_folded) > 2 and sorted(name_folded) == sorted(key_folded):
            return name
    return None


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

    #: Unknown keys directly in this block are checked against the known ones: a likely typo
    #: is an error (`misspelled_fields`), anything else stays a warning.
    typo_checked: ClassVar[bool] = False

    @classmethod
    def known_fields(cls) -> frozenset[str]:
        """The YAML keys this block takes (its fields' camelCase names)."""
        return frozenset(field.alias or name for name, field in cls.model_fields.items())

    def misspelled_fields(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(YAML path, the known field it likely misspells) of unknown keys in typo-checked blocks, depth first."""
        if self.typo_checked:
            known = self.known_fields()
            for key in self.model_extra or {}:
                if str(key) not in known and (near := likely_typo(str(key), known)) is not None:
                    yield join_path(prefix, str(key)), near
        for name, field in type(self).model_fields.items():
            yield from _misspelled_in(getattr(self, name), join_path(prefix, field.alias or name))

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


def _misspelled_in(value: object, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, SpecModel):
        yield from value.misspelled_fields(prefix)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _misspelled_in(item, join_path(prefix, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, SpecModel):
                yield from item.misspelled_fields(join_path(prefix, str(key)))
