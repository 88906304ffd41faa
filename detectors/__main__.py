"""`python -m infertap.detectors SETTINGS_JSON [--allow-pickle]`: run one detector worker (the child `infertap up` starts).

`infertap detect SPEC` is the friendly way in: it reads a `kind: Detector` YAML document.
`--allow-pickle` (or `allow_pickle: true` in the settings) lets a saved_detector folder
holding pickles load; pickles run code when loaded.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from infertap.detectors.settings import WorkerSettings


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    allow_pickle = "--allow-pickle" in args
    args = [a for a in args if a != "--allow-pickle"]
    if len(args) != 1:
        raise SystemExit(
            "usage: python -m infertap.detectors SETTINGS_JSON [--allow-pickle] (or: infertap detect SPEC.yaml)"
        )
    try:
        settings = WorkerSettings.model_validate_json(args[0])
    except ValidationError as exc:
        raise SystemExit(f"invalid detector settings: {exc}") from None
    if allow_pickle:
        settings.allow_pickle = True
    from infertap.detectors.worker import main as run

    run(settings)


if __name__ == "__main__":
    main()
