"""HTTP sink: each event POSTed in CloudEvents binary mode, as KServe's agent does.

URL: the receiver's `http(s)://` URL as is. Options the delivery adds (settings, not URL):
timeout, retries, backoff. Connections are pooled (one httpx.AsyncClient per sink, keep-
alive); events of a batch go out concurrently, up to `concurrency` at a time. Each event is
retried on connection errors, timeouts, 408, 429 and 5xx with exponential backoff; other
4xx answers are final (the receiver refuses the event) and reported as `rejected`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote, urlsplit

import httpx
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict, Field

from .base import Sink, SinkConfigError, SinkError, shown_url

log = logging.getLogger(__name__)
_RETRYABLE = {408, 425, 429}


class HttpSinkConfig(BaseModel):
    """Options of an `http(s)://` sink."""

    model_config = ConfigDict(extra="forbid")
    url: str
    timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=3, ge=0, description="Attempts after the first, per event.")
    backoff_s: float = Field(default=0.1, ge=0, description="First retry delay; doubles each retry.")
    backoff_max_s: float = Field(default=2.0, ge=0)
    concurrency: int = Field(default=16, ge=1, description="Requests in flight per sink.")
    ca_cert_file: str | None = Field(
        default=None, description="CA file for https: a name under CA_DIR or an absolute path (KServe's caCertFile)."
    )
    tls_skip_verify: bool = Field(default=False, description="No certificate verification (KServe's tlsSkipVerify).")
    header_encoding: Literal["raw", "percent"] = Field(
        default="raw", description="raw: attribute headers as sdk-go writes them; percent: the Python SDK's encoding."
    )

    @classmethod
    def from_url(cls, url: str, **options: object) -> HttpSinkConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SinkConfigError(f"http sink URL {shown_url(url)!r}: expected http(s)://host[:port]/path")
        return cls.model_validate({"url": url, **options})


CA_DIR = "/etc/tls/logger"  # where KServe's webhook mounts the logger's caBundle ConfigMap
RECORDED_TIME_HEADER = "ce-recordedtime"  # KServe's agent: when the event was sent (worker.go)
# what a header value may hold as is: visible ASCII, space and tab (RFC 9110 field-value, no obs-text)
_RAW_SAFE = frozenset(chr(c) for c in range(0x20, 0x7F)) | {"\t"}


def tls_verify(config: HttpSinkConfig) -> ssl.SSLContext | bool:
    """httpx's `verify` for an https sink, as KServe's agent sets up its transport: the CA
    file when it exists (TLS 1.2 at least), else the system's CAs with a warning; no
    verification at all when `tls_skip_verify` (said at start, once)."""
    if urlsplit(config.url).scheme != "https":
        return True
    if config.tls_skip_verify:
        log.warning("%s: TLS certificate verification is off (--logger-tls-skip-verify)", shown_url(config.url))
        return False
    if not config.ca_cert_file:
        return True
    path = config.ca_cert_file if os.path.isabs(config.ca_cert_file) else os.path.join(CA_DIR, config.ca_cert_file)
    if not os.path.isfile(path):
        if config.ca_cert_file != "service-ca.crt" or os.path.isdir(CA_DIR):  # the default, unmounted: quiet
            log.warning("%s: CA certificate %s not found; verifying with the system's CAs", shown_url(config.url), path)
        return True
    context = ssl.create_default_context(cafile=path)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def rfc3339(when: datetime) -> str:
    """`2026-01-02T03:04:05.123456Z`: what both SDKs write for a UTC time."""
    text = when.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _raw(value: str) -> str:
    """A header value as sdk-go sends it (no percent-encoding); only what a header cannot carry
    (control characters, non-ASCII) is percent-encoded."""
    if all(c in _RAW_SAFE for c in value):
        return value
    return "".join(c if c in _RAW_SAFE else quote(c, safe="") for c in value)


def binary_message(event: CloudEvent, encoding: str = "raw", recorded: datetime | None = None) -> ce_http.HTTPMessage:
    """The binary-mode HTTP message of `event` with `ce-recordedtime` (send time) added.

    `percent`: headers exactly as the cloudevents SDK's HTTP binding writes them
    (percent-encoded: `{%22Foo%22:[%22bar%22]}`). `raw`: as KServe's agent (sdk-go) writes
    them (`{"Foo":["bar"]}`), which is what Go receivers read: sdk-go does not decode
    (cloudevents/sdk-go#1331), nor do KServe's own tests (`handler_test.go`).
    """
    message = ce_http.to_binary_event(event)
    headers = message.headers
    if encoding == "raw":
        for name, value in event.get_attributes().items():
            if value is None or name == "datacontenttype":
                continue
            headers["ce-" + name] = rfc3339(value) if isinstance(value, datetime) else _raw(str(value))
    headers[RECORDED_TIME_HEADER] = rfc3339(recorded or datetime.now(UTC))
    return message


class HttpSink(Sink):
    """POSTs binary-mode CloudEvents to one URL with pooled connections and retries."""

    def __init__(self, config: HttpSinkConfig):
        self.config = config
        self.name = f"http:{urlsplit(config.url).netloc.rpartition('@')[2]}"  # never the userinfo: it names metrics
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            n = self.config.concurrency
            self._client = httpx.AsyncClient(
                timeout=self.config.timeout_s,
                limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
                verify=tls_verify(self.config),
            )
        return self._client

    async def send_batch(self, events: Sequence[CloudEvent]) -> None:
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one(event: CloudEvent) -> str | None:
            async with gate:
                return await self._post(event)

        outcomes = await asyncio.gather(*(one(e) for e in events))
        failed = [i for i, o in enumerate(outcomes) if o == "failed"]
        rejected = [i for i, o in enumerate(outcomes) if o == "rejected"]
        if failed or rejected:
            raise SinkError(
                f"{self.name}: {len(failed)} events failed, {len(rejected)} rejected of {len(events)}",
                failed=failed,
                rejected=rejected,
            )

    async def _post(self, event: CloudEvent) -> str | None:
        """None when delivered, else 'failed' (retry later) or 'rejected' (never)."""
        message = binary_message(event, self.config.header_encoding)
        delay = self.config.backoff_s
        for attempt in range(self.config.retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.backoff_max_s)
            try:
                resp = await self._http().post(self.config.url, headers=message.headers, content=message.body)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status_code < 300:
                return None
            reason = f"HTTP {resp.status_code}"
            if 400 <= resp.status_code < 500 and resp.status_code not in _RETRYABLE:
                log.warning("%s refused event %s: %s %s", self.name, event.get_id(), reason, resp.text[:200])
                return "rejected"
        log.debug(
            "%s: event %s failed after %d attempts: %s", self.name, event.get_id(), self.config.retries + 1, reason
        )
        return "failed"

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
