"""Snapshots applied set-based in SQL keep every rule of a count (issue 4, acceptance 4):
stale positions are reported and untouched, later movements are re-applied, the journal matches
on hand, a bad batch changes nothing, and the events are one summary plus threshold crossings."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, select

from oms.adapters.clock import ControlledClock
from oms.adapters.db.tables import inventory_positions, items, locations
from oms.bootstrap import Services, build_services
from oms.config import Settings
from oms.domain.inventory import SNAPSHOT_EVENT_POSITIONS, DeltaKind, StockLine, UnknownStock
from oms.services.ports import DeltaLine, FeedOutcome, SnapshotLine
from tests.inventory_support import a_location, an_item, network


def positions(services: Services, skus: list[str]) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (p.sku, p.location_code): (p.on_hand, p.blocked)
        for sku in skus
        for p in services.inventory.item_availability(sku).positions
    }


def events_after(services: Services, position: int) -> list:  # type: ignore[type-arg]
    return services.events.read(after=position, limit=1000)


def last_position(services: Services) -> int:
    found = services.events.read(limit=1000)
    return found[-1].position if found else 0


@pytest.mark.postgres
def test_a_batch_mixes_stale_changed_unchanged_and_new_positions(
    services: Services, clock: ControlledClock
) -> None:
    skus = ["A", "B", "C", "D"]
    network(services, skus=skus)
    counted = clock.now()
    clock.advance(timedelta(minutes=20))
    services.inventory.apply_snapshot(
        [SnapshotLine("A", "DC-EAST", 10), SnapshotLine("B", "DC-EAST", 10)],
        as_of=counted,
        source="wms",
    )
    # C was counted later than the batch below: its line is stale.
    services.inventory.apply_snapshot(
        [SnapshotLine("C", "DC-EAST", 7)], as_of=counted + timedelta(minutes=10), source="wms"
    )
    # After the count below (as of +5 min) the till sold 2 of A: re-applied on top of it.
    services.inventory.apply_deltas(
        [
            DeltaLine(
                source="pos",
                message_id="sale-1",
                sku="A",
                location_code="DC-EAST",
                kind=DeltaKind.SALE,
                quantity=2,
                occurred_at=counted + timedelta(minutes=6),
            )
        ]
    )
    start = last_position(services)

    outcome = services.inventory.apply_snapshot(
        [
            SnapshotLine("A", "DC-EAST", 4),  # changed: 4 counted, minus the later sale
            SnapshotLine("B", "DC-EAST", 10),  # unchanged
            SnapshotLine("C", "DC-EAST", 99),  # stale
            SnapshotLine("D", "DC-EAST", 5, blocked=1),  # new position
        ],
        as_of=counted + timedelta(minutes=5),
        source="wms",
    )

    assert (outcome.applied, outcome.unchanged) == (2, 1)
    assert [(s["sku"], s["location"]) for s in outcome.stale] == [("C", "DC-EAST")]
    assert outcome.stale[0]["last_applied_as_of"] == (counted + timedelta(minutes=10)).isoformat()
    assert outcome.raised == {"D"}
    assert positions(services, skus) == {
        ("A", "DC-EAST"): (2, 0),
        ("B", "DC-EAST"): (10, 0),
        ("C", "DC-EAST"): (7, 0),
        ("D", "DC-EAST"): (5, 1),
    }
    # The journal explains every on-hand figure.
    with services.uow(read_only=True) as uow:
        totals = uow.inventory.movement_totals(skus)
    assert totals == {
        ("A", "DC-EAST"): 2,
        ("B", "DC-EAST"): 10,
        ("C", "DC-EAST"): 7,
        ("D", "DC-EAST"): 5,
    }

    events = events_after(services, start)
    summaries = [e for e in events if e.type == "inventory.changed"]
    assert len(summaries) == 1
    summary = summaries[0].data
    assert summary["reason"] == "snapshot" and summary["source"] == "wms"
    assert (summary["part"], summary["parts"], summary["count"]) == (1, 1, 2)
    rows = [dict(zip(summary["fields"], row, strict=True)) for row in summary["positions"]]
    assert rows == [
        {
            "sku": "A",
            "location": "DC-EAST",
            "on_hand": 2,
            "blocked": 0,
            "atp": 2,
            "previous_atp": 8,
        },
        {
            "sku": "D",
            "location": "DC-EAST",
            "on_hand": 5,
            "blocked": 1,
            "atp": 4,
            "previous_atp": 0,
        },
    ]
    # A fell from 8 to 2 available (threshold 3): one low-stock event, nothing else.
    crossed = [(e.type, e.data) for e in events if e.type.startswith("availability.")]
    assert crossed == [
        ("availability.low", {"sku": "A", "location": "DC-EAST", "atp": 2, "threshold": 3})
    ]


@pytest.mark.postgres
def test_a_count_that_empties_a_position_says_it_is_out(services: Services) -> None:
    network(services)
    services.inventory.apply_snapshot(
        [SnapshotLine("LAMP-01", "DC-EAST", 6)], as_of=services.clock.now(), source="wms"
    )
    services.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 2)])
    start = last_position(services)

    services.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    services.inventory.apply_snapshot(
        [SnapshotLine("LAMP-01", "DC-EAST", 2)], as_of=services.clock.now(), source="wms"
    )

    events = events_after(services, start)
    assert [e.type for e in events] == ["inventory.changed", "availability.out"]
    assert events[0].data["positions"] == [["LAMP-01", "DC-EAST", 2, 0, 0, 4]]
    assert events[1].subject == "inventory/LAMP-01@DC-EAST"


@pytest.mark.postgres
def test_a_batch_with_an_unknown_sku_changes_nothing(services: Services) -> None:
    network(services, skus=["A", "B"])
    start = last_position(services)

    with pytest.raises(UnknownStock) as refused:
        services.inventory.apply_snapshot(
            [
                SnapshotLine("A", "DC-EAST", 5),
                SnapshotLine("NOPE", "DC-EAST", 5),
                SnapshotLine("B", "DC-NOWHERE", 5),
            ],
            as_of=services.clock.now(),
            source="wms",
        )

    assert refused.value.extensions["skus"] == ["NOPE"]
    assert refused.value.extensions["locations"] == ["DC-NOWHERE"]
    assert positions(services, ["A", "B"]) == {}
    assert events_after(services, start) == []
    # The staging table is empty for the next batch on the same connection.
    outcome = services.inventory.apply_snapshot(
        [SnapshotLine("A", "DC-EAST", 5)], as_of=services.clock.now(), source="wms"
    )
    assert (outcome.applied, outcome.unchanged, outcome.stale) == (1, 0, [])


@pytest.mark.postgres
def test_sequences_decide_per_position_in_one_batch(services: Services) -> None:
    network(services, skus=["A", "B"])
    now = services.clock.now()
    services.inventory.apply_snapshot(
        [SnapshotLine("A", "DC-EAST", 5)], as_of=now, source="erp", sequence=10
    )
    services.inventory.apply_snapshot([SnapshotLine("B", "DC-EAST", 5)], as_of=now, source="erp")

    # Sequence 9 is older than A's 10; B has no sequence, so its time decides (same: stale).
    outcome = services.inventory.apply_snapshot(
        [SnapshotLine("A", "DC-EAST", 1), SnapshotLine("B", "DC-EAST", 1)],
        as_of=now,
        source="erp",
        sequence=9,
    )
    assert sorted(s["sku"] for s in outcome.stale) == ["A", "B"]
    assert outcome.stale[0]["last_applied_sequence"] == 10
    later = services.inventory.apply_snapshot(
        [SnapshotLine("A", "DC-EAST", 1), SnapshotLine("B", "DC-EAST", 1)],
        as_of=now + timedelta(seconds=1),
        source="erp",
        sequence=11,
    )
    assert (later.applied, later.stale) == (2, [])
    assert positions(services, ["A", "B"]) == {("A", "DC-EAST"): (1, 0), ("B", "DC-EAST"): (1, 0)}


def test_a_big_count_emits_its_summary_in_parts(services: Services) -> None:
    services.inventory.create_location(a_location("DC-EAST"))
    skus = [f"S{n:05d}" for n in range(SNAPSHOT_EVENT_POSITIONS + 5)]
    services.inventory.import_items([an_item(sku) for sku in skus])
    start = last_position(services)

    summary = services.inventory.import_stock(
        [{"sku": sku, "location": "DC-EAST", "on_hand": 50} for sku in skus],
        source="wms",
        chunk_size=len(skus),
    )

    assert (summary.applied, summary.unchanged, summary.stale) == (len(skus), 0, [])
    events = events_after(services, start)
    assert [e.type for e in events] == ["inventory.changed", "inventory.changed"]
    assert [(e.data["part"], e.data["parts"], e.data["count"]) for e in events] == [
        (1, 2, SNAPSHOT_EVENT_POSITIONS),
        (2, 2, 5),
    ]
    listed = [row[0] for e in events for row in e.data["positions"]]
    assert listed == skus


def test_a_position_another_transaction_creates_meanwhile_is_counted_not_lost(
    postgres_engine: Engine,
) -> None:
    """PostgreSQL: a count finds no position, another transaction creates it before the count
    inserts it; the count waits for that transaction, then counts the position it made."""
    clock = ControlledClock()
    url = postgres_engine.url.render_as_string(hide_password=False)
    services = build_services(Settings(database_url=url), clock=clock, engine=postgres_engine)
    network(services, skus=["A"])
    outcomes: list[FeedOutcome] = []
    with postgres_engine.connect() as other:
        item_id = other.scalar(select(items.c.id).where(items.c.sku == "A"))
        location_id = other.scalar(select(locations.c.id).where(locations.c.code == "DC-EAST"))
        other.execute(
            insert(inventory_positions).values(
                item_id=item_id,
                location_id=location_id,
                on_hand=7,
                allocated=0,
                reserved=0,
                blocked=0,
                safety_stock=0,
                safety_stock_set=False,
                updated_at=clock.now(),
            )
        )
        count = threading.Thread(
            target=lambda: outcomes.append(
                services.inventory.apply_snapshot(
                    [SnapshotLine("A", "DC-EAST", 5)], as_of=clock.now(), source="wms"
                )
            )
        )
        count.start()
        time.sleep(0.5)
        assert count.is_alive()  # waiting for the other transaction's position
        other.commit()
    count.join(timeout=10)

    assert [(o.applied, o.unchanged, o.stale) for o in outcomes] == [(1, 0, [])]
    assert positions(services, ["A"]) == {("A", "DC-EAST"): (5, 0)}
    with services.uow() as uow:
        assert uow.inventory.movement_totals(["A"]) == {("A", "DC-EAST"): -2}
