"""Issue 19, finding 3: a full disk under the spool (ENOSPC) must not stop delivery for good.

The disk is a real 512 KiB tmpfs when this machine lets us mount one (root, CAP_SYS_ADMIN);
otherwise the spool's writes are capped in-process at the same size, failing with ENOSPC
after a partial write, as a filling disk does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from delivery_fixtures import HttpReceiver, make_event, wait_for
from prometheus_client import CollectorRegistry

from infertap.logger.delivery import build_delivery, spool
from infertap.logger.delivery.spool import Spool
from infertap.logger.metrics import DeliveryMetrics
from infertap.sidecar.settings import LoggerSettings

DISK_BYTES = 512 * 1024
BALLAST_BYTES = 384 * 1024  # leaves room for ~90 events; freed, room for the queue and more


class SmallDisk:
    """A folder on a 512 KiB disk; `fill()` takes most of it with a ballast file, `free()` frees it."""

    def __init__(self, path: Path, real: bool):
        self.path, self.real = path, real
        self.ballast = path / "ballast"

    def fill(self) -> None:
        self.ballast.write_bytes(b"\0" * BALLAST_BYTES)

    def free(self) -> None:
        self.ballast.unlink()

    def used(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


def _capped_write(disk: SmallDisk, write_all):
    """`spool._write_all` as on a disk of DISK_BYTES: a part written, then ENOSPC."""

    def write(fh, data: bytes) -> None:
        room = DISK_BYTES - disk.used()
        if len(data) > room:
            if room > 0:
                write_all(fh, data[:room])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_all(fh, data)

    return write


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    path = tmp_path / "disk"
    path.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES // 1024}k", "tmpfs", str(path)]
    # INFERTAP_TEST_NO_MOUNT=1 tries the in-process fallback where mounting works too
    mounted = (
        not os.environ.get("INFERTAP_TEST_NO_MOUNT") and subprocess.run(mount, capture_output=True).returncode == 0
    )
    disk = SmallDisk(path, real=mounted)
    if not mounted:
        monkeypatch.setattr(spool, "_write_all", _capped_write(disk, spool._write_all))
    try:
        yield disk
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def segment_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.seg"))


def test_a_refused_write_keeps_whole_frames_only_and_the_spool_takes_writes_again(small_disk: SmallDisk) -> None:
    small_disk.fill()
    s = Spool(small_disk.path / "spool", max_bytes=1 << 30, segment_bytes=1 << 20)
    records = [bytes([i % 256]) * 1500 for i in range(200)]
    written, refused = 0, None
    for i in range(0, len(records), 10):
        result = s.append(records[i : i + 10])
        written += result.written
        if result.error is not None:
            refused = result
            break
    assert refused is not None and refused.error.errno == errno.ENOSPC
    assert refused.written + refused.unwritten == 10  # the whole frames that fit are kept, the rest reported
    assert s.bytes == segment_bytes(s.path)  # the torn part of the refused batch is cut off
    assert s.append(records[written : written + 10]).unwritten == 10 and s.bytes == segment_bytes(s.path)
    small_disk.free()
    assert s.append(records[written : written + 10]).written == 10
    assert s.bytes == segment_bytes(s.path)
    got = []
    while True:
        batch, token = s.read(50, 1 << 20)
        if token is None:
            break
        got += batch
        s.ack(token)
    assert got == records[: written + 10]  # every record whole and in order: no torn frame inside


def test_full_disk_then_space_and_sink_come_back(small_disk: SmallDisk, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="infertap.logger.delivery")
    small_disk.fill()
    receiver = HttpReceiver()  # not started yet: the sink is down
    settings = LoggerSettings(
        log_url=[receiver.url],
        spool_dir=small_disk.path / "spool",
        inference_service="iris",
        queue_max_events=100,
        http_retries=0,
        retry_backoff_s=0.2,
        retry_backoff_max_s=0.5,
    )
    d = build_delivery(settings, DeliveryMetrics(CollectorRegistry()))
    worker = d.workers[0]

    def accounted() -> bool:
        return worker._spool.bytes == segment_bytes(worker._spool.path)

    async def scenario() -> int:
        await d.start()
        for i in range(600):  # the sink is down and the disk fills up
            d.submit(make_event(i))
            if i % 20 == 19:
                await asyncio.sleep(0.02)  # a steady trickle: the spiller keeps up until the disk is full
        await wait_for(lambda: worker.counts["dropped"] > 0 and worker._spool_error, what="the spool to be refused")
        assert worker.counts["spooled"] > 0 and accounted()
        spooled = worker.counts["spooled"]

        small_disk.free()  # space returns, the sink is still down: spooling resumes
        for i in range(600, 650):
            d.submit(make_event(i))
            await asyncio.sleep(0.001)
        await wait_for(lambda: worker.counts["spooled"] > spooled and worker._spool_error is None, what="spooling")
        assert accounted()

        with receiver:  # the sink comes back: everything not dropped arrives, live events too
            await wait_for(d.idle, what="the spool and queue to drain")
            for i in range(650, 700):
                d.submit(make_event(i))
            await wait_for(lambda: worker.counts["sent"] + worker.counts["dropped"] == 700, what="live events")
            await d.stop()
            return len({h["ce-id"] for h, _ in receiver.requests})

    received = asyncio.run(scenario())
    counts = worker.counts
    assert counts["sent"] + counts["dropped"] == 700 and received == counts["sent"]
    assert counts["dropped"] < 600  # what the queue held while the disk was full was delivered, not dropped
    text = caplog.text
    assert "ENOSPC: No space left on device" in text  # the real reason, in the spool line and the drop line
    assert "queue full and the spool cannot be written (ENOSPC" in text
    assert "spool cannot keep up" not in text
    assert "the spool takes writes again" in text
