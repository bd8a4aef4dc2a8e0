"""Capacity, safety stock defaults, supply and location status through the services."""

from __future__ import annotations

from datetime import date

import pytest

from oms.bootstrap import Services
from oms.domain.inventory import InsufficientStock, StockLine, SupplyLine
from oms.domain.locations import CapacityExhausted, LocationType, LocationUnavailable
from oms.domain.promising import DeliveryMethod
from oms.services.inventory import BasketLine
from tests.inventory_support import a_location, atp, network, stock


@pytest.mark.postgres
def test_daily_capacity_is_consumed_atomically_and_hides_a_full_location(
    services: Services,
) -> None:
    network(services, locations=[a_location("DC-EAST", daily_capacity=2)])
    stock(services, "LAMP-01", at="DC-EAST", on_hand=5)
    today = services.clock.now().date()
    with services.uow() as uow:
        assert uow.locations.consume_capacity("DC-EAST", on=today) == 1
        assert uow.locations.consume_capacity("DC-EAST", on=today) == 0
        with pytest.raises(CapacityExhausted):
            uow.locations.consume_capacity("DC-EAST", on=today)
        uow.commit()
    basket = services.inventory.basket_availability(
        [BasketLine("LAMP-01", 1)], method=DeliveryMethod.SHIP
    )
    assert basket.fulfillable is False
    with services.uow() as uow:
        uow.locations.release_capacity("DC-EAST", on=today)
        uow.commit()
    assert services.inventory.basket_availability(
        [BasketLine("LAMP-01", 1)], method=DeliveryMethod.SHIP
    ).fulfillable


def test_safety_stock_defaults_per_location_type_and_per_position(services: Services) -> None:
    network(services, locations=[a_location("S1", type="store")])
    stock(services, "LAMP-01", at="S1", on_hand=10)
    assert atp(services, "LAMP-01", "S1") == 8  # the store default keeps 2 back

    assert services.inventory.set_safety_stock_default(LocationType.STORE, 4) == 1
    assert atp(services, "LAMP-01", "S1") == 6
    services.inventory.set_safety_stock("LAMP-01", "S1", quantity=0)
    services.inventory.set_safety_stock_default(LocationType.STORE, 5)
    assert atp(services, "LAMP-01", "S1") == 10  # its own value wins over the default
    services.inventory.set_safety_stock("LAMP-01", "S1", quantity=None)
    assert atp(services, "LAMP-01", "S1") == 5


def test_an_offline_location_fulfills_nothing(services: Services) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=5)
    services.inventory.update_location("DC-EAST", {"status": "offline"})
    with pytest.raises(LocationUnavailable):
        services.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 1)])
    assert not services.inventory.basket_availability(
        [BasketLine("LAMP-01", 1)], method=DeliveryMethod.SHIP
    ).fulfillable


def test_supply_shows_in_transit_and_future_purchase_orders(services: Services) -> None:
    network(services)
    services.inventory.add_supply(
        [
            SupplyLine(
                "PO-1", "purchase_order", "LAMP-01", "DC-EAST", 40, date(2026, 2, 1), "open"
            ),
            SupplyLine("TR-7", "transfer", "LAMP-01", "DC-EAST", 6, date(2026, 1, 7), "in_transit"),
        ]
    )
    stock(services, "LAMP-01", at="DC-EAST", on_hand=1)
    found = services.inventory.item_availability("LAMP-01")
    assert [s.reference for s in found.supply] == ["TR-7", "PO-1"]
    assert found.positions[0].in_transit == 6
    assert found.total_atp == 1  # supply is promised later, never counted as ATP now
    with pytest.raises(InsufficientStock):
        services.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 2)])
