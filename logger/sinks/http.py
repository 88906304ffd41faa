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
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict, Field

from .base import Sink, SinkConfigError, SinkError

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

    @classmethod
    def from_url(cls, url: str, **options: object) -> HttpSinkConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SinkConfigError(f"http sink URL {url!r}: expected http(s)://host[:port]/path")
        return cls(url=url, **options)


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
                timeout=self.config.timeout_s, limits=httpx.Limits(max_connections=n, max_keepalive_connections=n)
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
        message = ce_http.to_binary_event(event)
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
