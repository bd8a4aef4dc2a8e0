"""Feeds arrive late, twice and out of order: none of that may corrupt stock (acceptance 3)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services
from oms.domain.inventory import DeltaKind, StockLine
from oms.services.inventory import ImportRejected
from oms.services.ports import DeltaLine, SnapshotLine
from tests.inventory_support import a_location, atp, network, stock


def position(services: Services, sku: str = "LAMP-01", location: str = "DC-EAST"):  # type: ignore[no-untyped-def]
    return next(
        p
        for p in services.inventory.item_availability(sku).positions
        if p.location_code == location
    )


def a_delta(services: Services, message_id: str, kind: DeltaKind, quantity: int, **kw):  # type: ignore[no-untyped-def]
    return DeltaLine(
        source=kw.get("source", "pos"),
        message_id=message_id,
        sku=kw.get("sku", "LAMP-01"),
        location_code=kw.get("location", "DC-EAST"),
        kind=kind,
        quantity=quantity,
        occurred_at=kw.get("occurred_at", services.clock.now()),
        reason=kw.get("reason"),
    )


@pytest.mark.postgres
def test_a_stale_snapshot_changes_nothing_and_is_reported(
    services: Services, clock: ControlledClock
) -> None:
    network(services)
    counted_at = clock.now()
    stock(services, "LAMP-01", at="DC-EAST", on_hand=12, as_of=counted_at)
    events_before = len(services.events.read(limit=1000))

    outcome = services.inventory.apply_snapshot(
        [SnapshotLine("LAMP-01", "DC-EAST", 40)],
        as_of=counted_at - timedelta(minutes=5),
        source="wms",
    )

    assert outcome.applied == 0
    assert outcome.stale and outcome.stale[0]["sku"] == "LAMP-01"
    assert outcome.stale[0]["last_applied_as_of"] == counted_at.isoformat()
    assert position(services).on_hand == 12
    assert len(services.events.read(limit=1000)) == events_before


@pytest.mark.postgres
def test_snapshot_sequences_decide_over_timestamps(services: Services) -> None:
    network(services)
    now = services.clock.now()
    services.inventory.apply_snapshot(
        [SnapshotLine("LAMP-01", "DC-EAST", 5)], as_of=now, source="erp", sequence=10
    )
    old = services.inventory.apply_snapshot(
        [SnapshotLine("LAMP-01", "DC-EAST", 9)], as_of=now, source="erp", sequence=9
    )
    new = services.inventory.apply_snapshot(
        [SnapshotLine("LAMP-01", "DC-EAST", 7)], as_of=now, source="erp", sequence=11
    )
    assert (len(old.stale), new.applied) == (1, 1)
    assert position(services).on_hand == 7


@pytest.mark.postgres
def test_a_replayed_delta_changes_nothing_and_is_reported(services: Services) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=10)
    services.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    sale = a_delta(services, "till-7-0001", DeltaKind.SALE, 3, reason="POS sale")

    first = services.inventory.apply_deltas([sale])
    again = services.inventory.apply_deltas([sale])

    assert (first.applied, first.duplicates) == (1, [])
    assert again.applied == 0
    assert again.duplicates == [
        {"source": "pos", "message_id": "till-7-0001", "sku": "LAMP-01", "location": "DC-EAST"}
    ]
    assert position(services).on_hand == 7


@pytest.mark.postgres
def test_movements_after_the_count_are_not_lost_or_counted_twice(
    services: Services, clock: ControlledClock
) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=10, as_of=clock.now())
    counted_at = clock.advance(timedelta(minutes=10))
    clock.advance(timedelta(minutes=1))
    # After the store counted 8 at 09:10: an order took 2 (still on the shelf) and shipped 1,
    # and the till sold 1 more.
    services.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 2)])
    services.inventory.consume([StockLine("LAMP-01", "DC-EAST", 1)], reference="SHIP-1")
    services.inventory.apply_deltas([a_delta(services, "s-1", DeltaKind.SALE, 1)])
    clock.advance(timedelta(minutes=5))

    services.inventory.apply_snapshot(
        [SnapshotLine("LAMP-01", "DC-EAST", 8)], as_of=counted_at, source="store"
    )

    found = position(services)
    # 8 counted, minus the shipment and the sale after the count; the allocation is not
    # subtracted from on hand again (it is still allocated, and physically there).
    assert (found.on_hand, found.allocated, found.atp) == (6, 1, 5)


@pytest.mark.postgres
def test_a_delta_older_than_the_last_count_is_already_in_it(
    services: Services, clock: ControlledClock
) -> None:
    network(services)
    before_count = clock.now()
    clock.advance(timedelta(minutes=5))
    stock(services, "LAMP-01", at="DC-EAST", on_hand=10, as_of=clock.now())

    late = services.inventory.apply_deltas(
        [a_delta(services, "late-1", DeltaKind.SHRINK, 2, occurred_at=before_count)]
    )

    assert late.applied == 0 and late.superseded[0]["message_id"] == "late-1"
    assert position(services).on_hand == 10


def test_deltas_never_drive_on_hand_below_zero(services: Services) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=2)
    services.clock.advance(timedelta(seconds=1))  # type: ignore[attr-defined]
    services.inventory.apply_deltas(
        [
            a_delta(services, "r-1", DeltaKind.RECEIPT, 5),
            a_delta(services, "c-1", DeltaKind.COUNT_CORRECTION, -10, reason="recount"),
        ]
    )
    assert position(services).on_hand == 0
    totals = services.uow
    with totals(read_only=True) as uow:
        assert uow.inventory.movement_totals(["LAMP-01"]) == {("LAMP-01", "DC-EAST"): 0}


@pytest.mark.postgres
def test_an_import_with_bad_rows_is_rejected_whole_with_every_reason(
    services: Services, tmp_path: Path
) -> None:
    network(services, locations=[a_location("DC-EAST"), a_location("S1", type="store")])
    stock(services, "LAMP-01", at="DC-EAST", on_hand=1)
    file = tmp_path / "stock.csv"
    file.write_text(
        "sku,location,on_hand\n"
        "LAMP-01,DC-EAST,50\n"
        "LAMP-01,S1,-3\n"
        "NOPE-9,DC-EAST,2\n"
        ",DC-EAST,x\n"
        "LAMP-01,MOON,4\n"
    )

    with pytest.raises(ImportRejected) as rejected:
        services.inventory.import_file(file, source="wms")

    rows = rejected.value.extensions["rows"]
    assert [row["row"] for row in rows] == [2, 3, 4, 5]
    assert rows[0]["errors"] == [{"pointer": "#/on_hand", "detail": "must be >= 0"}]
    assert {e["pointer"] for e in rows[2]["errors"]} == {"#/sku", "#/on_hand"}
    assert "unknown SKU" in rows[1]["errors"][0]["detail"]
    assert "unknown location" in rows[3]["errors"][0]["detail"]
    assert atp(services, "LAMP-01", "DC-EAST") == 1


def test_a_valid_import_applies_every_row_with_progress(services: Services, tmp_path: Path) -> None:
    network(services, skus=["LAMP-01", "MUG-02"])
    file = tmp_path / "stock.json"
    file.write_text(
        '{"source": "wms", "positions": [{"sku": "LAMP-01", "location": "DC-EAST", '
        '"on_hand": 5}, {"sku": "MUG-02", "location": "DC-EAST", "on_hand": 7, "blocked": 2}]}'
    )
    seen: list[tuple[int, int]] = []

    summary = services.inventory.import_file(file, progress=lambda d, t: seen.append((d, t)))

    assert (summary.rows, summary.applied) == (2, 2)
    assert seen[-1] == (2, 2)
    assert atp(services, "MUG-02", "DC-EAST") == 5


def test_listeners_hear_which_skus_gained_stock_after_the_commit(services: Services) -> None:
    network(services, skus=["LAMP-01", "MUG-02"])
    stock(services, "MUG-02", at="DC-EAST", on_hand=5)
    heard: list[list[str]] = []
    services.inventory.on_stock_increase(lambda skus: heard.append(list(skus)))

    def broken(skus: object) -> None:
        raise RuntimeError("a listener bug must not undo the feed")

    services.inventory.on_stock_increase(broken)
    services.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    services.inventory.apply_deltas(
        [
            a_delta(services, "r-1", DeltaKind.RECEIPT, 4),
            a_delta(services, "s-1", DeltaKind.SALE, 1, sku="MUG-02"),
        ]
    )
    stock(services, "MUG-02", at="DC-EAST", on_hand=9)

    assert heard == [["LAMP-01"], ["MUG-02"]]
    assert position(services).on_hand == 4
