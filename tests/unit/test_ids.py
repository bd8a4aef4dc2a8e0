"""Ids are UUIDs of version 7: unique, and ordered by the millisecond they were made in."""

from __future__ import annotations

import time
import uuid

from oms.adapters.clock import RandomIds


def test_ids_are_version_7_uuids_that_sort_by_creation_time() -> None:
    ids = RandomIds()
    earlier = [ids.new_id() for _ in range(1000)]
    time.sleep(0.002)
    later = ids.new_id()

    parsed = uuid.UUID(later)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert str(parsed) == later
    assert len(set(earlier)) == len(earlier)
    assert max(earlier) < later
    assert abs((parsed.int >> 80) - time.time_ns() // 1_000_000) < 60_000
