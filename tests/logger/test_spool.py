"""The disk spool on its own: order across segments, reopen, torn tails, full-spool policies."""

from __future__ import annotations

from pathlib import Path

import pytest
from delivery_fixtures import BINARY_BODY, make_event

from infertap.logger.delivery import record
from infertap.logger.delivery.spool import Spool

pytestmark = pytest.mark.fast  # starts no process (make test-fast)


def recs(a: int, b: int) -> list[bytes]:
    return [f"rec-{i:05d}".encode() * 10 for i in range(a, b)]


def drain(spool: Spool, batch: int = 7) -> list[bytes]:
    out = []
    while True:
        got, token = spool.read(batch, 1 << 20)
        if token is None:
            return out
        out.extend(got)
        spool.ack(token)


def test_order_across_segments_and_cleanup(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    for a in range(0, 300, 50):
        assert spool.append(recs(a, a + 50)).written == 50
    assert len(list(tmp_path.glob("*.seg"))) > 3 and spool.unread == 300
    assert drain(spool) == recs(0, 300)
    assert spool.unread == 0 and not list(tmp_path.glob("*.seg"))


def test_reopen_resumes_after_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    spool.append(recs(0, 100))
    got, token = spool.read(30, 1 << 20)
    spool.ack(token)
    spool.read(30, 1 << 20)  # read, never acknowledged: must come again
    # no close(): as after a crash
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    assert again.unread == 70
    assert drain(again) == recs(30, 100)


def test_torn_tail_is_cut(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(recs(0, 10))
    seg = next(tmp_path.glob("*.seg"))
    with open(seg, "ab") as fh:  # a crash in the middle of the next write
        fh.write(b"\x40\x00\x00\x00\x01\x02half a frame")
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.unread == 10 and drain(again) == recs(0, 10)


def test_front_append_goes_before_spilled_events(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(recs(10, 20))
    spool.append(recs(0, 10), front=True)
    assert drain(spool) == recs(0, 20)


def test_drop_newest_keeps_what_fits(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=2000, segment_bytes=4096)
    first = spool.append(recs(0, 10))  # ~108 bytes per frame
    second = spool.append(recs(10, 40))
    assert first.dropped == 0 and second.dropped > 0 and first.written + second.written + second.dropped == 40
    assert spool.bytes <= 2000
    assert drain(spool) == recs(0, 10 + second.written)


def test_drop_oldest_frees_whole_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=8192, policy="drop_oldest", segment_bytes=2048)
    dropped = sum(spool.append(recs(a, a + 10)).dropped for a in range(0, 200, 10))
    assert dropped > 0 and spool.bytes <= 8192
    left = drain(spool)
    assert left == recs(200 - len(left), 200) and len(left) + dropped == 200  # the newest survive, in order


def test_record_round_trip_is_byte_exact() -> None:
    event = make_event(1, body=BINARY_BODY, response=True)
    back = record.decode(record.encode(event))
    assert back.get_data() == BINARY_BODY
    assert back.get_attributes() == event.get_attributes()
    from cloudevents.core.v1.event import CloudEvent

    for data in (None, "text body", {"instances": [[1, 2]]}):
        e = CloudEvent({"type": "t", "source": "s", "id": "x", "datacontenttype": "application/json"}, data)
        assert record.decode(record.encode(e)).get_data() == data
