"""A fixed corpus of personal data and secrets, one sample per built-in redaction rule (and
one for a user regex): the tests send it through the sidecar and prove that none of it
reaches Kafka, the spool, the file sink or the sidecar's log."""

from __future__ import annotations

#: (rule, value): each value must be replaced by `[REDACTED:<rule>]`
CORPUS: list[tuple[str, str]] = [
    ("email", "jane.roe+billing@example-mail.co.uk"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "(415) 555-0132"),
    ("card", "4111 1111 1111 1111"),
    ("card", "5500-0000-0000-0004"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "GB82WEST12345698765432"),
    ("ipv4", "203.0.113.77"),
    ("ipv6", "2001:db8:85a3::8a2e:370:7334"),
    ("bearer", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"),
    ("api_key", "sk-proj-4f9aQ2zX7LmN0pR8sT1uV3wY"),
    ("api_key", "AKIAIOSFODNN7EXAMPLE"),
    ("custom", "EMP-778812"),
]

#: the user regex that makes `custom` match
CUSTOM_PATTERN = r"EMP-\d{6}"

#: the corpus as one user message
MESSAGE = "Please help. " + " and ".join(value for _, value in CORPUS) + " thanks"

#: what must never be found: the values, and their most telling fragments
FORBIDDEN: list[bytes] = [value.encode() for _, value in CORPUS] + [
    b"jane.roe",
    b"4111 1111",
    b"0532 0130",
    b"203.0.113.77",
    b"8a2e:370:7334",
    b"c2lnbmF0dXJl",
    b"4f9aQ2zX7LmN",
    b"AKIAIOSFODNN7",
    b"EMP-778812",
]

#: texts that look a little like the above and must be left alone
INNOCENT = [
    "It is 12:30:45 on 2024-01-02.",
    "Version 1.2.3 costs 1,234.56 euros.",
    "Order 42 of 1000 shipped.",
]


def leaks(blob: bytes) -> list[bytes]:
    """The forbidden fragments found in `blob`."""
    return [f for f in FORBIDDEN if f in blob]
