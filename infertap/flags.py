"""Command lines generated from settings models: the one generator of every component's flags.

Each component declares its settings once, as a pydantic-settings model (`ServerSettings`,
`LoggerSettings`, `WorkerSettings`, `ExplainerSettings`, `StreamSettings`): name, type,
default, and help text (the Field's description). `Command` builds the argparse parser of
`python -m infertap.<part>` from that model, and the `infertap` verbs hand their raw arguments
to the same parser, so `infertap logger --help` and `python -m infertap.sidecar --help` list
the very same flags, and a field added to a model is a flag without further code.

Flags from fields:

- `upstream_timeout_s` -> `--upstream-timeout-s` (underscores to dashes); `--upstream_timeout_s`
  is accepted too (hidden; KServe's Python servers spell flags that way);
- `bool` -> `--x` / `--no-x`; `bool | None` -> `--x[=true|false|auto]` / `--no-x` (auto: None);
- `Literal[...]` -> the choices, in the metavar and help (pydantic checks the value, so every
  bad value reads alike: `invalid settings: --log-mode: must be one of all, request, response (got 'x')`);
- `list[...]` -> repeatable; `dict[str, str]` -> `KEY=VALUE`, repeatable (`dict[str, Any]`: the
  value is JSON when it parses, e.g. `--params threshold=0.9`);
- nested models and lists of them, `list[Any]`, `dict[str, list]`... -> one JSON value;
- an optional (`X | None`, X not a string) takes `none` for None.

Field options, in `Field(json_schema_extra={...})` of the settings model:

- `"flag": "--model-name"`: the flag's name instead of `--field-name`;
- `"aliases": ["--upstream-timeout"]`: more spellings (today's, KServe's), shown in help;
- `"comma_list": True`: list and dict values may also be comma-separated (`--metadata-headers a,b`);
- `"flatten": True` on a `list[Model]` field: the fields of its one element are flags
  (`ServerSettings.models`: `--model-name`, `--device`, ...).

Precedence, highest first: flag > environment variable > settings JSON (`--config FILE`, a
JSON argument, the runner's `$INFERTAP_SETTINGS`, a spec) > the model's default. The variable
of a field is the model's `env_prefix` plus the field name, upper case
(`INFERTAP_LOGGER_BATCH_LINGER_MS`); lists, dicts and models take JSON there, as
pydantic-settings reads them. Dict values merge (a flag's keys over the file's); every other
value replaces.

Bad input never ends in a traceback: `CommandLine.settings_or_exit` prints one sentence per
problem, naming the flag (or variable, or file) the value came from, and exits 2.

This module imports only the standard library, pydantic and pydantic-settings, so every part
may import it (it holds no component's knowledge).
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, Union

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = ["bool_words", "CommandLine", "FlagError", "Flag", "env_values", "flags_of", "from_json", "sentence_lines"]

#: One settings model, or several in one command line (the stream worker: {"stream": ..., "explainer": ...}).
Models = type[BaseModel] | Mapping[str, type[BaseModel]]
SINGLE = ""  # the group name of a single model

KINDS = ("scalar", "bool", "optbool", "list", "dict", "json")


class FlagError(ValueError):
    """Bad flags or settings, as one sentence (`--port: input should be ...`)."""


@dataclass
class Flag:
    """One flag of a command line and the settings field(s) it sets."""

    names: list[str]  # primary first
    kind: str  # one of KINDS
    targets: list[tuple[str, tuple[str, ...]]]  # (group, (field,) or (flattened field, sub-field))
    info: FieldInfo
    annotation: Any
    env: str | None = None  # the variable of a top-level field
    comma: bool = False
    json_values: bool = False  # dict[str, Any]: values parsed as JSON when they parse
    none_ok: bool = False  # "none" gives None
    dest: str = ""

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def field_name(self) -> str:
        return self.targets[0][1][-1]


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return annotation, False


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _simple(tp: Any) -> bool:
    """A type one command-line word holds."""
    tp = _strip_annotated(tp)
    return tp in (str, int, float, Path, bool) or typing.get_origin(tp) is Literal


def _kind(annotation: Any) -> tuple[str, bool, bool]:
    """(kind, none_ok, json_values) of a field's annotation."""
    tp, optional = _strip_optional(_strip_annotated(annotation))
    tp = _strip_annotated(tp)
    origin = typing.get_origin(tp)
    if tp is bool:
        return ("optbool" if optional else "bool"), optional, False
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(tp)
        return ("list" if args and _simple(args[0]) else "json"), optional, False
    if origin is dict:
        key, value = (typing.get_args(tp) + (Any, Any))[:2]
        if key is str and value is Any:
            return "dict", optional, True
        if key is str and _simple(value):
            return "dict", optional, False
        return "json", optional, False
    if _is_model(tp) or tp is Any or not _simple(tp):
        return "json", optional, False
    return "scalar", optional and tp is not str, False


def _metavar(annotation: Any, kind: str) -> str | None:
    tp, _ = _strip_optional(_strip_annotated(annotation))
    tp = _strip_annotated(tp)
    if kind == "list":
        tp = _strip_annotated(typing.get_args(tp)[0])
    if typing.get_origin(tp) is Literal:
        return "{" + ",".join(map(str, typing.get_args(tp))) + "}"
    if kind == "dict":
        return "KEY=VALUE"
    if kind == "json":
        return "JSON"
    return {int: "INT", float: "NUMBER", Path: "PATH", str: "TEXT"}.get(tp, "VALUE")


def _flat_model(annotation: Any) -> type[BaseModel] | None:
    tp, _ = _strip_optional(_strip_annotated(annotation))
    args = typing.get_args(tp)
    if typing.get_origin(tp) is list and args and _is_model(args[0]):
        return args[0]
    return None


def env_name(model: type[BaseModel], name: str) -> str | None:
    """`$PREFIX` + field name, upper case; None for a model that reads no environment."""
    prefix = model.model_config.get("env_prefix")
    if prefix is None or not hasattr(model, "settings_customise_sources"):
        return None
    return f"{prefix}{name}".upper()


def flags_of(models: Models) -> list[Flag]:
    """Every flag of `models`, in field order (flattened fields in place of their list)."""
    groups = {SINGLE: models} if isinstance(models, type) else dict(models)
    flags: list[Flag] = []
    by_name: dict[str, Flag] = {}

    def add(flag: Flag) -> None:
        for name in flag.names:
            other = by_name.get(name)
            if other is None:
                continue
            if other.field_name == flag.field_name and other.kind == flag.kind and name == flag.name:
                other.targets += flag.targets  # one field of two models (inference_service): one flag
                return
            raise ValueError(f"flag {name} is both {other.targets} and {flag.targets}")
        flag.dest = f"flag{len(flags)}"
        flags.append(flag)
        for name in flag.names:
            by_name[name] = flag

    for group, model in groups.items():
        for fname, info in model.model_fields.items():
            extra = _extra(info)
            nested = _flat_model(info.annotation) if extra.get("flatten") else None
            items = (
                [((fname, sub), sinfo) for sub, sinfo in nested.model_fields.items()] if nested else [((fname,), info)]
            )
            for path, finfo in items:
                fextra = _extra(finfo)
                kind, none_ok, json_values = _kind(finfo.annotation)
                primary = fextra.get("flag") or "--" + path[-1].replace("_", "-")
                names = [primary, *[a for a in fextra.get("aliases", []) if a != primary]]
                add(
                    Flag(
                        names=names,
                        kind=kind,
                        targets=[(group, path)],
                        info=finfo,
                        annotation=finfo.annotation,
                        env=env_name(model, fname) if len(path) == 1 else None,
                        comma=bool(fextra.get("comma_list")),
                        json_values=json_values,
                        none_ok=none_ok,
                    )
                )
    return flags


class _Record(argparse.Action):
    """Records (flag, spelling, value) in the order given, so the error can name what was typed."""

    def __init__(self, option_strings, dest, flag: Flag, const: Any = None, **kwargs):
        self.flag = flag
        super().__init__(option_strings, dest, const=const, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        value = self.const if self.nargs == 0 else values
        namespace.__dict__.setdefault("_given", []).append((self.flag, option_string, value))


class _Help(argparse.RawDescriptionHelpFormatter):
    """`--a, --b VALUE` (the metavar once), `--x, --no-x` for bools."""

    def _format_action_invocation(self, action):
        if not action.option_strings:
            return super()._format_action_invocation(action)
        names = ", ".join([*action.option_strings, *getattr(action, "negatives", [])])
        if action.nargs == 0:
            return names
        return f"{names} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise FlagError(message)


def _escape(text: str) -> str:
    return text.replace("%", "%%")


def _default_text(info: FieldInfo) -> str | None:
    """The default as help shows it; None: nothing worth showing (empty lists and dicts)."""
    if info.default is not PydanticUndefined:
        value = info.default
    elif info.default_factory is not None:
        try:
            value = info.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return None
    else:
        return None
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_none=True)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value, default=str) if value else None
    return repr(value) if value == "" else str(value)


def _help(flag: Flag) -> str:
    parts = [flag.info.description or ""]
    if flag.info.is_required():
        parts.append("Required.")
    else:
        default = _default_text(flag.info)
        if default is not None:
            parts.append(f"Default: {default}.")
    if flag.kind in ("list", "dict"):
        parts.append("Repeatable" + (", or comma-separated." if flag.comma else "."))
    if flag.kind == "optbool":
        parts.append("auto: None.")
    if flag.env:
        parts.append(f"[${flag.env}]")
    return _escape(" ".join(p for p in parts if p))


def _add(parser: argparse.ArgumentParser, flag: Flag) -> None:
    metavar = _metavar(flag.annotation, flag.kind)
    hidden = ["--" + n[2:].replace("-", "_") for n in flag.names if n.startswith("--") and "-" in n[2:]]
    hidden = [n for n in hidden if n not in flag.names]
    spec: dict[str, Any]
    if flag.kind == "bool":
        spec = {"nargs": 0, "const": True}
    elif flag.kind == "optbool":
        spec = {"nargs": "?", "const": "true", "metavar": "{true,false,auto}"}
    else:
        spec = {"metavar": metavar}
    action = parser.add_argument(*flag.names, action=_Record, dest=flag.dest, flag=flag, help=_help(flag), **spec)
    if hidden:
        parser.add_argument(*hidden, action=_Record, dest=flag.dest, flag=flag, help=argparse.SUPPRESS, **spec)
    if flag.kind in ("bool", "optbool"):
        negative = ["--no-" + n[2:] for n in flag.names if n.startswith("--")]
        action.negatives = negative  # type: ignore[attr-defined]
        const = False if flag.kind == "bool" else "false"
        parser.add_argument(
            *negative, action=_Record, dest=flag.dest, flag=flag, nargs=0, const=const, help=argparse.SUPPRESS
        )


def _key_values(flag: Flag, spelling: str, items: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise FlagError(f"{spelling}: expected KEY=VALUE (got {item!r})")
        value: Any = raw
        if flag.json_values:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        out[key.strip()] = value
    return out


def _split(flag: Flag, raw: str) -> list[str]:
    if not flag.comma:
        return [raw]
    return [part.strip() for part in raw.split(",") if part.strip()]


def _convert(flag: Flag, spelling: str, raw: Any) -> Any:
    if flag.kind == "bool":
        return raw
    if flag.kind == "optbool":
        text = str(raw).strip().lower()
        if text in ("auto", "none"):
            return None
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise FlagError(f"{spelling}: expected true, false or auto (got {raw!r})")
    if flag.kind == "json":
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise FlagError(f"{spelling}: expected JSON (got {raw!r}: {exc})") from None
    if flag.none_ok and str(raw).strip().lower() in ("none", "null"):
        return None
    return raw


def env_values(model: type[BaseModel]) -> dict[str, Any]:
    """The fields `model`'s environment variables set (JSON decoded for lists, dicts, models)."""
    if env_name(model, "x") is None:
        return {}
    from pydantic_settings import EnvSettingsSource
    from pydantic_settings.exceptions import SettingsError

    try:
        return EnvSettingsSource(model)()  # type: ignore[arg-type]
    except SettingsError as exc:
        raise FlagError(
            f"{_env_of_error(model, exc)}: expected JSON (lists, dicts and models take JSON there)"
        ) from None


def _env_of_error(model: type[BaseModel], exc: Exception) -> str:
    text = str(exc)
    for name in model.model_fields:
        if f'field "{name}"' in text:
            return "$" + (env_name(model, name) or name)
    return text


def _merge(flag: Flag | None, old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict) and (flag is None or flag.kind == "dict"):
        return {**old, **new}
    return new


@dataclass
class Parsed:
    """Merged (not yet validated) values per group, where each came from, and the extra arguments."""

    values: dict[str, dict[str, Any]]
    origins: dict[tuple[str, tuple[str, ...]], str]
    namespace: argparse.Namespace
    given: list[tuple[Flag, str, Any]] = field(default_factory=list)


class CommandLine:
    """The command line of one component, generated from its settings model(s).

    `extra(parser)` may add arguments that are not settings (`--max-seconds`, a positional JSON);
    they come back on `Parsed.namespace`. `config_flag`: `--config FILE` takes a JSON file of
    settings (below env and flags).
    """

    def __init__(
        self,
        prog: str,
        description: str,
        models: Models,
        extra: Callable[[argparse.ArgumentParser], object] | None = None,
        config_flag: bool = True,
        epilog: str | None = None,
        json_arg: bool = False,
        usage: str | None = None,
    ):
        self.usage = usage or ("%(prog)s [-h] [SETTINGS_JSON] [FLAGS]" if json_arg else "%(prog)s [-h] [FLAGS]")
        self.prog, self.description, self.models, self.extra = prog, description, models, extra
        self.config_flag, self.epilog, self.json_arg = config_flag, epilog, json_arg
        self.groups: dict[str, type[BaseModel]] = {SINGLE: models} if isinstance(models, type) else dict(models)

    @property
    def flags(self) -> list[Flag]:
        return flags_of(self.models)  # built each time: fields added to a model show up

    def parser(self, prog: str | None = None) -> argparse.ArgumentParser:
        env = ", ".join(f"${env_name(m, 'FIELD')}" for m in self.groups.values() if env_name(m, "FIELD") is not None)
        epilog = self.epilog or ""
        if env:
            epilog += (
                f"{' ' if epilog else ''}Every flag is also an environment variable, {env} (lists, dicts: JSON); "
                "precedence: flag, environment, settings JSON, default."
            )
        p = _Parser(
            prog=prog or self.prog,
            usage=self.usage,
            description=self.description,
            epilog=_escape(epilog) or None,
            allow_abbrev=False,
            formatter_class=_Help,
        )
        if self.config_flag:
            p.add_argument(
                "--config",
                type=Path,
                metavar="FILE",
                help="JSON file of settings; flags and environment variables override its values.",
            )
        if self.json_arg:
            p.add_argument(
                "settings_json",
                nargs="?",
                metavar="SETTINGS_JSON",
                help="Settings as one JSON object; flags and environment variables override its values.",
            )
        if self.extra:
            self.extra(p)
        for flag in self.flags:
            _add(p, flag)
        return p

    def parse(self, argv: list[str] | None, base: Mapping[str, Any] | None = None, prog: str | None = None) -> Parsed:
        """Flags over environment over `base` (and `--config`); FlagError on malformed flags."""
        parser = self.parser(prog)
        ns = parser.parse_args(bool_words(list(sys.argv[1:] if argv is None else argv), self.flags))
        single = SINGLE in self.groups
        base_values: dict[str, dict[str, Any]] = (
            {SINGLE: dict(base or {})} if single else {g: dict((base or {}).get(g) or {}) for g in self.groups}
        )
        origins: dict[tuple[str, tuple[str, ...]], str] = {}
        sources: list[tuple[str, Callable[[], str]]] = []
        if getattr(ns, "settings_json", None) is not None:
            sources.append(("SETTINGS_JSON", lambda: ns.settings_json))
        config = getattr(ns, "config", None)
        if config is not None:
            sources.append((str(config), lambda: Path(config).read_text()))
        for label, read in sources:
            try:
                loaded = json.loads(read())
            except (OSError, ValueError) as exc:
                raise FlagError(f"{label}: cannot read settings JSON: {exc}") from None
            if not isinstance(loaded, dict):
                raise FlagError(f"{label}: expected a JSON object")
            loaded_groups = {SINGLE: loaded} if single else loaded
            for group in self.groups:
                for key, value in (loaded_groups.get(group) or {}).items():
                    base_values[group][key] = value
                    origins[(group, (key,))] = f"{label}: {key}"
        flags = self.flags
        by_field = {(g, p): f for f in flags for g, p in f.targets}
        for group, model in self.groups.items():
            for key, value in env_values(model).items():
                flag = by_field.get((group, (key,)))
                base_values[group][key] = _merge(flag, base_values[group].get(key), value)
                origins[(group, (key,))] = "$" + (env_name(model, key) or key)
        given = list(ns.__dict__.pop("_given", []))
        for flag_attr in [f.dest for f in flags]:
            ns.__dict__.pop(flag_attr, None)
        collected: dict[tuple[str, tuple[str, ...]], Any] = {}
        for flag, spelling, raw in given:
            for group, path in flag.targets:
                key = (group, path)
                if flag.kind == "list":
                    collected.setdefault(key, [])
                    collected[key] += [_convert(flag, spelling, v) for v in _split(flag, raw)]
                elif flag.kind == "dict":
                    collected.setdefault(key, {})
                    collected[key].update(_key_values(flag, spelling, _split(flag, raw)))
                else:
                    collected[key] = _convert(flag, spelling, raw)
                origins[key] = spelling
        for (group, path), value in collected.items():
            values = base_values[group]
            flag = by_field[(group, path)]
            if len(path) == 1:
                values[path[0]] = _merge(flag, values.get(path[0]), value)
        for flat in {p[0] for (_g, p) in by_field if len(p) == 2}:
            for group in self.groups:
                subs = {p[1]: v for (g, p), v in collected.items() if g == group and len(p) == 2 and p[0] == flat}
                if not any(g == group and len(p) == 2 and p[0] == flat for (g, p) in by_field):
                    continue
                items = base_values[group].get(flat)
                if items is None or items == []:
                    base_values[group][flat] = [subs]
                elif isinstance(items, list) and len(items) == 1 and isinstance(items[0], dict):
                    base_values[group][flat] = [{**items[0], **subs}]
                elif subs:
                    names = ", ".join(by_field[(group, (flat, s))].name for s in subs)
                    raise FlagError(
                        f"{names}: set one {flat[:-1] if flat.endswith('s') else flat}, "
                        f"and the settings hold {len(items)}; drop the flags or the list"
                    )
        return Parsed(values=base_values, origins=origins, namespace=ns, given=given)

    def build(self, parsed: Parsed) -> Any:
        """The validated model (or {group: model}); FlagError naming flags on invalid values."""
        out: dict[str, BaseModel] = {}
        lines: list[str] = []
        for group, model in self.groups.items():
            try:
                out[group] = model(**parsed.values[group])
            except ValidationError as exc:
                lines += self.describe(exc, group, parsed.origins)
        if lines:
            raise FlagError("; ".join(lines))
        return out[SINGLE] if SINGLE in out else out

    def describe(
        self,
        exc: ValidationError,
        group: str = SINGLE,
        origins: Mapping[tuple[str, tuple[str, ...]], str] | None = None,
    ) -> list[str]:
        """pydantic's errors as `--flag: sentence (got value)`."""
        origins = origins or {}
        flags = self.flags
        by_field = {(g, p): f for f in flags for g, p in f.targets}
        lines = []
        for err in exc.errors():
            loc = [part for part in err["loc"] if not _inner(part)]
            where = ""
            if loc:
                top = (str(loc[0]),)
                sub = next((str(p) for p in loc[1:] if isinstance(p, str)), None)
                deep = (top[0], sub) if sub is not None else None
                if deep and (group, deep) in by_field:
                    where = origins.get((group, deep)) or by_field[(group, deep)].name
                    if (group, deep) not in origins and (group, top) in origins:
                        where = origins[(group, top)] + _path(loc[1:])
                elif (group, top) in origins:
                    where = origins[(group, top)] + _path(loc[1:])
                elif (group, top) in by_field:
                    where = by_field[(group, top)].name + _path(loc[1:])
                else:
                    where = _path(loc).lstrip(".")
            lines.append(f"{where}: {_sentence(err)}" if where else _sentence(err))
        return lines

    def settings_or_exit(
        self,
        argv: list[str] | None = None,
        base: Mapping[str, Any] | None = None,
        prog: str | None = None,
        finish: Callable[[Parsed], None] | None = None,
    ) -> Any:
        """`parse` + `build`, printing `invalid settings: ...` and exiting 2 on any problem (--help exits 0)."""
        settings, _ = self.settings_and_args(argv, base, prog, finish)
        return settings

    def settings_and_args(
        self,
        argv: list[str] | None = None,
        base: Mapping[str, Any] | None = None,
        prog: str | None = None,
        finish: Callable[[Parsed], None] | None = None,
    ) -> tuple[Any, argparse.Namespace]:
        """As `settings_or_exit`, also returning the extra (non-settings) arguments."""
        try:
            parsed = self.parse(argv, base, prog)
            if finish is not None:
                finish(parsed)
            return self.build(parsed), parsed.namespace
        except FlagError as exc:
            exit_with(f"invalid settings: {exc}", prog or self.prog)


_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def bool_words(argv: list[str], flags: Iterable[Flag]) -> list[str]:
    """Bool flags in the spellings Go programs are given: `--x true|false` (two words, as
    KServe's agent injector writes `--logger-tls-skip-verify false`) and `--x=true|false`,
    rewritten to `--x` / `--no-x`. A bare `--x` followed by anything else stays `--x`."""
    names: dict[str, str] = {}  # spelling -> the registered name whose --no- form exists
    for flag in flags:
        if flag.kind == "bool":
            for name in flag.names:
                names[name] = name
                if "-" in name[2:]:
                    names["--" + name[2:].replace("-", "_")] = name
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        name, eq, value = word.partition("=")
        if name in names:
            if not eq and i + 1 < len(argv) and argv[i + 1].strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
                value, eq = argv[i + 1], "="
                i += 1
            if eq:
                text = value.strip().lower()
                if text in _TRUE_WORDS:
                    word = name
                elif text in _FALSE_WORDS:
                    word = "--no-" + names[name][2:]
                else:
                    raise FlagError(f"{name}: expected true or false (got {value!r})")
        out.append(word)
        i += 1
    return out


def exit_with(message: str, prog: str | None = None, code: int = 2) -> NoReturn:
    """One sentence on stderr, exit `code` (2: bad input), never a traceback."""
    hint = f" (see {prog} --help)" if prog else ""
    sys.stderr.write(f"{message}{hint}\n")
    raise SystemExit(code)


def from_json(model: type[BaseModel], payload: str | bytes | Mapping[str, Any]) -> Any:
    """`model` from settings JSON with its environment variables over it (precedence: env > JSON > default)."""
    values = json.loads(payload) if isinstance(payload, str | bytes) else dict(payload)
    by_field = {p[0]: f for f in flags_of(model) for _g, p in f.targets if len(p) == 1}
    for key, value in env_values(model).items():
        values[key] = _merge(by_field.get(key), values.get(key), value)
    return model(**values)


def sentence_lines(exc: ValidationError) -> list[str]:
    """pydantic's errors as `field.path: sentence (got value)` (no flags known)."""
    return [
        f"{_path([p for p in err['loc'] if not _inner(p)]).lstrip('.') or 'settings'}: {_sentence(err)}"
        for err in exc.errors()
    ]


def _inner(part: Any) -> bool:
    return str(part).startswith(("function-", "literal[", "union[", "nullable[", "json-or-python[", "lax-or-strict["))


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


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
    if kind == "extra_forbidden":
        return "unknown setting"
    msg = str(err["msg"])
    return msg[:1].lower() + msg[1:] + got
