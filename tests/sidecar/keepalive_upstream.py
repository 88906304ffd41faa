"""A raw HTTP/1.1 keep-alive server for the sidecar's connection-reuse tests, with the
keep-alive races of a real model server made deterministic.

Every answer is `{"conn": <connection number>, "n": <requests on it so far>}`, so a test
sees whether the sidecar reused a connection. Paths arm what happens to the *next* request
on the same connection:

- `/close-next`: it is read, then the connection is reset (SO_LINGER 0) with no answer:
  what a client sees when uvicorn's keep-alive timer fires just as the request arrives.
- `/partial-next`: half a status line is sent, then the connection closes: a response that
  started and broke (must not be retried: the request may have been processed).

`--idle S` closes connections idle for S seconds (uvicorn's `timeout_keep_alive`).
`GET /stats` answers the requests received per connection and per path
(`{"conns": {"1": 2}, "paths": {"/a": 1}}`).

Run: `python tests/sidecar/keepalive_upstream.py --port N [--idle S]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct

STATS: dict[int, int] = {}
PATHS: dict[str, int] = {}
_next_conn = 0


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle: float) -> None:
    global _next_conn
    _next_conn += 1
    conn, armed = _next_conn, None
    STATS[conn] = 0
    try:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return  # idle timeout or client gone: close, as uvicorn does
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            length = next(
                (int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")), 0
            )
            if length:
                await reader.readexactly(length)
            STATS[conn] += 1
            PATHS[path] = PATHS.get(path, 0) + 1
            if armed == "close":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # RST, no answer
                return
            if armed == "partial":
                writer.write(b"HTTP/1.1 20")
                await writer.drain()
                return
            armed = {"/close-next": "close", "/partial-next": "partial"}.get(path)
            body = json.dumps(
                {"conns": STATS, "paths": PATHS} if path == "/stats" else {"conn": conn, "n": STATS[conn]}
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
    finally:
        writer.close()


async def main(port: int, idle: float) -> None:
    server = await asyncio.start_server(lambda r, w: handle(r, w, idle), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--idle", type=float, default=60.0)
    a = p.parse_args()
    asyncio.run(main(a.port, a.idle))
