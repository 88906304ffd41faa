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

A write the disk refuses (ENOSPC, EDQUOT, EIO...) is undone: the segment is cut back to
its last whole frame, so `bytes` always equals the segment bytes on disk, and `append`
reports the records it could not write (`AppendResult.unwritten`, `error`) instead of
raising: the caller keeps them and tries again later.

Privacy: the folder is made 0700 and must belong to this user (or root); files are 0600.
Events carry request and response bodies, and a folder another user controls could feed
forged events to the sink (issue 19). `private_dir` is the check.

Every method does blocking file I/O: call them from one worker thread (the `Delivery` runs
each spool on its own single-thread executor), never from the event loop.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

log = logging.getLogger(__name__)

_FILE_MODE = 0o600
_DIR_MODE = 0o700


class SpoolDirError(PermissionError):
    """A spool folder is not safe to use (owned by another user); the message says what to do."""


def private_dir(path: Path, trusted: Path | None = None) -> Path:
    """Make sure `path` and the folders between `trusted` and it are this user's own, 0700.

    Missing folders are created 0700; existing ones must belong to this user (or root, who
    could write anywhere anyway: a volume mounted for a non-root sidecar is root's), and are
    narrowed to 0700 when they are ours. `trusted` (default: `path`'s parent) is where the
    check starts; folders above it are not looked at. Raises `SpoolDirError`.
    """
    path = Path(path).absolute()
    trusted = Path(trusted).absolute() if trusted is not None else path.parent
    chain = [path, *path.parents]
    below = chain[: chain.index(trusted)] if trusted in chain else [path]
    for folder in reversed(below):
        try:
            folder.mkdir(mode=_DIR_MODE)
        except FileExistsError:
            pass
        except FileNotFoundError:  # a parent above `trusted` is missing: create it as mkdir -p would
            folder.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        _check_owner(folder)
    return path


def _check_owner(folder: Path) -> None:
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise SpoolDirError(f"spool folder {folder} is not a folder (a link or a file); set --spool-dir elsewhere")
    me = os.geteuid()
    if info.st_uid not in (me, 0):
        raise SpoolDirError(
            f"spool folder {folder} belongs to uid {info.st_uid}, not to this user (uid {me}): another user could "
            "read the events or plant forged ones; remove it or set --spool-dir to a folder of your own"
        )
    if info.st_uid == me and stat.S_IMODE(info.st_mode) != _DIR_MODE:
        os.chmod(folder, _DIR_MODE)


def _open_private(path: Path, flags: int) -> BinaryIO:
    """An unbuffered binary file created 0600: writes reach the OS at once, so a failure is
    seen where it happens and nothing is left in a buffer to be written later."""
    return open(os.open(path, flags | os.O_CREAT, _FILE_MODE), "ab" if flags & os.O_APPEND else "wb", buffering=0)


def _write_all(fh: BinaryIO, data: bytes) -> None:
    """Write all of `data` (a raw file may take part of it: a disk filling up mid-write)."""
    view = memoryview(data)
    while view:
        n = fh.write(view)
        if not n:
            raise OSError("the file took no bytes")
        view = view[n:]


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
    """What `append` did: records `written`, `dropped` (the full-spool policy), and
    `unwritten` (the first ones of the batch, kept by the policy but refused by the disk:
    `error` says why; none of them is in the spool)."""

    written: int
    dropped: int
    unwritten: int = 0
    error: OSError | None = None


class _Refused(Exception):
    """A write the disk refused after `written` whole frames had been kept."""

    def __init__(self, written: int, error: OSError):
        super().__init__(written, error)
        self.written, self.error = written, error


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
        private_dir(self.path)
        self._segments: list[_Segment] = []
        self._writer: BinaryIO | None = None  # open file of the last segment, while it takes appends
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
        if stat.S_IMODE(file.stat().st_mode) != _FILE_MODE:  # written by an older version: 0644
            os.chmod(file, _FILE_MODE)
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
        # Not fsync'd: losing it (power loss) only replays an acknowledged batch again. For
        # the same reason a full disk must not fail an ack: the old cursor stays.
        tmp = self.path / "cursor.tmp"
        try:
            with _open_private(tmp, os.O_WRONLY | os.O_TRUNC) as fh:
                _write_all(fh, json.dumps({"segment": self._cursor[0], "offset": self._cursor[1]}).encode())
            os.replace(tmp, self.path / "cursor")
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("spool %s: cursor not saved (%s); a restart may replay acknowledged events", self.path, exc)

    # --- append ---------------------------------------------------------------------
    def append(self, records: list[builtins.bytes], front: bool = False) -> AppendResult:
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
            try:
                if front and self._segments:
                    self._write_front(frames)
                else:
                    self._write_back(frames)
            except _Refused as refused:  # the disk took the first `written` frames only
                self._unread += refused.written
                unwritten = len(frames) - refused.written
                return AppendResult(refused.written, dropped, unwritten=unwritten, error=refused.error)
            except OSError as exc:  # the disk refused: nothing of the batch is in the spool
                return AppendResult(written=0, dropped=dropped, unwritten=len(frames), error=exc)
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

    def _write_back(self, frames: list[builtins.bytes]) -> None:
        """Append frames to the last segment (a new one when it is full). When the disk takes
        only part of them, the whole frames it took are kept (`_Refused` says how many)."""
        last = self._writable_segment()
        writer = self._writer
        assert writer is not None  # _writable_segment opened it
        data = b"".join(frames)
        try:
            _write_all(writer, data)
            if self.fsync:
                os.fsync(writer.fileno())
        except OSError as exc:
            raise _Refused(self._keep_whole_frames(last, frames), exc) from exc
        last.size += len(data)
        last.count += len(frames)

    def _keep_whole_frames(self, seg: _Segment, frames: list[builtins.bytes]) -> int:
        """After a failed write to `seg`: keep the frames that reached the file whole (cut
        the torn rest off, fsync), or undo the write; how many frames were kept."""
        writer = self._writer
        assert writer is not None  # the write that failed went to it; still open
        try:
            reached = os.fstat(writer.fileno()).st_size - seg.size
        except OSError:
            reached = 0
        kept = size = 0
        for frame in frames:
            if size + len(frame) > reached:
                break
            kept, size = kept + 1, size + len(frame)
        if kept:
            try:
                os.ftruncate(writer.fileno(), seg.size + size)
                if self.fsync:
                    os.fsync(writer.fileno())
            except OSError:
                kept = size = 0
        if not kept:
            self._undo_write(seg)
            return 0
        seg.size += size
        seg.count += kept
        return kept

    def _writable_segment(self) -> _Segment:
        """The segment appends go to, its writer open; a new segment starts with MAGIC."""
        last = self._segments[-1] if self._segments else None
        if last is not None and self._writer is not None and last.size < self.segment_bytes:
            return last
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        seg = _Segment(last.id + 1 if last else _FIRST_ID, 0, 0)
        self._writer = _open_private(self.path / seg.name, os.O_WRONLY | os.O_APPEND | os.O_EXCL)
        self._segments.append(seg)
        try:
            _write_all(self._writer, MAGIC)
        except OSError:
            self._undo_write(seg)
            raise
        seg.size = len(MAGIC)
        if len(self._segments) == 1:
            self._cursor = (seg.id, len(MAGIC))
        return seg

    def _undo_write(self, seg: _Segment) -> None:
        """Cut `seg` back to its last whole frame after a failed write (truncating needs no
        space); a segment without frames is removed. Keeps `bytes` == the bytes on disk."""
        writer = self._writer
        assert writer is not None  # called right after a failed write to it
        if seg.count == 0:
            writer.close()
            self._writer = None
            (self.path / seg.name).unlink(missing_ok=True)
            self._segments.remove(seg)
            if not self._segments:
                self._cursor = (0, 0)
            return
        try:
            os.ftruncate(writer.fileno(), seg.size)
        except OSError as exc:  # the reader stops at seg.size anyway; never append after the torn bytes
            log.warning("spool %s: could not cut %s back after a failed write: %s", self.path, seg.name, exc)
            writer.close()
            self._writer = None

    def _write_front(self, frames: list[builtins.bytes]) -> None:
        first = self._segments[0]
        if self._cursor != (first.id, len(MAGIC)):  # should not happen; keep the events anyway
            log.warning("spool %s: front append after reading started; appending at the back", self.path)
            self._write_back(frames)
            return
        seg = _Segment(first.id - 1, len(MAGIC) + sum(map(len, frames)), len(frames))
        tmp = self.path / (seg.name + ".tmp")
        try:
            with _open_private(tmp, os.O_WRONLY | os.O_TRUNC) as fh:
                _write_all(fh, MAGIC + b"".join(frames))
                if self.fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp, self.path / seg.name)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        self._segments.insert(0, seg)
        self._cursor = (seg.id, len(MAGIC))
        self._save_cursor()

    # --- read / ack -----------------------------------------------------------------
    def read(self, max_events: int, max_bytes: int) -> tuple[list[builtins.bytes], ReadToken | None]:
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
