"""PII redaction of logged bodies, before an event is queued (so nothing unredacted reaches a
queue, a spool file, a sink or a log line).

Built-in rules, each replacing a match with `[REDACTED:<rule>]`: `email`, `card` (13-19
digits, spaces or dashes between, Luhn-checked), `iban` (mod-97 checked), `phone`
(international `+CC ...` or 10+ digits in groups), `ipv4`, `ipv6` (checked by
`ipaddress`), `bearer` (`Bearer <token>`), `api_key` (`sk-...`, `AKIA...`, `ghp_...`,
`xox?-...`, `api_key=...`-style assignments); plus the user's regexes (`redact_patterns`,
rule name `custom`). JSON bodies are parsed and every string value (keys are left alone)
is redacted, then the body is encoded again only when something changed; other text is
redacted as it is; bytes that are not UTF-8 are left alone (binary tensors).

Which traffic (`redact`): `openai` (default) redacts the OpenAI endpoints' requests and
responses (the reassembled stream included), `all` every body, `none` nothing. An
InferenceService sets it with the annotation `infertap.io/redact: "true"|"false"`
(`stack/plan.py`). Every replacement counts in `infertap_tap_redactions_total{rule}`, but those
of a `Redactor(..., counted=False)`: the OTel span content (`infertap.sidecar.llm_otel`) repeats
what the events' redaction already counted.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter

from infertap.logger.metrics import REGISTRY

REDACTIONS = Counter(
    "infertap_tap_redactions_total",
    "Values redacted from logged bodies before they were queued, by rule.",
    ("inference_service", "component", "rule"),
    registry=REGISTRY,
)


def _luhn(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _iban(text: str) -> bool:
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return text.count(":") >= 2


def _phone_ok(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    return digits >= 10 or (text.startswith("+") and digits >= 8)


_Rule = tuple[str, re.Pattern[str], Callable[[str], bool] | None]

# order matters: the longer, checked forms first, so a card number is not taken for a phone
BUILTIN: list[_Rule] = [
    ("bearer", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), None),
    (
        "api_key",
        re.compile(
            r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"
            r"|\bAKIA[0-9A-Z]{16}\b"
            r"|\bgh[pousr]_[A-Za-z0-9]{30,}"
            r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
            r"|(?i:\b(?:api[_-]?key|secret|access[_-]?token|auth[_-]?token)\b[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._\-/+]{12,}"
        ),
        None,
    ),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), None),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), _iban),
    ("card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _luhn),
    ("ipv6", re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"), _ipv6),
    (
        "ipv4",
        re.compile(
            r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])"
        ),
        None,
    ),
    (
        "phone",
        re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w])"),
        _phone_ok,
    ),
]


class Redactor:
    """The rules of one sidecar; `text()` and `json_body()` count what they replaced."""

    def __init__(
        self, patterns: Iterable[str] = (), inference_service: str = "", component: str = "", counted: bool = True
    ):
        self.rules: list[_Rule] = list(BUILTIN)
        self.counted = counted
        for pattern in patterns:
            self.rules.append(("custom", re.compile(pattern), None))
        self._counters = {
            name: REDACTIONS.labels(inference_service, component, name) for name in {r[0] for r in self.rules}
        }
        # a cheap test first: most strings hold no digit, no @ and no key-like prefix
        self._custom = any(r[0] == "custom" for r in self.rules)

    def text(self, value: str) -> str:
        for name, pattern, check in self.rules:
            if name != "custom" and not self._may_match(name, value):
                continue
            value = self._apply(name, pattern, check, value)
        return value

    @staticmethod
    def _may_match(name: str, value: str) -> bool:
        if name == "email":
            return "@" in value
        if name in ("ipv6",):
            return ":" in value
        if name in ("bearer", "api_key"):
            return True
        return any(c.isdigit() for c in value)

    def _apply(self, name: str, pattern: re.Pattern[str], check: Callable[[str], bool] | None, value: str) -> str:
        count = 0

        def replace(m: re.Match[str]) -> str:
            nonlocal count
            if check is not None and not check(m.group(0)):
                return m.group(0)
            count += 1
            return f"[REDACTED:{name}]"

        out = pattern.sub(replace, value)
        if count and self.counted:
            self._counters[name].inc(count)
        return out

    def value(self, obj: Any) -> Any:
        """Every string inside a JSON value redacted (a new value; the input is not changed)."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {k: self.value(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.value(v) for v in obj]
        return obj

    def body(self, body: bytes, parsed: Any = None) -> bytes:
        """A logged body redacted: JSON by its string values, other UTF-8 text as it is."""
        if not body and parsed is None:
            return body
        if parsed is None:
            head = body.lstrip()[:1]
            if head in (b"{", b"["):
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
        if parsed is not None:
            redacted = self.value(parsed)
            if redacted == parsed and body:
                return body
            return json.dumps(redacted, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return body
        out = self.text(text)
        return body if out == text else out.encode()
