"""KServe's agent as the sidecar stands in for it: its command line and its Knative probes.

KServe's pod webhook (`pkg/webhook/admission/pod/agent_injector.go`) writes the agent
container's argv and environment; the sidecar image is a drop-in for `kserve/agent`, so that
argv must start it unchanged. `translate()` turns it into the sidecar's own flags before the
parser (`infertap.flags`) sees it:

- flags the sidecar has under KServe's name pass as they are (`--port`, `--component-port`,
  `--log-url`, `--log-mode`, `--source-uri`, `--inference-service`, `--namespace`,
  `--endpoint`, `--component`, `--metadata-headers`, `--metadata-annotations`, `--workers`,
  `--logger-ca-cert-file`, `--logger-tls-skip-verify`); bools take Go's `--x`, `--x=false`
  and the webhook's two-word `--x false` (`infertap.flags.bool_words`). Note: Go's pflag
  reads `--logger-tls-skip-verify false` as "true" plus a stray word; the sidecar follows
  what the webhook means (verify), not that accident;
- `--log-batch-size N` is `--batch-max-events N`, `--log-batch-interval D` (a Go duration:
  `500ms`, `10s`, `1m30s`) is `--batch-linger-ms`; `--log-client-timeout D` (kserve#6148) is
  `--http-timeout-s`;
- an empty `--source-uri ''` (the webhook passes the pod's name, empty for pods made from a
  generateName) is `http://localhost:<port>/`, as the agent does; an empty `--log-url ''` is
  no sink;
- flags of features the sidecar does not have (model puller, request batcher, blob-storage
  marshaller, `--probe-period`) are accepted and dropped with one warning line each.

The probes (`QueueProbe`): a request carrying `K-Network-Probe` is answered by the sidecar,
as the agent's drainer and `health.ProbeHandler` (knative.dev) answer it:
`K-Network-Probe: queue` (the readiness probe the webhook gives the agent container, and
queue-proxy's and the activator's) runs `$SERVING_READINESS_PROBE` (a JSON probe, or a list
of them, `httpGet` or `tcpSocket`, against the model server) and answers 200 `queue` or 503;
`K-Network-Probe: probe` (a Knative network probe) echoes `K-Network-Hash` (400 without
one); any other value is 400 `unexpected probe header value: V`. Without the variable the
probe succeeds, as the agent's does. Requests without the header, kubelet probes of the
model server's paths included, go to the model server as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("infertap.logger.kserve")

# features of KServe's agent the sidecar does not have: accepted, dropped, said once each
_IGNORED_VALUE = {
    "--config-dir": "the model puller is not part of the sidecar (the model server loads models)",
    "--model-dir": "the model puller is not part of the sidecar (the model server loads models)",
    "--log-store-path": "blob-storage logging (s3/gs/abfs) is not supported; use an http(s)://, kafka:// or file:// --log-url",
    "--log-store-format": "blob-storage logging (s3/gs/abfs) is not supported",
    "--log-marshaller-url": "blob-storage logging (s3/gs/abfs) is not supported",
    "--log-marshaller-port": "blob-storage logging (s3/gs/abfs) is not supported",
    "--max-batchsize": "the request batcher is not part of the sidecar",
    "--max-latency": "the request batcher is not part of the sidecar",
    "--probe-period": "unused by KServe's agent as well",
    "--logger-ca-bundle-configmap": "the CA bundle is mounted by the webhook; --logger-ca-cert-file names the file",
}
_IGNORED_BOOL = {
    "--enable-puller": "the model puller is not part of the sidecar (the model server loads models)",
    "--enable-batcher": "the request batcher is not part of the sidecar",
}
_BOOL_WORDS = frozenset({"true", "false", "1", "0", "yes", "no", "on", "off"})
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
LINGER_MAX_MS = 60_000.0  # `--batch-linger-ms` takes at most this


def go_duration_s(text: str) -> float:
    """Seconds of a Go duration (`time.ParseDuration`: `0`, `500ms`, `1m30s`); a bare number is seconds."""
    value = text.strip()
    sign = -1.0 if value.startswith("-") else 1.0
    value = value.lstrip("+-")
    if value in ("0", ""):
        return 0.0
    try:
        return sign * float(value)
    except ValueError:
        pass
    total, pos = 0.0, 0
    for m in _DURATION_PART.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(value) or pos == 0:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 500ms, 10s, 1m30s)")
    return sign * total


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def translate(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the sidecar's argv, warning lines) for an argv written for KServe's agent.

    Raises ValueError (one sentence naming the flag) for a value that cannot be read."""
    out: list[str] = []
    warnings: list[str] = []
    port = "9081"
    empty_source = False
    i = 0
    while i < len(argv):
        word = argv[i]
        name, eq, inline = word.partition("=")
        if not name.startswith("--"):
            out.append(word)
            i += 1
            continue
        flag = name.replace("_", "-")
        taken: list[str] = []

        def value(at: int = i, name: str = name, eq: str = eq, inline: str = inline, taken: list = taken) -> str:
            if eq:
                return inline
            if at + 1 >= len(argv):
                raise ValueError(f"{name}: expected a value")
            taken.append(argv[at + 1])
            return argv[at + 1]

        if flag in _IGNORED_BOOL:
            if not eq and i + 1 < len(argv) and argv[i + 1].strip().lower() in _BOOL_WORDS:
                i += 1
            warnings.append(f"KServe agent flag {flag} accepted and ignored: {_IGNORED_BOOL[flag]}")
        elif flag in _IGNORED_VALUE:
            value()
            warnings.append(f"KServe agent flag {flag} accepted and ignored: {_IGNORED_VALUE[flag]}")
        elif flag == "--log-batch-size":
            out += ["--batch-max-events", value()]
        elif flag == "--log-batch-interval":
            raw = value()
            try:
                ms = go_duration_s(raw) * 1000
            except ValueError as exc:
                raise ValueError(f"--log-batch-interval: {exc}") from None
            if ms > LINGER_MAX_MS:
                warnings.append(
                    f"--log-batch-interval {raw}: events wait at most {LINGER_MAX_MS / 1000:g}s for a batch"
                )
                ms = LINGER_MAX_MS
            out += ["--batch-linger-ms", _number(max(ms, 0.0))]
        elif flag == "--log-client-timeout":
            raw = value()
            try:
                seconds = go_duration_s(raw)
            except ValueError as exc:
                raise ValueError(f"--log-client-timeout: {exc}") from None
            if seconds > 0:
                out += ["--http-timeout-s", _number(seconds)]
        elif flag == "--source-uri":
            text = value()
            if text.strip():
                out += ["--source-uri", text]
            else:
                empty_source = True
        elif flag == "--log-url":
            text = value()
            if text.strip():
                out += ["--log-url", text]
        elif flag == "--port":
            port = value()
            out += ["--port", port]
        else:
            out.append(word)
        i += 1 + len(taken)
    if empty_source:
        out += ["--source-uri", f"http://localhost:{port.strip()}/"]
    return out, warnings


# --- probes --------------------------------------------------------------------------------

PROBE_HEADER = b"k-network-probe"
HASH_HEADER = b"k-network-hash"
QUEUE = b"queue"  # knative's queue.Name: the value of queue-proxy's readiness probes
KPROBE = b"probe"  # knative's network.ProbeHeaderValue


@dataclass
class ProbeCheck:
    """One probe of `$SERVING_READINESS_PROBE` (a Kubernetes Probe: httpGet or tcpSocket)."""

    kind: str  # "http" or "tcp"
    host: str
    port: int
    path: str = "/"
    scheme: str = "http"
    headers: list[tuple[str, str]] = field(default_factory=list)
    timeout_s: float = 1.0


def parse_readiness_probe(text: str | None, default_port: int) -> list[ProbeCheck]:
    """The checks of `$SERVING_READINESS_PROBE` (one probe object, or a list of them as with
    Knative's multi-container probing); empty text: none (the probe succeeds). Exec and
    gRPC probes are skipped, as KServe's webhook skips exec ones. ValueError on bad JSON."""
    if not text or not text.strip():
        return []
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"$SERVING_READINESS_PROBE is not JSON: {exc}") from None
    probes = loaded if isinstance(loaded, list) else [loaded]
    checks = []
    for probe in probes:
        if not isinstance(probe, dict):
            raise ValueError("$SERVING_READINESS_PROBE: expected a probe object or a list of them")
        timeout = float(probe.get("timeoutSeconds") or 1)
        for key, kind in (("httpGet", "http"), ("tcpSocket", "tcp")):
            action = probe.get(key)
            if not isinstance(action, dict):
                continue
            port = action.get("port")
            port_number = int(port) if isinstance(port, int) or (isinstance(port, str) and port.isdigit()) else 0
            headers = [(str(h.get("name", "")), str(h.get("value", ""))) for h in action.get("httpHeaders") or []]
            checks.append(
                ProbeCheck(
                    kind=kind,
                    host=action.get("host") or "127.0.0.1",
                    port=port_number or default_port,  # a named port: the model server's
                    path=action.get("path") or "/",
                    scheme=str(action.get("scheme") or "HTTP").lower(),
                    headers=headers,
                    timeout_s=timeout,
                )
            )
    return checks


class QueueProbe:
    """Answers requests carrying `K-Network-Probe` as KServe's agent does (see the module doc)."""

    def __init__(self, checks: list[ProbeCheck], http_get: Callable[..., Any] | None = None):
        self.checks = checks
        self._http_get = http_get  # async (url, headers, timeout) -> status; the proxy's httpx client

    @classmethod
    def from_env(cls, component_port: int, environ: dict[str, str] | None = None) -> QueueProbe:
        env = os.environ if environ is None else environ
        return cls(parse_readiness_probe(env.get("SERVING_READINESS_PROBE"), component_port))

    @staticmethod
    def header(headers: list[tuple[bytes, bytes]]) -> bytes | None:
        for name, value in headers:
            if name == PROBE_HEADER:
                return value.strip()
        return None

    def answer_now(self, value: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes, list] | None:
        """(status, body, headers) for a probe answered without I/O; None: run `ready()` first."""
        if value == QUEUE:
            return (200, QUEUE, []) if not self.checks else None
        if value == KPROBE:
            digest = next((v for n, v in headers if n == HASH_HEADER), b"")
            if not digest:
                return 400, b'a probe request must contain a non-empty "K-Network-Hash" header\n', []
            return 200, b"", [(b"k-network-hash", digest)]
        return 400, b"unexpected probe header value: " + value + b"\n", []

    async def ready(self, http_get: Callable[..., Any] | None = None) -> bool:
        """Every check of `$SERVING_READINESS_PROBE` passes (at once, in parallel)."""
        get = http_get or self._http_get
        results = await asyncio.gather(*(self._check(c, get) for c in self.checks))
        return all(results)

    async def respond(self, client: Any, http_get: Callable[..., Any] | None = None) -> None:
        if await self.ready(http_get):
            client.respond(200, QUEUE, [(b"content-type", b"text/plain; charset=utf-8")])
        else:
            client.respond(503, b"", [])

    @staticmethod
    async def _check(check: ProbeCheck, http_get: Callable[..., Any] | None) -> bool:
        try:
            if check.kind == "tcp" or http_get is None:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(check.host, check.port), check.timeout_s
                )
                writer.close()
                return True
            url = f"{check.scheme}://{check.host}:{check.port}{check.path}"
            headers = [("user-agent", "kube-probe/infertap"), *check.headers]
            status = await asyncio.wait_for(http_get(url, headers, check.timeout_s), check.timeout_s + 0.5)
            return 200 <= status < 400
        except Exception:  # noqa: BLE001 - any failure is "not ready"
            return False
