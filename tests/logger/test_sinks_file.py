"""File sink: structured-mode JSON lines, byte-exact bodies, rotation by size."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cloudevents.core.formats.json import JSONFormat
from delivery_fixtures import BINARY_BODY, make_event

from infertap.logger.sinks import SinkConfigError, build_sink

pytestmark = pytest.mark.fast  # starts no process (make test-fast)


def test_file_sink_rotates_and_keeps_every_event(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    sink = build_sink(f"file://{path}?max_bytes=20000&backups=20")
    events = [make_event(i) for i in range(60)]  # ~2 KB per line: several rotations

    async def send() -> None:
        for start in range(0, 60, 5):
            await sink.send_batch(events[start : start + 5])
        await sink.close()

    asyncio.run(send())
    files = sorted(path.parent.iterdir())
    assert len(files) > 3 and (path.parent / "events.jsonl.1").exists()
    assert all(f.stat().st_size <= 20000 for f in files)
    fmt = JSONFormat()
    read = [fmt.read(None, line) for f in files for line in f.read_bytes().splitlines()]
    assert sorted(e.get_id() for e in read) == [e.get_id() for e in events]
    one = next(e for e in read if e.get_id() == "ev-000007")
    assert one.get_data() == BINARY_BODY and one.get_extension("inferenceservicename") == "iris"


def test_file_sink_drops_oldest_backup(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = build_sink(f"file://{path}?max_bytes=3000&backups=2")

    async def send() -> None:
        for i in range(10):
            await sink.send_batch([make_event(i)])
        await sink.close()

    asyncio.run(send())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    last = JSONFormat().read(None, path.read_bytes().splitlines()[-1])
    assert last.get_id() == "ev-000009"


def test_bad_file_option(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError, match="option 'max_bytes'"):
        build_sink(f"file://{tmp_path}/x.jsonl?max_bytes=lots")
