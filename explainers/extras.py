"""Which optional extra (pyproject's `[project.optional-dependencies]`) brings each library a backend needs.

Backends name the top-level modules they import lazily (`Explainer.requires`). Before a
backend is built, `find_missing` looks them up without importing them (cheap enough for the
planner of `infertap up`); when it loads, `import_required` imports them. Either way a
missing library is one sentence naming the extra to install (`MissingExtra`), which the
entry points turn into exit code 2, never a traceback from deep inside the backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import import_module
from importlib.util import find_spec

from infertap.explainers.errors import MissingExtra

#: top-level module -> the infertap extra that installs it
EXTRAS = {
    "shap": "explainers",
    "captum": "explainers",
    "torch": "torch",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "alibi": "alibi",  # Business Source License 1.1
    "spacy": "alibi",
    "skimage": "alibi",
    "art": "art",  # adversarial-robustness-toolbox (MIT): SquareAttack
    "transformers": "huggingface",  # the text and LLM explainers read Hugging Face folders
    "tokenizers": "huggingface",
}


def extra_of(module: str) -> str:
    """The extra that installs `module` (the explainers' own extra for a library not listed)."""
    return EXTRAS.get(module.split(".")[0], "explainers")


def missing_sentence(explainer: str, module: str, err: ImportError | None = None) -> str:
    """`explainer needs the X package, which is not installed: pip install 'infertap[extra]'`."""
    top = module.split(".")[0]
    install = f"pip install 'infertap[{extra_of(top)}]'"
    if err is None or (isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] == top):
        return f"{explainer} needs the {top} package, which is not installed: {install}"
    return f"{explainer} needs the {top} package, which cannot be imported ({type(err).__name__}: {err}): {install}"


def find_missing(explainer: str, modules: Iterable[str]) -> str | None:
    """The sentence for the first of `modules` that is not installed, without importing any; None if all are."""
    for module in modules:
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):  # e.g. a finder that refuses the name, a module without a spec
            found = False
        if not found:
            return missing_sentence(explainer, module)
    return None


def import_required(explainer: str, modules: Iterable[str]) -> None:
    """Import `modules`; MissingExtra naming the extra for the first that cannot be imported."""
    for module in modules:
        try:
            import_module(module)
        except ImportError as err:
            raise MissingExtra(missing_sentence(explainer, module, err)) from None
