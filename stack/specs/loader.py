"""Multi-document YAML loading: dispatch on apiVersion/kind, errors and warnings with paths.

Kinds register themselves with `register_kind`; a later part adds
`infertap.dev/v1alpha1 Detector` the same way InferenceService is registered below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from infertap.stack.specs.inference_service import API_VERSION, LEGACY_API_VERSION, InferenceService


class SpecError(ValueError):
    """A spec file that cannot be used; the message names the file, document and YAML path."""


@dataclass(frozen=True)
class KindInfo:
    api_versions: tuple[str, ...]
    kind: str
    model: type[BaseModel]


_KINDS: dict[str, KindInfo] = {}
M = TypeVar("M", bound=BaseModel)


def register_kind(kind: str, *api_versions: str) -> Callable[[type[M]], type[M]]:
    """Class decorator (or plain call) making `kind` under `api_versions` loadable."""

    def add(model: type[M]) -> type[M]:
        _KINDS[kind] = KindInfo(tuple(api_versions), kind, model)
        return model

    return add


register_kind("InferenceService", API_VERSION, LEGACY_API_VERSION)(InferenceService)


@dataclass
class Document:
    """One loaded document: where it came from and its typed spec."""

    source: Path
    index: int  # 1-based, as people count documents in a file
    spec: Any

    @property
    def where(self) -> str:
        return _where(self.source, self.index, self.spec.kind, _name_of(self.spec))


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Document]:
        return [d for d in self.documents if d.spec.kind == kind]


def _name_of(spec: Any) -> str | None:
    meta = getattr(spec, "metadata", None)
    return getattr(meta, "name", None)


def _where(source: Path, index: int, kind: str | None, name: str | None) -> str:
    label = " ".join(p for p in (kind, name) if p)
    return f"{source}: document {index}" + (f" ({label})" if label else "")


def load_files(paths: Iterable[str | Path]) -> LoadResult:
    """Load every document of every file; raise SpecError listing all problems found."""
    result, errors = LoadResult(), []
    for path in paths:
        try:
            part = load_file(path)
        except SpecError as exc:
            errors.append(str(exc))
            continue
        result.documents += part.documents
        result.warnings += part.warnings
    errors += _duplicate_names(result.documents)
    if errors:
        raise SpecError("\n".join(errors))
    return result


def load_file(path: str | Path) -> LoadResult:
    """Load one multi-document YAML file."""
    source = Path(path)
    try:
        text = source.read_text()
    except OSError as exc:
        raise SpecError(f"{source}: cannot read: {exc.strerror or exc}") from None
    return load_text(text, source)


class SpecYAMLLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses aliases (`*name`, so `<<: *name` merges too).

    `safe_load` still expands aliases: 875 bytes of nested aliases (a "billion laughs")
    grew `infertap render` to 4.3 GB. KServe's YAML samples use none, so refusing them
    costs nothing and bounds a spec's memory by its size on disk.
    """

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"YAML aliases are not allowed in specs (found *{event.anchor}); write the value out in full",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def safe_load_all(text: str) -> list[Any]:
    """Every document of `text`, loaded safely and without aliases (yaml.YAMLError otherwise)."""
    return list(yaml.load_all(text, Loader=SpecYAMLLoader))  # noqa: S506 - a SafeLoader subclass


def load_text(text: str, source: Path) -> LoadResult:
    """Load the documents of `text`, reporting paths relative to `source`."""
    try:
        raw_docs = safe_load_all(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{source}: not valid YAML{at}: {problem}") from None
    result, errors = LoadResult(), []
    for index, raw in enumerate(raw_docs, start=1):
        if raw is None:  # an empty document, e.g. a trailing '---'
            continue
        try:
            doc, warnings = _load_document(raw, source, index)
        except SpecError as exc:
            errors.append(str(exc))
            continue
        result.documents.append(doc)
        result.warnings += warnings
    if errors:
        raise SpecError("\n".join(errors))
    return result


def _load_document(raw: Any, source: Path, index: int) -> tuple[Document, list[str]]:
    if not isinstance(raw, dict):
        raise SpecError(
            f"{_where(source, index, None, None)}: expected a mapping with apiVersion and kind, got {type(raw).__name__}"
        )
    kind, api_version = raw.get("kind"), raw.get("apiVersion")
    name = (raw.get("metadata") or {}).get("name") if isinstance(raw.get("metadata"), dict) else None
    where = _where(source, index, kind if isinstance(kind, str) else None, name)
    info = _KINDS.get(kind) if isinstance(kind, str) else None
    if info is None:
        raise SpecError(f"{where}: unknown kind {kind!r} (apiVersion {api_version!r}); infertap reads {known_kinds()}")
    if api_version not in info.api_versions:
        raise SpecError(
            f"{where}: apiVersion: {info.kind} must be {' or '.join(info.api_versions)} (got {api_version!r})"
        )
    try:
        spec = info.model.model_validate(raw)
    except ValidationError as exc:
        raise SpecError("\n".join(f"{where}: {line}" for line in format_errors(exc))) from None
    typos = [f"{where}: {path}: unknown field; did you mean `{known}`?" for path, known in _misspelled(spec)]
    if typos:
        raise SpecError("\n".join(typos))
    warnings = [f"{where}: {path}: unknown field, kept but not used" for path in _unknown(spec)]
    if api_version == LEGACY_API_VERSION:
        warnings.append(
            f"{where}: apiVersion: {LEGACY_API_VERSION} is KFServing's old group; KServe reads {API_VERSION}"
        )
    return Document(source, index, spec), warnings


def _misspelled(spec: BaseModel) -> list[tuple[str, str]]:
    """(YAML path, known field) of likely typos in blocks that check them (`SpecModel.typo_checked`)."""
    finder = getattr(spec, "misspelled_fields", None)
    return list(finder()) if finder else []


def _unknown(spec: BaseModel) -> list[str]:
    finder = getattr(spec, "unknown_fields", None)
    return list(finder()) if finder else []


def known_kinds() -> str:
    return ", ".join(f"{k.kind} ({' | '.join(k.api_versions)})" for k in _KINDS.values())


def format_errors(exc: ValidationError) -> list[str]:
    """pydantic errors as `yaml.path: sentence (got value)` lines."""
    return [f"{_loc(err['loc'])}: {_sentence(err)}" for err in exc.errors()]


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "literal[", "union[", "nullable[")):
            continue  # pydantic's inner validator names, not YAML keys
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def _sentence(err: Mapping[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"must be one of {expected}{got}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))  # our validators write whole sentences
    msg = err["msg"]
    return msg[:1].lower() + msg[1:] + got


def _duplicate_names(documents: list[Document]) -> list[str]:
    """Two documents of one kind with one name would fight over ports and topics."""
    seen: dict[tuple[str, str, str], Document] = {}
    errors = []
    for doc in documents:
        meta = getattr(doc.spec, "metadata", None)
        if meta is None:
            continue
        key = (doc.spec.kind, getattr(meta, "namespace", ""), meta.name)
        if key in seen:
            errors.append(f"{doc.where}: metadata.name: {meta.name!r} is already used by {seen[key].where}")
        else:
            seen[key] = doc
    return errors
