"""The command line of KServe's alibi explainer image, as infertap explainer flags.

KServe documents its alibi explainer as a custom container (`spec.explainer.containers`,
image `kserve/alibi-explainer`) whose args are the model server's flags, then the
explainer as a positional sub-command, then that explainer's own flags:

    args: [--model_name=income, --http_port=8080, --predictor_host=income-predictor.default,
           --storage_uri=/mnt/models, AnchorTabular, --threshold=0.9]
    env: [{name: STORAGE_URI, value: "gs://.../income/explainer"}]

`kserve_alibi_args` turns that into infertap's flags: the sub-command into
`--explainer-type`, `--model_name` / `--predictor_host` / `--http_port` / `--workers` /
`--predictor_protocol` into theirs, `--storage_uri` (the folder holding `explainer.dill`,
a pickled explainer) into `--explainer-uri` (a `/mnt/models` path is where KServe's storage
initializer puts `$STORAGE_URI`: locally it is read from `STORAGE_URI` itself, as KServe's
parser also defaults `--storage_uri` to it), and the explainer's flags into `--param
KEY=VALUE` (booleans as KServe's `str2bool` reads them). The model server's other flags
(`--grpc_port`, `--enable_docs_url`, ...) and flags the sub-command does not know are
ignored, as KServe's `parse_known_args` ignores them, and listed so the caller can say so.
Args without such a positional are infertap's own flags and are returned unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: KServe's alibi explainer sub-commands (its ExplainerMethod), which are infertap explainer types too.
METHODS = ("AnchorTabular", "AnchorText", "AnchorImages")
#: Where KServe's storage initializer downloads STORAGE_URI (constants.DefaultModelLocalMountPath).
MOUNT = "/mnt/models"
STORAGE_ENV = "STORAGE_URI"

#: KServe model-server flags -> infertap's
SERVER_FLAGS = {
    "--model_name": "--name",
    "--predictor_host": "--predictor-url",
    "--http_port": "--http-port",
    "--workers": "--workers",
    "--predictor_protocol": "--protocol",
}
#: The sub-commands' own flags (KServe's alibiexplainer/parser.py), and which of them are booleans.
COMMON_KEYS = (
    "threshold",
    "delta",
    "tau",
    "batch_size",
    "coverage_samples",
    "beam_size",
    "stop_on_first",
    "max_anchor_size",
    "max_samples_start",
    "n_covered_ex",
    "binary_cache_size",
    "cache_margin",
    "verbose",
    "verbose_every",
)
METHOD_KEYS = {
    "AnchorTabular": COMMON_KEYS,
    "AnchorText": ("use_unk", "use_similarity_proba", "sample_proba", "top_n", "temperature", *COMMON_KEYS),
    "AnchorImages": ("p_sample", *COMMON_KEYS),
}
#: infertap's own spellings of the explainer type: args naming it are infertap's flags
OWN_TYPE_FLAGS = ("--explainer-type", "--explainer_type", "--type")
BOOL_KEYS = frozenset({"stop_on_first", "verbose", "use_unk", "use_similarity_proba"})
_TRUE, _FALSE = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")


@dataclass
class KServeArgs:
    """infertap explainer flags, and the KServe arguments left out (with their values)."""

    args: list[str]
    ignored: list[str] = field(default_factory=list)
    translated: bool = False  # False: the args were infertap's own flags, returned as they came


def param_value(text: str) -> str:
    """A config value as `--param` takes it (JSON when it parses): KServe's boolean spellings as true/false."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low
    return text


def kserve_alibi_args(args: list[str], env: Mapping[str, str] | None = None) -> KServeArgs:
    """infertap flags for `args` in KServe's alibi-explainer form; unchanged when no sub-command is among them."""
    env = env or {}
    method_at = next((i for i, a in enumerate(args) if a in METHODS and not _is_value(args, i)), None)
    if method_at is None or any(a.split("=", 1)[0] in OWN_TYPE_FLAGS for a in args):
        return KServeArgs(list(args))
    method = args[method_at]
    out = [f"--explainer-type={method}"]
    ignored: list[str] = []
    storage = env.get(STORAGE_ENV) or None
    for name, value, raw in _options(args[:method_at]):
        if name == "--storage_uri" or name == "--storage-uri":
            storage = _mounted(value, env) if value is not None else storage
        elif name in SERVER_FLAGS and value is not None:
            out.append(f"{SERVER_FLAGS[name]}={value}")
        else:
            ignored += raw
    if storage:
        out.append(f"--explainer-uri={storage}")
    keys = METHOD_KEYS[method]
    for name, value, raw in _options(args[method_at + 1 :]):
        key = name[2:] if name.startswith("--") and not name.startswith("---") else ""
        if key not in keys or value is None:
            ignored += raw
            continue
        out += ["--param", f"{key}={_bool(value) if key in BOOL_KEYS else value}"]
    return KServeArgs(out, ignored, translated=True)


def _is_value(args: list[str], i: int) -> bool:
    """Whether args[i] is the value of the option before it (`--explainer-type AnchorTabular`)."""
    return i > 0 and args[i - 1].startswith("-") and "=" not in args[i - 1]


def _options(tokens: list[str]) -> list[tuple[str, str | None, list[str]]]:
    """(name, value, the tokens it came in) per option of `tokens`: `--k=v`, `--k v` or a bare `--k`."""
    found: list[tuple[str, str | None, list[str]]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("-"):
            found.append(("", None, [token]))  # a stray positional
            i += 1
            continue
        name, eq, value = token.partition("=")
        if eq:
            found.append((name, value, [token]))
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--") and tokens[i + 1] not in METHODS:
            found.append((name, tokens[i + 1], [token, tokens[i + 1]]))
            i += 1
        else:
            found.append((name, None, [token]))
        i += 1
    return found


def _mounted(value: str, env: Mapping[str, str]) -> str:
    """A path under KServe's mount point, as the local STORAGE_URI it was downloaded from."""
    source = env.get(STORAGE_ENV)
    if source and (value == MOUNT or value.startswith(MOUNT + "/")):
        rest = value[len(MOUNT) :].lstrip("/")
        return f"{source.rstrip('/')}/{rest}" if rest else source
    return value


def _bool(value: str) -> str:
    low = value.strip().lower()
    if low in _TRUE:
        return "true"
    if low in _FALSE:
        return "false"
    return value


__all__ = ["METHODS", "KServeArgs", "kserve_alibi_args", "param_value"]
