"""infertap.sidecar.sniff: the byte-level checks that let the common request and response skip the
parser on the way out. They may only say yes where the parsed path would forward the same
thing; every doubtful case must fall back (None / False)."""

from __future__ import annotations

import httptools
import pytest

from infertap.sidecar import sniff

pytestmark = pytest.mark.fast  # starts no process (make test-fast)

BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
PLAIN = (
    b"POST /v1/models/iris:predict HTTP/1.1\r\nHost: model\r\nUser-Agent: t\r\n"
    b"Content-Type: application/json\r\nContent-Length: 37\r\n\r\n" + BODY
)
KW = {"excluded": (b"/infertap/metrics", b"/?"), "exact": (b"/",), "inside": (b":explain",)}


class Messages:
    def __init__(self) -> None:
        self.complete = 0
        self.body = b""

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete += 1


def parsed(data: bytes) -> Messages:
    m = Messages()
    httptools.HttpRequestParser(m).feed_data(data)
    return m


def test_the_common_request_passes_with_forwarded_for_after_the_request_line():
    out = sniff.request_to_pass(PLAIN, 1 << 20, "10.0.0.7", **KW)
    assert out == PLAIN.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nx-forwarded-for: 10.0.0.7\r\n", 1)
    m = parsed(out)  # what goes upstream is still exactly one request with the same body
    assert m.complete == 1 and m.body == BODY


def test_a_get_without_body_passes():
    data = b"GET /v2/models/iris HTTP/1.1\r\nHost: m\r\n\r\n"
    assert sniff.request_to_pass(data, 100, None, **KW) == data


@pytest.mark.parametrize(
    "data",
    [
        PLAIN.replace(b"Host: model\r\n", b""),  # no Host: the parsed path adds one
        PLAIN.replace(b"HTTP/1.1", b"HTTP/1.0"),
        PLAIN.replace(b"POST", b"HEAD"),
        PLAIN.replace(b"/v1/models/iris:predict", b"http://model/v1/models/iris:predict"),  # absolute form
        PLAIN.replace(b"User-Agent: t", b"connection: close"),
        PLAIN.replace(b"User-Agent: t", b"Connection: keep-alive, Upgrade"),
        PLAIN.replace(b"User-Agent: t", b"Connection: keep-alive\r\nConnection: close"),  # the second still blocks
        PLAIN.replace(b"User-Agent: t", b"Connection: keep-alive\r\nKeep-Alive: timeout=5"),
        PLAIN.replace(b"User-Agent: t", b"Expect: 100-continue"),
        PLAIN.replace(b"User-Agent: t", b"X-Forwarded-For: 1.2.3.4"),
        PLAIN.replace(b"User-Agent: t", b"Transfer-Encoding: chunked"),
        PLAIN.replace(b"User-Agent: t", b"TE: trailers"),
        PLAIN.replace(b"User-Agent: t", b"Upgrade: websocket"),
        PLAIN.replace(b"User-Agent: t", b"Content-Length: 37"),  # two lengths
        PLAIN.replace(b"Content-Length: 37", b"Content-Length: 36"),  # a byte too many: pipelined?
        PLAIN.replace(b"Content-Length: 37", b"Content-Length: 38"),  # the body is not all here
        PLAIN.replace(b"Content-Length: 37", b"Content-Length: x7"),
        PLAIN[:-5],
        PLAIN.split(b"\r\n\r\n")[0],  # the head is not complete
        PLAIN + PLAIN,  # two requests in one read
        PLAIN.replace(b"/v1/models/iris:predict", b"/infertap/metrics"),
        PLAIN.replace(b"/v1/models/iris:predict", b"/"),
        PLAIN.replace(b"/v1/models/iris:predict", b"/?x=1"),
        PLAIN.replace(b":predict", b":explain"),
    ],
)
def test_anything_unusual_is_left_to_the_parser(data):
    assert sniff.request_to_pass(data, 1 << 20, "10.0.0.7", **KW) is None


@pytest.mark.parametrize("line", [b"Connection: keep-alive", b"connection:Keep-Alive ", b"CONNECTION:  keep-alive"])
def test_a_lone_connection_keep_alive_is_dropped_and_the_request_passes(line):
    data = PLAIN.replace(b"User-Agent: t", line)  # what Python's requests sends
    out = sniff.request_to_pass(data, 1 << 20, "10.0.0.7", **KW)
    assert out == (
        b"POST /v1/models/iris:predict HTTP/1.1\r\nx-forwarded-for: 10.0.0.7\r\nHost: model\r\n"
        b"Content-Type: application/json\r\nContent-Length: 37\r\n\r\n" + BODY
    )
    m = parsed(out)
    assert m.complete == 1 and m.body == BODY


def test_a_body_over_the_limit_is_left_to_the_parser():
    assert sniff.request_to_pass(PLAIN, 36, None, **KW) is None
    assert sniff.request_to_pass(PLAIN, 37, None, **KW) is not None


RESPONSE = (
    b"HTTP/1.1 200 OK\r\ndate: Sat, 28 Nov 2026 12:00:00 GMT\r\nserver: uvicorn\r\n"
    b'content-length: 19\r\ncontent-type: application/json\r\n\r\n{"predictions":[1]}'
)


def test_the_common_response_passes_even_when_its_body_is_still_coming():
    assert sniff.response_passes(RESPONSE)
    assert sniff.response_passes(RESPONSE[:-5])


@pytest.mark.parametrize(
    "data",
    [
        RESPONSE.replace(b"HTTP/1.1", b"HTTP/1.0"),
        RESPONSE.replace(b"200 OK", b"100 Continue"),
        RESPONSE.replace(b"content-length: 19", b"transfer-encoding: chunked"),
        RESPONSE.replace(b"server: uvicorn", b"Connection: close"),
        RESPONSE.replace(b"server: uvicorn", b"Keep-Alive: timeout=5"),
        RESPONSE.replace(b"server: uvicorn", b"content-length: 19"),  # two lengths
        RESPONSE.replace(b"content-length: 19\r\n", b""),  # read to the close
        RESPONSE.split(b"\r\n\r\n")[0],
    ],
)
def test_unusual_responses_are_parsed_first(data):
    assert not sniff.response_passes(data)
