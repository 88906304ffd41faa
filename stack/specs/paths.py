"""Where a local path written in a spec points: the one rule `infertap up` and `infertap render` share.

A spec names local files as `file://PATH` or a plain `PATH` (`storageUri`, an LLMInferenceService's
`spec.model.uri`, the explainer's `--background`, a Detector's `reference`). An absolute PATH is
itself (`~` expanded); a relative one is looked up beside the YAML file first, then in the current
folder, and the first that exists wins. When neither exists, the path beside the YAML file is the
answer (what `up` names in its error, and where `render` says it expected the file).

Remote schemes (`gs://`, `s3://`, `pvc://`, `hf://`...) are not local; a one-letter scheme is a
Windows drive (`C:/models`), so local.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["is_local", "local_candidates", "spec_path", "strip_file_scheme"]


def is_local(uri: str) -> bool:
    """Whether `uri` names a file on this machine: `file://...`, a plain path, or a Windows drive."""
    try:
        scheme = urlsplit(uri).scheme.lower()
    except ValueError:
        return False
    return scheme in ("", "file") or len(scheme) == 1


def strip_file_scheme(uri: str) -> str:
    """`file://PATH` -> `PATH` (`file:///abs` -> `/abs`, `file://./rel` -> `./rel`); anything else unchanged."""
    return uri[len("file://") :] if uri.lower().startswith("file://") else uri


def local_candidates(uri: str, yaml_dir: Path | None) -> list[Path]:
    """The places a local `uri` may mean, in the order they are tried."""
    path = Path(strip_file_scheme(uri)).expanduser()
    if path.is_absolute() or yaml_dir is None:
        return [path]
    return [yaml_dir / path, Path.cwd() / path]


def spec_path(uri: str, yaml_dir: Path | None) -> Path:
    """The file a local `uri` of a spec read from `yaml_dir` names: the first candidate that exists,
    else the one beside the YAML file (not resolved: callers resolve or report it)."""
    candidates = local_candidates(uri, yaml_dir)
    return next((c for c in candidates if c.exists()), candidates[0])
