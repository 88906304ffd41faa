"""File sink: rotating JSONL, one structured-mode CloudEvent (JSON format) per line.

URL: `file:///abs/path/events.jsonl?max_bytes=104857600&backups=5&fsync=false`
(`file://relative/path` works too). Bodies that are bytes are written as `data_base64`,
so they stay byte-exact. Rotation as logging's RotatingFileHandler: `events.jsonl` →
`events.jsonl.1` → ... → `.<backups>` (the oldest is deleted).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qsl, unquote, urlsplit

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .base import Sink, SinkConfigError, SinkError


class FileSinkConfig(BaseModel):
    """Options of a `file://` sink."""

    model_config = ConfigDict(extra="forbid")
    path: Path
    max_bytes: int = Field(default=100 * 1024 * 1024, ge=1, description="Rotate once the file would grow past this.")
    backups: int = Field(default=5, ge=0, description="Rotated files kept.")
    fsync: bool = Field(default=False, description="fsync after each batch.")

    @classmethod
    def from_url(cls, url: str) -> FileSinkConfig:
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise SinkConfigError(f"file sink URL {url!r}: no path")
        try:
            return cls.model_validate({"path": path, **dict(parse_qsl(parts.query))})
        except ValidationError as exc:
            raise SinkConfigError(f"file sink URL {url!r}: {_explain(exc)}") from None


def _explain(exc: ValidationError) -> str:
    return "; ".join(f"option {'.'.join(map(str, e['loc']))!r}: {e['msg']}" for e in exc.errors())


class FileSink(Sink):
    """Appends events as JSON lines to a size-rotated file (I/O in its own thread)."""

    def __init__(self, config: FileSinkConfig):
        self.config = config
        self.name = f"file:{config.path.name}"
        self._format = JSONFormat()
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"sink-{self.name}")
        self._fh: BinaryIO | None = None

    async def send_batch(self, events: Sequence[CloudEvent]) -> None:
        lines = b"".join(self._format.write(e) + b"\n" for e in events)
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, self._write, lines)
        except OSError as exc:
            raise SinkError(f"{self.name}: {exc}") from exc

    def _write(self, lines: bytes) -> None:
        path = self.config.path
        if self._fh is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "ab")
        fh = self._fh
        if fh.tell() and fh.tell() + len(lines) > self.config.max_bytes:
            fh = self._rotate(fh)
        fh.write(lines)
        fh.flush()
        if self.config.fsync:
            os.fsync(fh.fileno())

    def _rotate(self, fh: BinaryIO) -> BinaryIO:
        """Close the full file, shift the backups, and open a new one (returned and kept)."""
        path, n = self.config.path, self.config.backups
        fh.close()
        if n == 0:
            path.unlink(missing_ok=True)
        else:
            Path(f"{path}.{n}").unlink(missing_ok=True)
            for i in range(n - 1, 0, -1):
                if Path(f"{path}.{i}").exists():
                    os.replace(f"{path}.{i}", f"{path}.{i + 1}")
            os.replace(path, f"{path}.1")
        self._fh = open(path, "ab")
        return self._fh

    async def close(self) -> None:
        def _close() -> None:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

        await asyncio.get_running_loop().run_in_executor(self._io, _close)
        self._io.shutdown(wait=False)
