"""One-line holds at a location: the fast way (one statement on PostgreSQL) says and records
exactly what the general way does."""

from __future__ import annotations

from datetime import timedelta

import pytest

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services
from oms.domain.inventory import InsufficientStock, Position, PositionChange, change_events
from oms.domain.locations import LocationUnavailable
from oms.services.inventory import ReservationRequestLine
from tests.inventory_support import a_location, atp, network, stock


def hold(services: Services, quantity: int, *, channel: str = "web", ttl_minutes: int = 15) -> str:
    reservation = services.inventory.reserve(
        [ReservationRequestLine("LAMP-01", quantity, "DC-EAST")],
        reference="cart",
        channel=channel,
        ttl=timedelta(minutes=ttl_minutes),
    )
    assert [(line.sku, line.location_code, line.quantity) for line in reservation.lines] == [
        ("LAMP-01", "DC-EAST", quantity)
    ]
    return reservation.id


@pytest.mark.postgres
def test_a_hold_records_the_events_of_its_change_in_the_same_commit(
    services: Services,
) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=9)
    after = services.events.read(limit=100)[-1].position

    for quantity in (2, 4, 3):  # ATP 9 -> 7 (nothing crossed) -> 3 (low) -> 0 (out)
        position = services.inventory.item_availability("LAMP-01").positions[0]
        hold(services, quantity)
        now = services.inventory.item_availability("LAMP-01").positions[0]
        expected = change_events(
            PositionChange(
                sku="LAMP-01",
                location_code="DC-EAST",
                reason="reserved",
                before=Position("LAMP-01", "DC-EAST", **_figures(position)),
                after=Position("LAMP-01", "DC-EAST", **_figures(now)),
                low_stock_threshold=3,
            )
        )
        events = services.events.read(after=after, limit=100)
        assert [(e.type, e.subject, e.data) for e in events] == [
            (e.type, e.subject, e.data()) for e in expected
        ]
        after = events[-1].position
    assert [line for line in _types(services) if line.startswith("availability.")] == [
        "availability.low",
        "availability.out",
    ]


@pytest.mark.postgres
def test_a_refused_hold_says_what_is_available_and_changes_nothing(services: Services) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=5)
    hold(services, 3)
    events_before = len(services.events.read(limit=100))

    with pytest.raises(InsufficientStock) as refused:
        hold(services, 3)

    assert (refused.value.available, refused.value.requested) == (2, 3)
    assert refused.value.location == "DC-EAST"
    assert atp(services, "LAMP-01", "DC-EAST") == 2
    assert len(services.events.read(limit=100)) == events_before


@pytest.mark.postgres
def test_a_hold_frees_expired_holds_of_its_position_first(
    services: Services, clock: ControlledClock
) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=5)
    expired = hold(services, 4, ttl_minutes=10)
    clock.advance(timedelta(minutes=10))

    hold(services, 5)

    assert services.inventory.get_reservation(expired)[1] == "expired"
    position = services.inventory.item_availability("LAMP-01").positions[0]
    assert (position.reserved, position.atp) == (5, 0)


@pytest.mark.postgres
def test_a_hold_sees_its_channel_buffer(services: Services) -> None:
    network(services)
    stock(services, "LAMP-01", at="DC-EAST", on_hand=10)
    services.inventory.set_channel_buffer("marketplace", percent=50, units=1)

    with pytest.raises(InsufficientStock) as refused:
        hold(services, 5, channel="marketplace")
    hold(services, 4, channel="marketplace")
    hold(services, 6, channel="web")

    assert refused.value.available == 4
    assert atp(services, "LAMP-01", "DC-EAST") == 0


@pytest.mark.postgres
def test_no_hold_at_a_location_that_fulfills_nothing(services: Services) -> None:
    network(services, locations=[a_location("DC-EAST")])
    stock(services, "LAMP-01", at="DC-EAST", on_hand=10)
    services.inventory.update_location("DC-EAST", {"status": "offline"})

    with pytest.raises(LocationUnavailable):
        hold(services, 1)

    assert services.inventory.item_availability("LAMP-01").positions[0].reserved == 0


def _figures(position: Position) -> dict[str, int]:
    return {
        "on_hand": position.on_hand,
        "allocated": position.allocated,
        "reserved": position.reserved,
        "blocked": position.blocked,
        "safety_stock": position.safety_stock,
    }


def _types(services: Services) -> list[str]:
    return [event.type for event in services.events.read(limit=100)]
