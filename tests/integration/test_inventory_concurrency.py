"""No oversell under concurrency: OS processes race for the last units (acceptance 2)."""

from __future__ import annotations

import multiprocessing
import queue
from typing import Any

import pytest

from oms.bootstrap import Services
from oms.domain.access import Role
from oms.services.ports import SnapshotLine
from tests.inventory_support import a_location, an_item, race_for_stock

PROCESSES = 10
UNITS = 7


@pytest.mark.postgres
@pytest.mark.slow
def test_processes_racing_for_the_last_units_never_oversell(
    services: Services, database_url: str
) -> None:
    services.inventory.create_location(a_location("DC-EAST"))
    services.inventory.create_item(an_item("HOT-1"))
    services.inventory.apply_snapshot(
        [SnapshotLine("HOT-1", "DC-EAST", UNITS + 2)],
        as_of=services.clock.now(),
        source="test",
    )
    services.inventory.set_blocked("HOT-1", "DC-EAST", blocked=2, reason="damaged")
    key = services.access.create_key(name="race", role=Role.INTEGRATION).secret

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [
        context.Process(target=race_for_stock, args=(database_url, key, n, barrier, results))
        for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    outcomes: list[dict[str, Any]] = []
    try:
        for _ in workers:
            outcomes.extend(results.get(timeout=180))
    except queue.Empty:
        pytest.fail("a racing process did not report")
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert all(worker.exitcode == 0 for worker in workers)

    won = [o for o in outcomes if o["status"] == 201]
    lost = [o for o in outcomes if o["status"] != 201]
    assert len(won) == UNITS
    assert len(lost) == PROCESSES
    for loss in lost:
        assert loss["status"] == 409, loss
        assert loss["body"]["available"] == 0
        assert "1 x HOT-1 requested at DC-EAST but only 0 available" in loss["body"]["detail"]
        if loss["how"] == "reserve":
            assert loss["content_type"] == "application/problem+json"
            assert loss["body"]["type"] == "/problems/insufficient-stock"
            assert loss["body"]["sku"] == "HOT-1" and loss["body"]["location"] == "DC-EAST"
    position = services.inventory.item_availability("HOT-1").positions[0]
    assert position.reserved + position.allocated == UNITS
    assert position.reserved + position.allocated + position.blocked <= position.on_hand
    assert position.atp == 0
