"""Per-text descriptors: numbers about a text that a univariate test can compare across windows.

Numeric (compared with a two-sample Kolmogorov-Smirnov test):

| name | what |
| --- | --- |
| `chars` | length in characters |
| `tokens` | length in the embedding model's tokens (special tokens included) |
| `words` | words (`\\w+` runs, Unicode-aware; a redaction placeholder is one word) |
| `mean_word_length` | mean characters per word (gibberish and code run long) |
| `non_ascii_share` | share of characters outside ASCII (other languages, emoji) |
| `non_letter_share` | share of non-whitespace characters that are not letters (code, numbers, markup) |
| `oov_share` | share of words not in the reference's vocabulary (lower-cased) |
| `redactions` | placeholders the sidecar's redaction wrote (`[REDACTED:rule]`): personal data sent |

Categorical (compared with a chi-squared test of the counts): `script`, the writing system of
most of a text's letters (`latin`, `cyrillic`, `greek`, `arabic`, `hebrew`, `cjk` (Han, kana),
`hangul`, `devanagari`, `other`, or `none` without letters).

Placeholders are kept whole and never looked into: a redacted text stays redacted.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

NUMERIC = (
    "chars",
    "tokens",
    "words",
    "mean_word_length",
    "non_ascii_share",
    "non_letter_share",
    "oov_share",
    "redactions",
)
CATEGORICAL = ("script",)
DESCRIPTORS = NUMERIC + CATEGORICAL
SCRIPTS = ("latin", "cyrillic", "greek", "arabic", "hebrew", "cjk", "hangul", "devanagari", "other", "none")

PLACEHOLDER = re.compile(r"\[REDACTED:[A-Za-z0-9_]+\]")
WORDS = re.compile(r"\[REDACTED:[A-Za-z0-9_]+\]|\w+")
_SCRIPT_OF_NAME = {
    "LATIN": "latin",
    "CYRILLIC": "cyrillic",
    "GREEK": "greek",
    "ARABIC": "arabic",
    "HEBREW": "hebrew",
    "CJK": "cjk",
    "HIRAGANA": "cjk",
    "KATAKANA": "cjk",
    "HANGUL": "hangul",
    "DEVANAGARI": "devanagari",
}


def words(text: str) -> list[str]:
    """The words of a text, lower-cased; a redaction placeholder is one word, as written."""
    return [w if w.startswith("[REDACTED:") else w.lower() for w in WORDS.findall(text)]


def vocabulary(texts: Iterable[str], most: int = 100_000) -> set[str]:
    """The words of a corpus (the `most` most frequent ones, to bound a saved folder)."""
    counts = Counter(w for text in texts for w in words(text))
    return {w for w, _ in counts.most_common(most)}


def script(text: str) -> str:
    """The writing system of most of the text's letters."""
    if text.isascii():
        return "latin" if any(c.isalpha() for c in text) else "none"
    counts: Counter[str] = Counter()
    for char in text:
        if char.isalpha():
            name = unicodedata.name(char, "")
            counts[_SCRIPT_OF_NAME.get(name.split(" ", 1)[0], "other")] += 1
    return counts.most_common(1)[0][0] if counts else "none"


def describe(
    texts: Sequence[str],
    vocab: set[str] | None = None,
    tokens: np.ndarray | None = None,
    which: Sequence[str] = DESCRIPTORS,
) -> dict[str, np.ndarray]:
    """Each descriptor of `which` for each text: float arrays, `script` as codes into SCRIPTS.

    `oov_share` needs `vocab`, `tokens` the model's token counts; a descriptor whose input is
    missing is left out of the result.
    """
    n = len(texts)
    out: dict[str, np.ndarray] = {}
    chars = np.fromiter((len(t) for t in texts), dtype=np.float64, count=n)
    split = [words(t) for t in texts]
    n_words = np.fromiter((len(w) for w in split), dtype=np.float64, count=n)
    if "chars" in which:
        out["chars"] = chars
    if "tokens" in which and tokens is not None:
        out["tokens"] = np.asarray(tokens, dtype=np.float64)
    if "words" in which:
        out["words"] = n_words
    if "mean_word_length" in which:
        letters = np.fromiter((sum(len(w) for w in ws) for ws in split), dtype=np.float64, count=n)
        out["mean_word_length"] = np.divide(letters, n_words, out=np.zeros(n), where=n_words > 0)
    if "non_ascii_share" in which:
        odd = np.fromiter((sum(1 for c in t if ord(c) > 127) for t in texts), dtype=np.float64, count=n)
        out["non_ascii_share"] = np.divide(odd, chars, out=np.zeros(n), where=chars > 0)
    if "non_letter_share" in which:
        out["non_letter_share"] = np.fromiter((_non_letter_share(t) for t in texts), dtype=np.float64, count=n)
    if "oov_share" in which and vocab is not None:
        oov = np.fromiter((sum(1 for w in ws if w not in vocab) for ws in split), dtype=np.float64, count=n)
        out["oov_share"] = np.divide(oov, n_words, out=np.zeros(n), where=n_words > 0)
    if "redactions" in which:
        out["redactions"] = np.fromiter((len(PLACEHOLDER.findall(t)) for t in texts), dtype=np.float64, count=n)
    if "script" in which:
        codes = {s: i for i, s in enumerate(SCRIPTS)}
        out["script"] = np.fromiter((codes[script(t)] for t in texts), dtype=np.float64, count=n)
    return out


def _non_letter_share(text: str) -> float:
    body = PLACEHOLDER.sub("", text)
    visible = [c for c in body if not c.isspace()]
    if not visible:
        return 0.0
    return sum(1 for c in visible if not c.isalpha()) / len(visible)
