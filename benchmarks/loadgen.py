"""A small closed-loop HTTP load generator for loopback benchmarks.

Fixed concurrency (one keep-alive connection per worker, each sending its next request as
soon as the previous reply is read), a warm-up phase whose requests are not counted, then a
measured phase that ends after a fixed duration or request count, whichever comes first.
It reports throughput, latency percentiles and errors.

The HTTP/1.1 client is written on asyncio streams rather than httpx or aiohttp on purpose:
the generator shares a 2-core machine with the servers it measures, and every microsecond
it spends per request is taken from them. The request bytes are built once; a reply costs
one header parse. It speaks only to loopback addresses and is bounded in requests, time and
memory (latencies go into a preallocated array).

Use it from Python (`run_load(LoadSpec(...))`) or as a separate process, which is how the
benchmarks use it so that it never shares an interpreter with a server:

    python -m benchmarks.loadgen --url http://127.0.0.1:8080/v1/models/m:predict \
        --body '{"instances": [[1, 2, 3, 4]]}' --concurrency 8 --duration 5 --warmup 1
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import socket
import sys
import time
from array import array
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

MAX_DURATION_S = 300.0
MAX_REQUESTS = 5_000_000
MAX_CONCURRENCY = 1024
MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class LoadSpec:
    """What to send, how hard and for how long."""

    url: str
    body: bytes = b""
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    concurrency: int = 1
    duration_s: float = 5.0
    requests: int | None = None  # stop the measured phase after this many replies (or duration_s)
    warmup_s: float = 1.0
    timeout_s: float = 10.0  # per request; a request that takes longer counts as an error
    expect_status: int = 200


@dataclass
class LoadResult:
    """Counts and latencies of the measured phase (warm-up excluded)."""

    url: str
    concurrency: int
    requests: int  # replies with the expected status
    errors: int  # other statuses, timeouts, broken connections
    duration_s: float
    throughput_rps: float
    latency_ms: dict[str, float | None]  # mean, p50, p90, p99, max over successful requests (None: none)
    status_counts: dict[str, int]
    error_samples: list[str]
    replies_total: int = 0  # every reply read, warm-up and drain included (to divide server CPU time by)

    def to_dict(self) -> dict:
        return asdict(self)


class _Conn:
    """One keep-alive HTTP/1.1 connection to a loopback server."""

    def __init__(self, host: str, port: int, timeout_s: float):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout_s)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:  # small request/reply pairs: do not wait for Nagle
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        """Send one request, read one reply; (status, body). Reconnects when closed."""
        if self.writer is None:
            await self.open()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length, chunked, close = _parse_head(head)
        if chunked:
            body = await self._read_chunked()
        elif length is not None:
            body = await self.reader.readexactly(length)
        else:  # no framing: the body runs to the end of the connection
            body, close = await self.reader.read(), True
        if close:
            self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers expected
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size + 2))
            parts[-1] = parts[-1][:-2]


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, content-length or None, chunked, connection close) of a reply head."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close = None, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = b"close" in value.lower()
    return status, length, chunked, close


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"loadgen only targets loopback addresses, not {host!r}")


def _build_request(spec: LoadSpec, host: str, port: int, target: str) -> bytes:
    headers = {"host": f"{host}:{port}", "user-agent": "infertap-loadgen", **spec.headers}
    headers = {k.lower(): v for k, v in headers.items()}
    if spec.body or spec.method in ("POST", "PUT", "PATCH"):
        headers["content-length"] = str(len(spec.body))
    head = f"{spec.method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + spec.body


def _validate(spec: LoadSpec) -> None:
    if not 1 <= spec.concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be in 1..{MAX_CONCURRENCY}")
    if not 0 < spec.duration_s <= MAX_DURATION_S or not 0 <= spec.warmup_s <= MAX_DURATION_S:
        raise ValueError(f"duration and warm-up must be within {MAX_DURATION_S}s")
    if spec.requests is not None and not 1 <= spec.requests <= MAX_REQUESTS:
        raise ValueError(f"requests must be in 1..{MAX_REQUESTS}")


def percentile(sorted_values, q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted sequence; nan when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def run_load(spec: LoadSpec) -> LoadResult:
    """Drive `spec.url` with `spec.concurrency` connections; warm-up, then measure."""
    _validate(spec)
    parts = urlsplit(spec.url)
    if parts.scheme != "http":
        raise ValueError("only http:// URLs are supported")
    host, port = parts.hostname or "", parts.port or 80
    _check_loopback(host)
    request = _build_request(spec, host, port, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))

    cap = spec.requests if spec.requests is not None else MAX_REQUESTS
    latencies = array("d")
    statuses: dict[str, int] = {}
    samples: list[str] = []
    state = {"measuring": False, "stop": False, "done": 0, "errors": 0, "replies": 0}

    def error(text: str) -> None:
        if state["measuring"]:
            state["errors"] += 1
            statuses[text.split(":", 1)[0]] = statuses.get(text.split(":", 1)[0], 0) + 1
        if len(samples) < MAX_ERROR_SAMPLES:
            samples.append(text[:300])

    async def worker() -> None:
        conn = _Conn(host, port, spec.timeout_s)
        clock = time.perf_counter
        try:
            while not state["stop"]:
                t0 = clock()
                try:
                    status, body = await asyncio.wait_for(conn.roundtrip(request), spec.timeout_s)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    conn.close()
                    error(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.01)  # a refused or broken connection must not spin
                    continue
                except TimeoutError:
                    conn.close()
                    error("timeout: no reply within timeout_s")
                    continue
                elapsed = clock() - t0
                state["replies"] += 1
                if status != spec.expect_status:
                    error(f"{status}: {body[:200]!r}")
                    continue
                if state["measuring"] and state["done"] < cap:
                    latencies.append(elapsed)
                    state["done"] += 1
                    key = str(status)
                    statuses[key] = statuses.get(key, 0) + 1
                    if state["done"] >= cap:
                        state["stop"] = True
        finally:
            conn.close()

    tasks = [asyncio.create_task(worker()) for _ in range(spec.concurrency)]
    try:
        await asyncio.sleep(spec.warmup_s)
        state["measuring"] = True
        start = time.perf_counter()
        deadline = start + spec.duration_s
        while not state["stop"] and time.perf_counter() < deadline:
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.perf_counter())))
        elapsed = time.perf_counter() - start
        state["measuring"], state["stop"] = False, True
        # Workers stop after their in-flight request; bound the wait by one timeout.
        await asyncio.wait(tasks, timeout=spec.timeout_s + 1)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    ordered = sorted(latencies)
    ms = 1000.0
    latency = {
        "mean": (sum(ordered) / len(ordered) * ms) if ordered else math.nan,
        "p50": percentile(ordered, 50) * ms,
        "p90": percentile(ordered, 90) * ms,
        "p99": percentile(ordered, 99) * ms,
        "max": (ordered[-1] * ms) if ordered else math.nan,
    }
    return LoadResult(
        url=spec.url,
        concurrency=spec.concurrency,
        requests=len(ordered),
        errors=state["errors"],
        duration_s=elapsed,
        throughput_rps=len(ordered) / elapsed if elapsed > 0 else 0.0,
        latency_ms={k: (None if math.isnan(v) else round(v, 4)) for k, v in latency.items()},
        status_counts=statuses,
        error_samples=samples,
        replies_total=state["replies"],
    )


def _install_fast_loop() -> None:
    try:
        import uvloop  # the servers run on uvloop too; the same loop keeps client cost low
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> int:
    """CLI: run one load and print its LoadResult as JSON on stdout."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--method", default="POST")
    p.add_argument("--body", default="", help="request body (text); @FILE reads a file")
    p.add_argument("--header", action="append", default=[], help="NAME: VALUE (repeatable)")
    p.add_argument("--concurrency", "-c", type=int, default=1)
    p.add_argument("--duration", "-d", type=float, default=5.0)
    p.add_argument("--requests", "-n", type=int, default=None)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--expect-status", type=int, default=200)
    a = p.parse_args(argv)
    body = open(a.body[1:], "rb").read() if a.body.startswith("@") else a.body.encode()
    headers = {"content-type": "application/json"}
    for h in a.header:
        name, _, value = h.partition(":")
        headers[name.strip().lower()] = value.strip()
    spec = LoadSpec(
        url=a.url,
        body=body,
        method=a.method.upper(),
        headers=headers,
        concurrency=a.concurrency,
        duration_s=a.duration,
        requests=a.requests,
        warmup_s=a.warmup,
        timeout_s=a.timeout,
        expect_status=a.expect_status,
    )
    _install_fast_loop()
    result = asyncio.run(run_load(spec))
    json.dump(result.to_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
