"""A disk spool for one sink: append-only segment files, fsync'd per written batch.

Files in the spool folder:
  `<id>.seg`  segments, read in id order; each starts with `MAGIC`, then frames of
              u32 payload length | u32 crc32 | payload (a `record` of one event).
  `cursor`    JSON {"segment": id, "offset": n}: where delivery got to; events before it
              were acknowledged by the sink.

Guarantees: an `append` returns after the data is fsync'd, so events survive a SIGKILL or
power loss from then on. Delivery is at least once: a crash between a sink's ack and the
cursor update replays that batch. A torn frame at a segment's end (crash mid-write) is cut
off on open. The spool never grows past `max_bytes`; a full spool drops by `policy`.

Every method does blocking file I/O: call them from one worker thread (the `Delivery` runs
each spool on its own single-thread executor), never from the event loop.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

MAGIC = b"ITSPOOL1"
_FRAME = struct.Struct("<II")
_FIRST_ID = 1_000_000_000  # room below for segments written in front (see `append(front=True)`)

FullPolicy = Literal["drop_newest", "drop_oldest"]


@dataclass
class _Segment:
    id: int
    size: int  # bytes on disk, MAGIC included
    count: int  # frames in the file

    @property
    def name(self) -> str:
        return f"{self.id:020d}.seg"


@dataclass(frozen=True)
class ReadToken:
    """Where the spool's cursor goes once the batch read with it is acknowledged."""

    segment: int
    offset: int
    count: int


@dataclass(frozen=True)
class AppendResult:
    written: int
    dropped: int


class Spool:
    """Segmented append-only spool of record bytes; see the module docstring."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        policy: FullPolicy = "drop_newest",
        segment_bytes: int = 16 * 1024 * 1024,
        fsync: bool = True,
    ):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.policy = policy
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 4 or 1))
        self.fsync = fsync
        self.path.mkdir(parents=True, exist_ok=True)
        self._segments: list[_Segment] = []
        self._writer = None  # open file of the last segment, while it takes appends
        self._cursor = (0, 0)  # (segment id, offset) of the next unread frame
        self._unread = 0
        self._open()

    # --- state ------------------------------------------------------------------------
    @property
    def bytes(self) -> int:
        """Bytes on disk in segments."""
        return sum(s.size for s in self._segments)

    @property
    def unread(self) -> int:
        """Events spooled and not yet acknowledged."""
        return self._unread

    def __len__(self) -> int:
        return self._unread

    # --- open / recover -------------------------------------------------------------
    def _open(self) -> None:
        for tmp in self.path.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        for file in sorted(self.path.glob("*.seg")):
            seg = self._recover(file)
            if seg is not None:
                self._segments.append(seg)
        cursor = self._load_cursor()
        if self._segments:
            first = self._segments[0]
            seg_id, offset = cursor if cursor else (first.id, len(MAGIC))
            if seg_id < first.id or not any(s.id == seg_id for s in self._segments):
                seg_id, offset = first.id, len(MAGIC)
            self._cursor = (seg_id, offset)
            self._unread = self._count_from(seg_id, offset)
            if self._unread:
                log.info("spool %s: %d events from a previous run to replay", self.path, self._unread)
        self._drop_consumed_segments()

    def _recover(self, file: Path) -> _Segment | None:
        """Validate a segment; cut a torn tail; None (and delete) if nothing usable."""
        try:
            seg_id = int(file.stem)
        except ValueError:
            log.warning("spool %s: ignoring unexpected file %s", self.path, file.name)
            return None
        data = file.read_bytes()
        if not data.startswith(MAGIC):
            log.warning("spool %s: %s is not a spool segment; moved aside", self.path, file.name)
            file.rename(file.with_suffix(".bad"))
            return None
        offset, count = len(MAGIC), 0
        while offset + _FRAME.size <= len(data):
            n, crc = _FRAME.unpack_from(data, offset)
            end = offset + _FRAME.size + n
            if end > len(data) or zlib.crc32(data[offset + _FRAME.size : end]) != crc:
                break
            offset, count = end, count + 1
        if offset != len(data):
            log.warning(
                "spool %s: %s had a torn tail of %d bytes (crash mid-write); cut off",
                self.path,
                file.name,
                len(data) - offset,
            )
            with open(file, "r+b") as fh:
                fh.truncate(offset)
                os.fsync(fh.fileno())
        if count == 0:
            file.unlink()
            return None
        return _Segment(seg_id, offset, count)

    def _count_from(self, seg_id: int, offset: int) -> int:
        total = 0
        for seg in self._segments:
            if seg.id > seg_id:
                total += seg.count
            elif seg.id == seg_id:
                total += self._frames_after(seg, offset)
        return total

    def _frames_after(self, seg: _Segment, offset: int) -> int:
        if offset <= len(MAGIC):
            return seg.count
        n = 0
        with open(self.path / seg.name, "rb") as fh:
            fh.seek(offset)
            while True:
                head = fh.read(_FRAME.size)
                if len(head) < _FRAME.size:
                    return n
                size, _ = _FRAME.unpack(head)
                fh.seek(size, os.SEEK_CUR)
                n += 1

    def _load_cursor(self) -> tuple[int, int] | None:
        try:
            raw = json.loads((self.path / "cursor").read_text())
            return int(raw["segment"]), int(raw["offset"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning(
                "spool %s: unreadable cursor; replaying from the first segment (duplicates possible)", self.path
            )
            return None

    def _save_cursor(self) -> None:
        # Not fsync'd: losing it (power loss) only replays an acknowledged batch again.
        tmp = self.path / "cursor.tmp"
        tmp.write_text(json.dumps({"segment": self._cursor[0], "offset": self._cursor[1]}))
        os.replace(tmp, self.path / "cursor")

    # --- append ---------------------------------------------------------------------
    def append(self, records: list[bytes], front: bool = False) -> AppendResult:
        """Write records (in order) and fsync. `front=True` puts them before everything
        unread: only allowed while nothing of the first segment has been read yet (the
        sender's failed in-memory batch, which is older than anything spilled meanwhile)."""
        frames = [_FRAME.pack(len(r), zlib.crc32(r)) + r for r in records]
        dropped = 0
        if self.policy == "drop_oldest":
            dropped += self._drop_oldest(sum(map(len, frames)))
        # drop_newest (or a batch bigger than the whole spool): keep the prefix that fits
        room = self.max_bytes - self.bytes - len(MAGIC)
        keep = 0
        for frame in frames:
            if len(frame) > room:
                break
            room -= len(frame)
            keep += 1
        dropped += len(frames) - keep
        frames = frames[:keep]
        if frames:
            if front and self._segments:
                self._write_front(frames)
            else:
                self._write_back(frames)
            self._unread += len(frames)
        return AppendResult(written=len(frames), dropped=dropped)

    def _drop_oldest(self, needed: int) -> int:
        """Delete whole oldest segments until `needed` bytes fit; events dropped."""
        dropped = 0
        while self._segments and self.bytes + needed + len(MAGIC) > self.max_bytes:
            seg = self._segments.pop(0)
            if self._cursor[0] == seg.id:
                unread = self._frames_after(seg, self._cursor[1])
            else:
                unread = seg.count
            if not self._segments and self._writer is not None:
                self._writer.close()
                self._writer = None
            (self.path / seg.name).unlink(missing_ok=True)
            self._unread -= unread
            dropped += unread
            self._cursor = (self._segments[0].id, len(MAGIC)) if self._segments else (0, 0)
        if dropped:
            self._save_cursor()
        return dropped

    def _write_back(self, frames: list[bytes]) -> None:
        last = self._segments[-1] if self._segments else None
        if last is None or self._writer is None or last.size >= self.segment_bytes:
            if self._writer is not None:
                self._writer.close()
            seg_id = last.id + 1 if last else _FIRST_ID
            last = _Segment(seg_id, len(MAGIC), 0)
            self._writer = open(self.path / last.name, "ab")
            self._writer.write(MAGIC)
            self._segments.append(last)
            if len(self._segments) == 1:
                self._cursor = (seg_id, len(MAGIC))
        self._writer.write(b"".join(frames))
        self._writer.flush()
        if self.fsync:
            os.fsync(self._writer.fileno())
        last.size += sum(map(len, frames))
        last.count += len(frames)

    def _write_front(self, frames: list[bytes]) -> None:
        first = self._segments[0]
        if self._cursor != (first.id, len(MAGIC)):  # should not happen; keep the events anyway
            log.warning("spool %s: front append after reading started; appending at the back", self.path)
            self._write_back(frames)
            return
        seg = _Segment(first.id - 1, len(MAGIC) + sum(map(len, frames)), len(frames))
        tmp = self.path / (seg.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + b"".join(frames))
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, self.path / seg.name)
        self._segments.insert(0, seg)
        self._cursor = (seg.id, len(MAGIC))
        self._save_cursor()

    # --- read / ack -----------------------------------------------------------------
    def read(self, max_events: int, max_bytes: int) -> tuple[list[bytes], ReadToken | None]:
        """Up to max_events records (at least one) from the cursor, within one segment."""
        seg_id, offset = self._cursor
        seg = next((s for s in self._segments if s.id == seg_id), None)
        if seg is None and self._unread and self._segments:  # cursor lost its segment: resume at the first
            seg = self._segments[0]
            seg_id, offset = self._cursor = (seg.id, len(MAGIC))
        if seg is None or self._unread == 0:
            return [], None
        if offset >= seg.size:
            return [], ReadToken(seg.id, offset, 0)  # fully read; the ack moves on
        out: list[bytes] = []
        size = 0
        with open(self.path / seg.name, "rb") as fh:
            fh.seek(offset)
            buf = fh.read(min(seg.size - offset, max(max_bytes, 1 << 20)))
        pos = 0
        while pos + _FRAME.size <= len(buf) and len(out) < max_events:
            n, _ = _FRAME.unpack_from(buf, pos)
            if pos + _FRAME.size + n > len(buf):
                if out:
                    break
                with open(self.path / seg.name, "rb") as fh:  # one record bigger than the read
                    fh.seek(offset + pos + _FRAME.size)
                    out.append(fh.read(n))
                pos += _FRAME.size + n
                break
            out.append(buf[pos + _FRAME.size : pos + _FRAME.size + n])
            pos += _FRAME.size + n
            size += n
            if size >= max_bytes:
                break
        return out, ReadToken(seg.id, offset + pos, len(out))

    def ack(self, token: ReadToken) -> None:
        """The sink took everything read up to `token`: move the cursor, free segments."""
        if not any(s.id == token.segment for s in self._segments) or token.segment != self._cursor[0]:
            return  # its segment was dropped meanwhile (drop_oldest)
        self._cursor = (token.segment, token.offset)
        self._unread = max(0, self._unread - token.count)
        self._drop_consumed_segments()
        self._save_cursor()

    def _drop_consumed_segments(self) -> None:
        while self._segments:
            seg = self._segments[0]
            if self._cursor[0] != seg.id or self._cursor[1] < seg.size:
                break
            if seg is self._segments[-1] and self._writer is not None:
                self._writer.close()
                self._writer = None
            (self.path / seg.name).unlink(missing_ok=True)
            self._segments.pop(0)
            self._cursor = (self._segments[0].id, len(MAGIC)) if self._segments else (0, 0)
        if not self._segments:
            self._unread = 0
            (self.path / "cursor").unlink(missing_ok=True)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
