"""A test-only TLS / SASL-PLAIN front for the embedded broker, which can do neither.

Tansu 0.6.0 (the bundled broker) cannot terminate TLS (`--cert` and `--key` are mutually
exclusive in its CLI) nor authenticate anyone it has not already authenticated (`tansu
user create` is refused by `broker --authentication`). So the tests put this front on
loopback between a real Kafka client and the real Tansu:

    client --TLS and/or SASL (PLAIN, SCRAM-SHA-256/512)--> KafkaFront --plain TCP--> Tansu

Tansu is started with `--advertised-listener-url` = the front's address, so metadata and
FindCoordinator answers send the client back through the front for every connection.

TLS is the stdlib `ssl` module's; the certificates come from the `openssl` CLI
(`make_certs`). SASL: before a connection is authenticated the front reads whole Kafka
frames; it passes ApiVersions through to Tansu (whose answer already lists SaslHandshake,
key 17 v0-1, and SaslAuthenticate, key 36 v0-2), answers SaslHandshake v1 and
SaslAuthenticate v0-2 itself (librdkafka sends v1 of both, kafka-python 3.0 v1 and the
flexible v2; a v0 handshake, which means raw tokens without Kafka headers, is refused),
closes the connection on anything else and on a wrong password (after
SASL_AUTHENTICATION_FAILED, 100 ms later, as Kafka does). PLAIN takes one SaslAuthenticate
round; SCRAM two (RFC 5802: server-first with a salt and 4096 iterations, then the client's
proof checked and the server's signature sent back, as Kafka's KIP-84). Once authenticated
it only copies bytes both ways.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import os
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infertap.stack.broker import EmbeddedBroker

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
FAILED_MESSAGE = "Authentication failed: Invalid username or password"
FAILED_CLOSE_DELAY_S = 0.1


# --- certificates ----------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """PEM files: the CA that signed the server's and the client's certificates, the two
    pairs, another CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return cert, key


def _sign(folder: Path, name: str, ca: Path, ca_key: Path, subject: str, extensions: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (folder / f"{name}.{suffix}" for suffix in ("key", "csr", "pem", "ext"))
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        subject,
    )
    ext.write_text(
        extensions + "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        ext,
    )
    return cert, key


def make_certs(folder: Path) -> Certs:
    """A CA; a server certificate it signed for 127.0.0.1 and localhost, and a client
    certificate (for mutual TLS); an unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _make_ca(folder, "test-ca")
    other_ca, _ = _make_ca(folder, "other-ca")
    cert, key = _sign(
        folder,
        "server",
        ca,
        ca_key,
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    client_cert, client_key = _sign(
        folder, "client", ca, ca_key, "/CN=infertap-logger", "extendedKeyUsage=clientAuth\n"
    )
    return Certs(
        ca=ca, server_cert=cert, server_key=key, other_ca=other_ca, client_cert=client_cert, client_key=client_key
    )


def server_context(certs: Certs, client_certs: bool = False) -> ssl.SSLContext:
    """The front's TLS server context; `client_certs`: mutual TLS, a client certificate signed
    by the test CA is required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.server_cert, certs.server_key)
    if client_certs:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs.ca)
    return ctx


# --- Kafka wire encoding (just what the SASL exchange needs) --------------------------


class _Buf:
    """A cursor over one request frame."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def raw(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.raw(self.uvarint())


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


@dataclass
class _Request:
    api_key: int
    version: int
    correlation_id: int
    body: _Buf  # positioned after the header


def _parse(frame: bytes) -> _Request:
    buf = _Buf(frame)
    api_key, version, correlation_id = buf.take(">h"), buf.take(">h"), buf.take(">i")
    client_id_len = buf.take(">h")
    buf.raw(max(client_id_len, 0))
    if api_key == SASL_AUTHENTICATE and version >= 2:  # request header v2: tagged fields follow
        buf.skip_tagged_fields()
    return _Request(api_key, version, correlation_id, buf)


def _handshake_response(req: _Request, error: int) -> bytes:
    out = struct.pack(">ihi", req.correlation_id, error, len(MECHANISMS))
    return out + b"".join(_string(m) for m in MECHANISMS)


def _authenticate_response(req: _Request, error: int, message: str | None, auth: bytes = b"") -> bytes:
    if req.version >= 2:  # flexible: response header v1, compact strings, tagged fields
        msg = b"\x00" if message is None else _uvarint(len(message.encode()) + 1) + message.encode()
        return (
            struct.pack(">i", req.correlation_id)
            + b"\x00"
            + struct.pack(">h", error)
            + msg
            + _uvarint(len(auth) + 1)
            + auth
            + struct.pack(">q", 0)
            + b"\x00"
        )
    msg = struct.pack(">h", -1) if message is None else _string(message)
    out = struct.pack(">ih", req.correlation_id, error) + msg + struct.pack(">i", len(auth)) + auth
    return out + struct.pack(">q", 0) if req.version >= 1 else out


# --- SCRAM (RFC 5802; SHA-256 and SHA-512 as Kafka's KIP-84) ------------------------------

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_ITERATIONS = 4096


class _Scram:
    """The server side of one SCRAM exchange: `first` answers client-first, `final` checks the
    proof in client-final and returns the server signature (None: authentication failed)."""

    def __init__(self, mechanism: str, users: dict[str, str]):
        self.hash = "sha256" if mechanism == "SCRAM-SHA-256" else "sha512"
        self.users = users
        self.user: str | None = None
        self.client_first_bare = self.server_first = ""

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, self.hash).digest()

    def first(self, message: bytes) -> bytes:
        text = message.decode()
        _, _, bare = text.partition(",,")  # gs2 header "n,," (no channel binding, no authzid)
        fields = dict(f.split("=", 1) for f in bare.split(","))
        self.user, self.client_first_bare = fields["n"], bare
        self.salt = os.urandom(16)
        nonce = fields["r"] + base64.b64encode(os.urandom(18)).decode()
        self.server_first = f"r={nonce},s={base64.b64encode(self.salt).decode()},i={SCRAM_ITERATIONS}"
        return self.server_first.encode()

    def final(self, message: bytes) -> bytes | None:
        text = message.decode()
        without_proof, _, proof = text.rpartition(",p=")
        password = self.users.get(self.user or "")
        if password is None or not without_proof:
            return None
        salted = hashlib.pbkdf2_hmac(self.hash, password.encode(), self.salt, SCRAM_ITERATIONS)
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self.hash, client_key).digest()
        signature = self._hmac(stored_key, auth_message)
        proof_bytes = base64.b64decode(proof)
        if len(proof_bytes) != len(signature):
            return None
        sent_key = bytes(a ^ b for a, b in zip(proof_bytes, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(self.hash, sent_key).digest(), stored_key):
            return None
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return b"v=" + base64.b64encode(server_signature)


def _auth_bytes(req: _Request) -> bytes:
    body = req.body
    if req.version >= 2:
        return body.raw(body.uvarint() - 1)
    return body.raw(body.take(">i"))


# --- the front -------------------------------------------------------------------------


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    try:
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        return await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _write_frame(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(struct.pack(">i", len(payload)) + payload)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass


class KafkaFront:
    """Listens on host:port (port 0: any), terminates TLS and/or SASL, forwards to `upstream`.

    `users` (name -> password) turns SASL on (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); `ssl_context` turns TLS on. Runs its
    own event loop on a daemon thread, so synchronous and asyncio tests can both use it.
    `authenticated` and `refused` count SASL outcomes, for the tests to assert on.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        ssl_context: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
        host: str = "127.0.0.1",
    ):
        self.upstream, self.ssl_context, self.users, self.host = upstream, ssl_context, users, host
        self.port = 0
        self.authenticated = self.refused = 0
        self.mechanisms: collections.Counter[str] = collections.Counter()  # successful logins by mechanism
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-front", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._closing = False

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> KafkaFront:
        """Bind and serve; `port` is known when this returns."""
        self._thread.start()
        tls = {"ssl": self.ssl_context, "ssl_handshake_timeout": 10} if self.ssl_context else {}
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, self.host, self.port, **tls), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then end the loop's thread."""

        async def _close() -> None:
            self._closing = True
            if self._server is not None:
                self._server.close()
            await asyncio.sleep(0)  # connections accepted but not yet served see _closing and end
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_writer = None
        try:
            if self._closing:
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            if self.users is not None and not await self._authenticate(reader, writer, up_reader, up_writer):
                return
            pumps = [asyncio.ensure_future(_pump(reader, up_writer)), asyncio.ensure_future(_pump(up_reader, writer))]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for p in pumps:
                    p.cancel()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly (the stream callback would log a cancelled task)
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()

    async def _authenticate(self, reader, writer, up_reader, up_writer) -> bool:
        """The pre-authentication exchange, one frame at a time; True once the client is in."""
        scram: _Scram | None = None
        mechanism = ""  # set by SaslHandshake, which must come first
        while (frame := await _read_frame(reader)) is not None:
            req = _parse(frame)
            if req.api_key == API_VERSIONS:
                _write_frame(up_writer, frame)
                await up_writer.drain()
                answer = await _read_frame(up_reader)
                if answer is None:
                    return False
                _write_frame(writer, answer)
            elif req.api_key == SASL_HANDSHAKE:
                mechanism = req.body.raw(req.body.take(">h")).decode()
                error = 0 if mechanism in MECHANISMS else UNSUPPORTED_SASL_MECHANISM
                _write_frame(writer, _handshake_response(req, error))
                if error or req.version == 0:  # v0 would send raw tokens next: neither client does
                    await writer.drain()
                    return False
                scram = _Scram(mechanism, self.users) if mechanism.startswith("SCRAM") else None
            elif req.api_key == SASL_AUTHENTICATE and not mechanism:
                return False
            elif req.api_key == SASL_AUTHENTICATE and scram is not None and not scram.server_first:
                _write_frame(writer, _authenticate_response(req, 0, None, scram.first(_auth_bytes(req))))
            elif req.api_key == SASL_AUTHENTICATE:
                if scram is None:
                    ok, answer = self._check(_auth_bytes(req)), b""
                else:
                    answer = scram.final(_auth_bytes(req)) or b""
                    ok = self._count(bool(answer))
                if ok:
                    self.mechanisms[mechanism] += 1
                _write_frame(
                    writer,
                    _authenticate_response(
                        req, 0 if ok else SASL_AUTHENTICATION_FAILED, None if ok else FAILED_MESSAGE, answer
                    ),
                )
                await writer.drain()
                if not ok:  # as Kafka's connection.failed.authentication.delay.ms (100 ms by default)
                    await asyncio.sleep(FAILED_CLOSE_DELAY_S)
                return ok
            else:  # Kafka answers nothing else before authentication: it closes the connection
                return False
            await writer.drain()
        return False

    def _check(self, token: bytes) -> bool:
        """A SASL/PLAIN token: authzid NUL authcid NUL password."""
        parts = token.split(b"\x00")
        return self._count(
            len(parts) == 3
            and parts[0] in (b"", parts[1])
            and self.users.get(parts[1].decode(errors="replace")) == parts[2].decode(errors="replace")
        )

    def _count(self, ok: bool) -> bool:
        if ok:
            self.authenticated += 1
        else:
            self.refused += 1
        return ok

    def __enter__(self) -> KafkaFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def fronted_broker(
    log_dir: Path, port: int, *, ssl_context: ssl.SSLContext | None = None, users: dict[str, str] | None = None
) -> Iterator[KafkaFront]:
    """A real Tansu on `port` that advertises a KafkaFront; yields the front (clients use its `bootstrap`)."""
    front = KafkaFront(("127.0.0.1", port), ssl_context=ssl_context, users=users).start()
    try:
        with EmbeddedBroker(port=port, log_path=log_dir / f"broker-{port}.log", advertised=front.bootstrap):
            yield front
    finally:
        front.stop()
