"""infertap.sidecar.tap: event ids (random UUID4 strings from pooled os.urandom bytes)."""

from __future__ import annotations

import os
import uuid

from infertap.sidecar.tap import new_event_id


def test_event_ids_are_uuid4_strings_and_unique_across_pool_refills():
    ids = [new_event_id() for _ in range(5000)]  # ~20 refills of the 4 KiB pool
    assert len(set(ids)) == len(ids)
    for i in ids[:300]:
        u = uuid.UUID(i)
        assert str(u) == i and u.version == 4 and u.variant == uuid.RFC_4122


def test_a_forked_child_does_not_repeat_the_parents_ids():
    new_event_id()  # the pool holds unread bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next id and leave at once
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert uuid.UUID(child_id).version == 4 and child_id != new_event_id()
