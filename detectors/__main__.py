"""`python -m detectors SETTINGS_JSON`: run one detector worker (the child `infertap up` starts).

`infertap detect SPEC` is the friendly way in: it reads a `kind: Detector` YAML document.
"""
from __future__ import annotations

import sys

from pydantic import ValidationError

from detectors.settings import WorkerSettings


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m detectors SETTINGS_JSON (or: infertap detect SPEC.yaml)")
    try:
        settings = WorkerSettings.model_validate_json(args[0])
    except ValidationError as exc:
        raise SystemExit(f"invalid detector settings: {exc}") from None
    from detectors.worker import main as run

    run(settings)


if __name__ == "__main__":
    main()
