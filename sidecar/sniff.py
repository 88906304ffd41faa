"""Deciding from raw bytes that a request or a response can be passed on as it is: the
sidecar's fast path (`infertap.sidecar.front`, `infertap.sidecar.upstream`).

Why: on this hop every Python step on the way from one socket to the other is added
latency, and rebuilding a request from its parsed headers is several per header. These
checks are a handful of C-level searches on the head. They only ever say "not sure" (None /
False) for anything unusual, and the message then takes the parsed path, which handles
everything. A request is sniffed only after the parser has accepted it, whole (what the
parser refuses must never reach a model server with a more lenient parser: issue 19); a
response is passed before it is parsed (the model server is trusted), and the parser
still runs on it for the tap and the framing.

A request passes when the read holds exactly one whole request: `METHOD /target HTTP/1.1`
(not HEAD), a Host, at most one Content-Length that accounts for every byte after the head,
within the body limit, and no header the proxy must drop or rewrite (hop-by-hop, Expect,
X-Forwarded-For, Transfer-Encoding). The one exception is a lone `Connection: keep-alive`
(sent by Python's `requests` and many HTTP/1.0-era clients): it says nothing in HTTP/1.1
and is dropped. Paths the sidecar answers itself are excluded by the caller's `excluded`
prefixes. What goes upstream is the request with `X-Forwarded-For` added after the request
line.

A response passes when the read starts with an `HTTP/1.1` final status (not 1xx), its head
is complete, it has exactly one Content-Length and no hop-by-hop header.
"""

from __future__ import annotations

import re

# RFC 9110 7.6.1 hop-by-hop headers: never passed on by the proxy
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
    }
)
_HOP_BY_HOP = b"|".join(sorted(HOP_BY_HOP))
# one C-level search per head instead of a Python step per header
# (on the lower-cased head)
# (k-network-probe: Knative's probes, answered by the sidecar itself: `infertap.sidecar.kserve_agent`)
_REQUEST_BLOCKER = re.compile(rb"\r\n(?:" + _HOP_BY_HOP + rb"|expect|x-forwarded-for|k-network-probe)[ \t]*:")
_RESPONSE_BLOCKER = re.compile(rb"\r\n(?:" + _HOP_BY_HOP + rb")[ \t]*:")
# the whole header line, without its CRLF (on the lower-cased head)
_KEEP_ALIVE = re.compile(rb"\r\nconnection[ \t]*:[ \t]*keep-alive[ \t]*(?=\r\n)")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([^\r\n]*)")
_VERSION = b" HTTP/1.1"


def request_to_pass(
    data: bytes,
    limit: int,
    client: str | None,
    excluded: tuple[bytes, ...] = (),
    exact: tuple[bytes, ...] = (),
    inside: tuple[bytes, ...] = (),
) -> bytes | None:
    """The bytes to send upstream for the request in `data`, or None when it must be parsed
    first. Targets starting with one of `excluded`, equal to one of `exact` or containing one
    of `inside` are left to the parsed path."""
    end = data.find(b"\r\n\r\n")
    line_end = data.find(b"\r\n")
    if end < 0 or line_end <= 0:
        return None
    line = data[:line_end]
    space = line.find(b" ")
    if space <= 0 or not line.endswith(_VERSION) or line[:space] == b"HEAD":
        return None
    target = line[space + 1 : -len(_VERSION)]
    if not target.startswith(b"/") or b" " in target or target.startswith(excluded) or target in exact:
        return None
    for part in inside:
        if part in target:
            return None
    head = data[line_end : end + 2].lower()  # b"\r\nname: value ... \r\n"
    if b"\r\nconnection" in head:
        keep_alive = _KEEP_ALIVE.search(head)
        if keep_alive is not None:  # drop it (default in HTTP/1.1); any other Connection header blocks
            cut, stop = keep_alive.span()
            head = head[:cut] + head[stop:]
            data = data[: line_end + cut] + data[line_end + stop :]
            end -= stop - cut
    if b"\r\nhost:" not in head or _REQUEST_BLOCKER.search(head) is not None:
        return None
    length = _content_length(head)
    if length is None or length > limit or end + 4 + length != len(data):
        return None
    return with_forwarded_for(data, client)


def with_forwarded_for(request: bytes, client: str | None) -> bytes:
    """A whole request with `X-Forwarded-For: client` added after its request line (the
    caller knows it had no such header, nor any the proxy would drop)."""
    if not client:
        return request
    line_end = request.index(b"\r\n") + 2
    return b"%bx-forwarded-for: %b\r\n%b" % (request[:line_end], client.encode(), request[line_end:])


def response_passes(data: bytes) -> bool:
    """Whether the response starting `data` may go to an HTTP/1.1 keep-alive client as is."""
    if not data.startswith(b"HTTP/1.1 ") or data[9:10] == b"1":
        return False
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = data[data.find(b"\r\n") : end + 2].lower()
    lengths = _CONTENT_LENGTH.findall(head)
    return len(lengths) == 1 and lengths[0].strip().isdigit() and _RESPONSE_BLOCKER.search(head) is None


def _content_length(head: bytes) -> int | None:
    """0 without a Content-Length, its value with one, None with several or a bad one."""
    lengths = _CONTENT_LENGTH.findall(head)
    if not lengths:
        return 0
    if len(lengths) > 1:
        return None
    value = lengths[0].strip()
    return int(value) if value.isdigit() else None
