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


def test_fulfillments_made_in_one_millisecond_get_distinct_payment_references() -> None:
    """Shipment and collection references identify a capture and an invoice within an order: a
    burst of time-ordered ids shares its leading characters, so no prefix of an id will do."""
    from types import SimpleNamespace

    from oms.services.fulfillment import collection_ref, shipment_ref

    ids = RandomIds()
    burst = [SimpleNamespace(id=ids.new_id()) for _ in range(1000)]
    assert len({shipment_ref(f) for f in burst}) == len(burst)  # type: ignore[arg-type]
    assert len({collection_ref(f) for f in burst}) == len(burst)  # type: ignore[arg-type]
    assert all(len(shipment_ref(f)) <= 64 for f in burst)  # type: ignore[arg-type]


def test_numbers_people_read_out_differ_for_ids_made_in_one_burst() -> None:
    from oms.services.orders import public_number

    ids = RandomIds()
    numbers = [public_number("RMA", ids.new_id()) for _ in range(1000)]
    assert len(set(numbers)) == len(numbers)
    assert all(len(number) == len("RMA-") + 10 for number in numbers)
