"""Stock through the services: allocation, holds with expiry, consumption, events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from oms.adapters.clock import ControlledClock
from oms.adapters.db.inventory import BULK_POSITIONS, BULK_POSITIONS_POSTGRES
from oms.bootstrap import Services
from oms.domain.inventory import (
    InsufficientStock,
    NotAllocated,
    ReservationNotActive,
    StockLine,
)
from oms.services.inventory import ReservationRequestLine
from oms.services.ports import SnapshotLine
from tests.inventory_support import a_location, atp, network, stock


@pytest.mark.postgres
def test_allocation_takes_stock_and_refuses_more_than_is_available(services: Services) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=10)

    services.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 7)])

    assert atp(services, "LAMP-01", "DC-EAST") == 3
    with pytest.raises(InsufficientStock) as refused:
        services.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 4)])
    assert refused.value.available == 3
    assert refused.value.extensions["location"] == "DC-EAST"
    assert atp(services, "LAMP-01", "DC-EAST") == 3


@pytest.mark.postgres
def test_a_basket_allocation_is_all_or_nothing(services: Services) -> None:
    network(services, skus=["LAMP-01", "MUG-02"])
    stock(services, "LAMP-01", at="DC-EAST", on_hand=5)
    stock(services, "MUG-02", at="DC-EAST", on_hand=1)

    with pytest.raises(InsufficientStock):
        services.inventory.allocate(
            [StockLine("LAMP-01", "DC-EAST", 2), StockLine("MUG-02", "DC-EAST", 2)]
        )

    assert atp(services, "LAMP-01", "DC-EAST") == 5
    assert atp(services, "MUG-02", "DC-EAST") == 1


def test_allocation_inside_another_unit_of_work(services: Services) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=4)
    with services.uow() as uow:
        uow.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 3)], at=services.clock.now())
        uow.rollback()
    assert atp(services, "LAMP-01", "DC-EAST") == 4
    with services.uow() as uow:
        uow.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 3)], at=services.clock.now())
        uow.commit()
    assert atp(services, "LAMP-01", "DC-EAST") == 1


@pytest.mark.postgres
def test_many_positions_are_allocated_and_given_back_in_bulk(services: Services) -> None:
    skus = [f"SKU-{n:03d}" for n in range(BULK_POSITIONS + 10)]
    network(services, skus=skus)
    services.inventory.apply_snapshot(
        [SnapshotLine(sku, "DC-EAST", 5) for sku in skus], as_of=services.clock.now(), source="t"
    )

    taken = services.inventory.allocate([StockLine(sku, "DC-EAST", 3) for sku in skus])
    given = services.inventory.deallocate([StockLine(sku, "DC-EAST", 2) for sku in skus])

    assert [(c.before.allocated, c.after.allocated) for c in taken] == [(0, 3)] * len(skus)
    assert [(c.before.allocated, c.after.allocated) for c in given] == [(3, 1)] * len(skus)
    assert {atp(services, sku, "DC-EAST") for sku in skus} == {4}
    # one position short: nothing is given back, and the refusal names it
    with pytest.raises(NotAllocated) as refused:
        services.inventory.deallocate(
            [StockLine(sku, "DC-EAST", 2 if sku == "SKU-007" else 1) for sku in skus]
        )
    assert refused.value.extensions["sku"] == "SKU-007"
    assert {atp(services, sku, "DC-EAST") for sku in skus} == {4}


@pytest.mark.postgres
@pytest.mark.parametrize("quantities", [(8, 3, 1), (9, 3, 1), (8, 4, 1), (1, 1, 2), (2, 2, 2)])
def test_a_few_positions_at_once_are_taken_as_one_at_a_time(
    services: Services, quantities: tuple[int, int, int]
) -> None:
    """From BULK_POSITIONS_POSTGRES positions on, PostgreSQL locks, checks and writes them in
    two statements: the same changes, and the same refusal, as a conditional UPDATE each (here
    through a channel buffer: 10 % and 1 unit, ATP 10/5/3 shows as 8/3/1)."""
    skus = ["LAMP-01", "MUG-02", "VASE-03"]
    network(services, skus=skus)
    for sku, on_hand in zip(skus, (10, 5, 3), strict=True):
        stock(services, sku, at="DC-EAST", on_hand=on_hand)
    services.inventory.set_channel_buffer("web", percent=10, units=1)
    lines = [StockLine(sku, "DC-EAST", q) for sku, q in zip(skus, quantities, strict=True)]
    assert len(lines) >= BULK_POSITIONS_POSTGRES
    one_at_a_time: list[tuple[int, int] | str] = []
    with services.uow() as uow:
        for line in lines:
            try:
                (change,) = uow.inventory.allocate([line], at=services.clock.now(), channel="web")
            except InsufficientStock as refused:
                one_at_a_time.append(str(refused.extensions["sku"]))
            else:
                one_at_a_time.append((change.before.allocated, change.after.allocated))
        uow.rollback()
    short = [found for found in one_at_a_time if isinstance(found, str)]
    if short:
        with pytest.raises(InsufficientStock) as refused:
            services.inventory.allocate(lines, channel="web")
        assert refused.value.extensions["sku"] == short[0]
        assert [atp(services, sku, "DC-EAST") for sku in skus] == [10, 5, 3]
    else:
        together = services.inventory.allocate(lines, channel="web")
        assert [(c.before.allocated, c.after.allocated) for c in together] == one_at_a_time
        assert [atp(services, sku, "DC-EAST") for sku in skus] == [
            on_hand - q for on_hand, q in zip((10, 5, 3), quantities, strict=True)
        ]


@pytest.mark.postgres
def test_shipping_consumes_on_hand_and_allocation(services: Services) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=5)
    services.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 2)])

    services.inventory.consume([StockLine("LAMP-01", "DC-EAST", 2)], reference="SHIP-1")

    position = services.inventory.item_availability("LAMP-01").positions[0]
    assert (position.on_hand, position.allocated, position.atp) == (3, 0, 3)
    with pytest.raises(NotAllocated):
        services.inventory.consume([StockLine("LAMP-01", "DC-EAST", 1)], reference="SHIP-2")
    with pytest.raises(NotAllocated):
        services.inventory.deallocate([StockLine("LAMP-01", "DC-EAST", 1)])


@pytest.mark.postgres
def test_expired_holds_never_count_even_before_the_worker_runs(
    services: Services, clock: ControlledClock
) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=5)
    hold = services.inventory.reserve(
        [ReservationRequestLine("LAMP-01", 4, "DC-EAST")],
        reference="cart-1",
        ttl=timedelta(minutes=10),
    )
    assert atp(services, "LAMP-01", "DC-EAST") == 1

    clock.advance(timedelta(minutes=10))

    assert atp(services, "LAMP-01", "DC-EAST") == 5
    assert services.inventory.get_reservation(hold.id)[1] == "expired"
    with pytest.raises(ReservationNotActive):
        services.inventory.confirm_reservation(hold.id)
    # A writer frees the expired hold itself before taking the stock.
    services.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 5)])
    assert atp(services, "LAMP-01", "DC-EAST") == 0
    assert services.inventory.release_expired_reservations() == 1
    position = services.inventory.item_availability("LAMP-01").positions[0]
    assert (position.reserved, position.allocated) == (0, 5)


@pytest.mark.postgres
def test_a_confirmed_hold_becomes_an_allocation(services: Services) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=5)
    hold = services.inventory.reserve([ReservationRequestLine("LAMP-01", 2)], reference="cart-2")
    assert hold.lines[0].location_code == "DC-EAST"

    lines = services.inventory.confirm_reservation(hold.id)

    assert lines == [StockLine("LAMP-01", "DC-EAST", 2)]
    position = services.inventory.item_availability("LAMP-01").positions[0]
    assert (position.reserved, position.allocated, position.atp) == (0, 2, 3)
    with pytest.raises(ReservationNotActive):
        services.inventory.release_reservation(hold.id)


def test_network_hold_spreads_over_locations(services: Services) -> None:
    network(
        services,
        locations=[a_location("DC-EAST"), a_location("DC-WEST", latitude=34.05, longitude=-118.24)],
    )
    stock(services, "LAMP-01", at="DC-EAST", on_hand=3)
    stock(services, "LAMP-01", at="DC-WEST", on_hand=3)

    hold = services.inventory.reserve([ReservationRequestLine("LAMP-01", 5)], reference="cart-3")

    assert sum(line.quantity for line in hold.lines) == 5
    assert {line.location_code for line in hold.lines} == {"DC-EAST", "DC-WEST"}
    with pytest.raises(InsufficientStock) as refused:
        services.inventory.reserve([ReservationRequestLine("LAMP-01", 2)], reference="cart-4")
    assert refused.value.available == 1
    assert refused.value.location is None


@pytest.mark.postgres
def test_changes_emit_inventory_and_threshold_events(services: Services) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=10)
    services.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 8)])
    services.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 2)])

    events = services.events.read(limit=100)
    types = [event.type for event in events]
    assert types.count("inventory.changed") == 3
    low = next(event for event in events if event.type == "availability.low")
    assert low.data == {"sku": "LAMP-01", "location": "DC-EAST", "atp": 2, "threshold": 3}
    out = next(event for event in events if event.type == "availability.out")
    assert out.subject == "inventory/LAMP-01@DC-EAST"
