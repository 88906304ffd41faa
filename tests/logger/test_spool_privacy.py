"""Issue 19, finding 8: spool folders are this user's own (0700), segments 0600, and a folder
another local user made first is refused instead of used (it could feed forged events)."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from delivery_fixtures import make_event
from prometheus_client import CollectorRegistry

from infertap.logger.delivery import build_delivery, default_spool_dir
from infertap.logger.delivery.spool import MAGIC, SpoolDirError, private_dir
from infertap.logger.metrics import DeliveryMetrics
from infertap.logger.sinks import SinkConfigError
from infertap.sidecar.settings import LoggerSettings

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def settings(spool_dir: Path | None) -> LoggerSettings:
    return LoggerSettings(
        log_url=["http://127.0.0.1:9/events"],  # nothing listens: every event is spooled
        spool_dir=spool_dir,
        inference_service="iris",
        http_retries=0,
        retry_backoff_s=0.2,
    )


async def spool_twenty(d) -> None:
    await d.start()
    for i in range(20):
        d.submit(make_event(i))
    worker = d.workers[0]
    while worker.counts["spooled"] < 20:
        await asyncio.sleep(0.05)
    await d.stop(flush_timeout=0.1)


def test_spool_folders_are_0700_and_segments_0600(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual umask: files would be 0644 without an explicit mode
    root = tmp_path / "spool"
    try:
        d = build_delivery(settings(root), DeliveryMetrics(CollectorRegistry()))
        asyncio.run(spool_twenty(d))
    finally:
        os.umask(old_umask)

    folder = d.workers[0].spool_dir
    assert mode(root) == 0o700 and mode(folder) == 0o700
    files = list(folder.iterdir())
    assert any(f.suffix == ".seg" for f in files)
    assert all(mode(f) == 0o600 for f in files), {f.name: oct(mode(f)) for f in files}


def test_a_loose_folder_of_our_own_is_narrowed_to_0700(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    private_dir(loose)
    assert mode(loose) == 0o700


@needs_root
def test_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / f"{1_000_000_000:020d}.seg").write_bytes(MAGIC)  # a forged segment waiting to be replayed
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(SpoolDirError, match="belongs to uid 65534"):
        private_dir(planted)
    with pytest.raises(SinkConfigError, match="set --spool-dir to a folder of your own"):
        build_delivery(settings(planted), DeliveryMetrics(CollectorRegistry()))


@needs_root
def test_a_sink_folder_of_another_user_inside_our_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    d = build_delivery(settings(root), DeliveryMetrics(CollectorRegistry()))
    folder = d.workers[0].spool_dir
    os.chown(folder, NOBODY, NOBODY)
    with pytest.raises(SinkConfigError, match="belongs to uid 65534"):
        build_delivery(settings(root), DeliveryMetrics(CollectorRegistry()))


def test_the_default_spool_is_per_user_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    d = build_delivery(settings(None), DeliveryMetrics(CollectorRegistry()))
    base = tmp_path / f"infertap-spool-{os.geteuid()}"
    assert d.spool_dir == default_spool_dir("iris") == base / "iris"
    assert mode(base) == 0o700 and mode(base / "iris") == 0o700


@needs_root
def test_a_default_root_made_first_by_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    hijack = tmp_path / f"infertap-spool-{os.geteuid()}"
    (hijack / "iris").mkdir(parents=True)
    for folder in (hijack, hijack / "iris"):
        os.chown(folder, NOBODY, NOBODY)
    with pytest.raises(SinkConfigError, match="belongs to uid 65534"):
        build_delivery(settings(None), DeliveryMetrics(CollectorRegistry()))


@needs_root
def test_the_sidecar_exits_2_with_a_sentence_on_a_foreign_spool_folder(tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    planted.mkdir()
    os.chown(planted, NOBODY, NOBODY)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "infertap.sidecar",
            "--port",
            "0",
            "--component-port",
            "9",
            "--log-url",
            f"file://{tmp_path / 'events.jsonl'}",
            "--spool-dir",
            str(planted),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"spool folder {planted} belongs to uid 65534" in done.stderr
    assert "Traceback" not in done.stderr
