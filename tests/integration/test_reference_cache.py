"""Reference data cached behind one signature per unit of work: every change is seen at once,
a change that rolls back is never served."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import event

from oms.bootstrap import Services
from oms.domain.inventory import ChannelBuffer
from oms.domain.locations import LocationStatus
from oms.domain.orders import QuantityState
from tests.orders_support import an_order, line, order_network, put

Q = QuantityState


@pytest.fixture
def shop(services: Services) -> Services:
    order_network(services)
    return services


@pytest.mark.postgres
def test_a_location_changed_after_a_capture_sources_the_next_one(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 5)
    put(shop, "LAMP-01", "DC-WEST", 5)
    first = shop.orders.capture(an_order(line("LAMP-01", 1), reference="R-1")).order
    assert first.lines[0].at_locations(Q.ALLOCATED) == [("DC-EAST", 1)]

    shop.inventory.update_location("DC-EAST", {"status": "offline"})
    second = shop.orders.capture(an_order(line("LAMP-01", 1), reference="R-2")).order
    assert second.lines[0].at_locations(Q.ALLOCATED) == [("DC-WEST", 1)]

    shop.inventory.update_location("DC-EAST", {"status": "active"})
    shop.inventory.create_location(
        {
            "code": "DC-NYC",
            "name": "DC-NYC",
            "type": "dc",
            "latitude": 40.75,
            "longitude": -73.99,
            "timezone": "UTC",
            "capabilities": ["ship"],
        }
    )
    put(shop, "LAMP-01", "DC-NYC", 5)
    third = shop.orders.capture(an_order(line("LAMP-01", 1), reference="R-3")).order
    [decision] = shop.order_sourcing.explain(third.order_id).decisions
    [explained] = decision.plan["explanation"]
    assert {c["location"] for c in explained["candidates"]} == {"DC-EAST", "DC-WEST", "DC-NYC"}


@pytest.mark.postgres
def test_a_location_change_that_rolls_back_is_never_served(shop: Services) -> None:
    with shop.uow() as uow:
        before = {location.code: location for location in uow.locations.list()}
    with shop.uow() as uow:
        dark = uow.locations.require("DC-EAST")
        uow.locations.update(replace(dark, status=LocationStatus.OFFLINE), at=shop.clock.now())
        seen = {location.code: location for location in uow.locations.list()}
        assert seen["DC-EAST"].status is LocationStatus.OFFLINE  # its own write, uncached
        uow.rollback()
    with shop.uow(read_only=True) as uow:
        after = {location.code: location for location in uow.locations.list()}
    assert after == before
    assert after["DC-EAST"].status is LocationStatus.ACTIVE


@pytest.mark.postgres
def test_a_process_deployed_after_a_capture_starts_for_the_next_order(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 5)
    first = shop.orders.capture(an_order(line("LAMP-01", 1), reference="R-1")).order
    with shop.uow(read_only=True) as uow:
        assert uow.processes.running_instances(first.order_id) == []

    shop.fulfillment_processes.deploy_defaults()
    second = shop.orders.capture(an_order(line("LAMP-01", 1), reference="R-2")).order
    with shop.uow(read_only=True) as uow:
        assert [i.process_key for i in uow.processes.running_instances(second.order_id)] == ["ship"]


@pytest.mark.postgres
def test_a_channel_buffer_comes_with_the_signature_and_every_change_is_seen(
    shop: Services,
) -> None:
    """An order channel's buffer is read with the signature (no statement of its own); a
    buffer changed between captures holds for the next one, and a unit of work that changes
    one reads its own figures."""
    put(shop, "LAMP-01", "DC-EAST", 10)
    put(shop, "LAMP-01", "DC-WEST", 10)
    statements: list[str] = []
    listen = event.listens_for(shop.engine, "before_cursor_execute")
    listen(lambda *args: statements.append(str(args[2])))
    with shop.uow() as uow:
        assert uow.inventory.channel_buffer("web") == ChannelBuffer("web")
        assert uow.inventory.channel_buffer("kiosk") == ChannelBuffer(
            "kiosk"
        )  # not an order channel
    buffer_reads = [s for s in statements if s.lstrip().upper().startswith("SELECT CHANNEL")]
    assert len(buffer_reads) == 1  # the kiosk's, read from its table

    shop.inventory.set_channel_buffer("web", percent=50, units=1)
    with shop.uow() as uow:
        assert uow.inventory.channel_buffer("web") == ChannelBuffer("web", 50, 1)
        assert uow.inventory.atp(["LAMP-01"], at=shop.clock.now(), channel="web") == {
            "LAMP-01": {"DC-EAST": 4, "DC-WEST": 4}
        }
        uow.inventory.set_channel_buffer(ChannelBuffer("web", 20, 0))
        assert uow.inventory.channel_buffer("web") == ChannelBuffer("web", 20, 0)
        uow.rollback()
    with shop.uow() as uow:
        assert uow.inventory.channel_buffer("web") == ChannelBuffer("web", 50, 1)
    # the capture sees the buffer: 5 units asked, 4 visible at each DC, split over the two
    order = shop.orders.capture(an_order(line("LAMP-01", 5), reference="R-B")).order
    assert sum(units for _, units in order.lines[0].at_locations(Q.ALLOCATED)) == 5
    assert len(order.lines[0].at_locations(Q.ALLOCATED)) == 2
