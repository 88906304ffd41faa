"""The one error every codec raises on a payload it cannot read or write."""

from __future__ import annotations


class CodecError(ValueError):
    """A payload does not match its protocol: bad JSON, shape/datatype mismatch, wrong byte count.

    The message is meant for the client (servers answer it as HTTP 400 `{"error": ...}`).
    """
