"""Orders sourced by the engine: decisions with explanations, refusals, outages, what-if."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from oms.adapters.clock import ControlledClock
from oms.adapters.db.engine import make_engine
from oms.adapters.db.tables import outbox_events, sourcing_decisions
from oms.bootstrap import Services, build_services
from oms.config import Settings
from oms.domain.errors import Conflict, DomainError, Invalid
from oms.domain.inventory import SupplyLine
from oms.domain.locations import Location, LocationStatus, LocationType
from oms.domain.orders import Address, DeliveryMethod, Order, OrderLine, QuantityState
from oms.services.order_sourcing import REPLAN_CHUNK, geocode
from oms.worker import JOBS, JobRegistry, Worker
from tests.inventory_support import atp
from tests.orders_support import (
    WEST_HOME,
    an_order,
    at_store,
    line,
    order_network,
    put,
    ship,
)

Q = QuantityState


@pytest.fixture
def shop(services: Services) -> Services:
    order_network(services)
    return services


def events(services: Services, kind: str) -> list[dict[str, Any]]:
    with services.uow(read_only=True) as uow:
        rows = uow.connection.execute(
            select(outbox_events.c.data).where(outbox_events.c.type == kind)
        )
        return [dict(row[0]) for row in rows]


def units(order: Order) -> Counter[tuple[str, str | None]]:
    """(state, location) -> units, over every line."""
    found: Counter[tuple[str, str | None]] = Counter()
    for order_line in order.lines:
        for (state, location), quantity in order_line.buckets.items():
            found[(state.value, location)] += quantity
    return found


# --- capture ---------------------------------------------------------------------------------


@pytest.mark.postgres
def test_capture_stores_the_engine_decision_with_its_explanation(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 5)
    put(shop, "LAMP-01", "DC-WEST", 5)
    order = shop.orders.capture(an_order(line("LAMP-01", 2))).order

    assert order.lines[0].at_locations(Q.ALLOCATED) == [("DC-EAST", 2)]
    view = shop.order_sourcing.explain(order.order_number)  # the number works as well
    assert view.order_id == order.order_id
    [decision] = view.decisions
    assert (decision.trigger, decision.planner, decision.backordered_units) == (
        "capture",
        "greedy",
        0,
    )
    [explained] = decision.plan["explanation"]
    assert explained["chosen"] == [{"location": "DC-EAST", "quantity": 2}]
    candidates = {c["location"]: c for c in explained["candidates"]}
    assert set(candidates) == {"DC-EAST", "DC-WEST"}  # the only shippers with lamps
    # New York to New York is the first zone, to Los Angeles the farthest: DC-WEST costs more
    west, east = candidates["DC-WEST"]["terms"], candidates["DC-EAST"]["terms"]
    assert Decimal(west["shipping"]) > Decimal(east["shipping"])
    excluded = {e["location"]: e["filter"] for e in explained["excluded"]}
    assert excluded["S4"] == "status"  # offline
    assert excluded["S2"] == "capability"  # pickup only, cannot ship
    [sourced] = events(shop, "sourcing.order_sourced")
    assert sourced["order_id"] == order.order_id and sourced["trigger"] == "capture"


@pytest.mark.postgres
def test_a_profile_or_rule_set_stored_after_a_capture_sources_the_next_one(
    shop: Services,
) -> None:
    """The parsed profiles are cached between captures: every new version is seen at once."""
    put(shop, "LAMP-01", "DC-EAST", 5)
    put(shop, "LAMP-01", "DC-WEST", 50)
    first = shop.orders.capture(an_order(line("LAMP-01", 1), reference="R-1")).order
    assert first.lines[0].at_locations(Q.ALLOCATED) == [("DC-EAST", 1)]

    shop.sourcing.set_profile({"name": "default", "minimum_atp": 10}, changed_by="test")
    second = shop.orders.capture(an_order(line("LAMP-01", 1), reference="R-2")).order
    assert second.lines[0].at_locations(Q.ALLOCATED) == [("DC-WEST", 1)]

    shop.sourcing.set_profile({"name": "scarce", "minimum_atp": 1000}, changed_by="test")
    shop.sourcing.set_rules({"default_profile": "scarce", "rules": []}, changed_by="test")
    third = shop.orders.capture(an_order(line("LAMP-01", 1), reference="R-3")).order
    assert third.lines[0].at_locations(Q.ALLOCATED) == []
    assert third.lines[0].quantity_in(Q.BACKORDERED) == 1


def test_a_change_is_sourced_again_and_recorded_as_a_change(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 5)
    order = shop.orders.capture(an_order(line("LAMP-01", 1))).order
    shop.orders.change_quantity(order.order_id, 1, 3)
    triggers = [d.trigger for d in shop.order_sourcing.explain(order.order_id).decisions]
    assert triggers == ["capture", "change"]
    assert shop.orders.get(order.order_id).lines[0].at_locations(Q.ALLOCATED) == [("DC-EAST", 3)]


def test_an_address_nobody_can_locate_falls_back_to_the_nearest_location_rule(
    shop: Services,
) -> None:
    put(shop, "LAMP-01", "DC-WEST", 5)
    nowhere = Address(name="X", line1="1 Road", city="Atlantis", postal_code="00000", country="US")
    order = shop.orders.capture(an_order(line("LAMP-01", 2, delivery=ship(nowhere)))).order
    assert order.lines[0].at_locations(Q.ALLOCATED) == [("DC-WEST", 2)]
    # the engine could not judge the line: no decision of its own is stored
    assert shop.order_sourcing.explain(order.order_id).decisions == []


def test_geocoding_uses_a_location_with_the_same_postal_code_then_the_same_city() -> None:
    store = Location(
        code="S9",
        name="Store",
        type=LocationType.STORE,
        latitude=41.5,
        longitude=-72.5,
        address={"postal_code": "06457", "city": "Middletown", "country": "US"},
    )
    other = Location(
        code="S8",
        name="Store",
        type=LocationType.STORE,
        latitude=39.0,
        longitude=-77.0,
        address={"postal_code": "20001", "city": "Washington", "country": "US"},
    )
    ordered = shop_line(Address("A", "1 Rd", "middletown", "06457", "US"))
    assert geocode(ordered, [other, store]) is not None
    point = geocode(ordered, [other, store])
    assert point is not None and (point.latitude, point.longitude) == (41.5, -72.5)
    by_city = geocode(shop_line(Address("A", "1 Rd", "Washington", "99999", "US")), [store, other])
    assert by_city is not None and by_city.latitude == 39.0
    assert geocode(shop_line(Address("A", "1 Rd", "Atlantis", "1", "US")), [store, other]) is None


def shop_line(address: Address) -> OrderLine:
    request = line("LAMP-01", 1, delivery=ship(address))
    return OrderLine.new(
        line_no=1,
        sku=request.sku,
        quantity=request.quantity,
        unit_price=request.unit_price,
        discount=Decimal(0),
        tax=Decimal(0),
        delivery=request.delivery,
    )


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_location_that_refuses_is_never_chosen_again_for_that_line(shop: Services) -> None:
    for code in ("DC-EAST", "DC-WEST", "S3"):
        put(shop, "LAMP-01", code, 5)
    order = shop.orders.capture(an_order(line("LAMP-01", 2))).order
    [(first, _)] = order.lines[0].at_locations(Q.ALLOCATED)
    shop.orders.release(order.order_id)  # the location had it, and rejects it

    refused: list[str] = [first]
    outcome = shop.order_sourcing.replan_refused(
        order.order_id, 1, first, 2, "damaged on the shelf", trigger="rejection"
    )
    assert outcome.excluded == sorted(refused)
    [(second, moved)] = outcome.re_sourced.items()
    assert second not in refused and moved == 2
    assert atp(shop, "LAMP-01", first) == 5  # its allocation was given back
    refused.append(second)

    outcome = shop.order_sourcing.replan_refused(
        order.order_id, 1, second, 1, "found only one", trigger="short_pick"
    )
    [(third, moved)] = outcome.re_sourced.items()
    assert third not in refused and moved == 1
    refused.append(third)
    now = shop.orders.get(order.order_id).lines[0]
    assert sorted(now.at_locations(Q.ALLOCATED)) == sorted([(second, 1), (third, 1)])

    # the last location with lamps refuses too: nothing is left, the unit waits
    outcome = shop.order_sourcing.replan_refused(order.order_id, 1, third, 1, "no staff")
    assert (outcome.re_sourced, outcome.backordered) == ({}, 1)
    assert sorted(outcome.excluded) == sorted(refused)
    now = shop.orders.get(order.order_id).lines[0]
    assert now.at_locations(Q.ALLOCATED) == [(second, 1)]
    assert now.quantity_in(Q.BACKORDERED) == 1  # none lost: 1 allocated + 1 waiting
    replanned = events(shop, "sourcing.line_replanned")
    assert [(e["from_location"], e["quantity"], e["backordered"]) for e in replanned] == [
        (first, 2, 0),
        (second, 1, 0),
        (third, 1, 1),
    ]
    assert len(events(shop, "order.backordered")) == 1
    view = shop.order_sourcing.explain(order.order_id)
    assert [r.location_code for r in view.refusals] == refused
    assert [d.trigger for d in view.decisions] == [
        "capture",
        "rejection",
        "short_pick",
        "rejection",
    ]
    last = view.decisions[-1].plan["explanation"][0]
    assert {e["location"] for e in last["excluded"] if e["filter"] == "refused"} == set(refused)


def test_a_refusal_of_units_the_location_does_not_hold_is_refused_without_trace(
    shop: Services,
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 5)
    order = shop.orders.capture(an_order(line("LAMP-01", 2))).order
    with shop.uow(read_only=True) as uow:
        before = uow.connection.execute(select(func.count()).select_from(outbox_events)).scalar()
    with pytest.raises(Conflict, match="0 unit"):
        shop.order_sourcing.replan_refused(order.order_id, 1, "DC-WEST", 1, "not ours")
    with pytest.raises(Invalid):
        shop.order_sourcing.replan_refused(order.order_id, 1, "DC-EAST", 1, "x", trigger="bored")
    with shop.uow(read_only=True) as uow:
        after = uow.connection.execute(select(func.count()).select_from(outbox_events)).scalar()
    assert after == before
    assert shop.order_sourcing.explain(order.order_id).refusals == []


# --- outages ------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_dc_going_offline_re_sources_or_backorders_every_open_line_none_lost(
    shop: Services,
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 20)
    put(shop, "LAMP-01", "DC-WEST", 3)
    put(shop, "LAMP-01", "S3", 4)
    put(shop, "SHADE-02", "DC-EAST", 10)
    placed = [
        shop.orders.capture(
            an_order(line("LAMP-01", 2), line("SHADE-02", 1), reference=f"OUT-{n}")
        ).order
        for n in range(5)
    ]
    assert all(
        units(order)[("allocated", "DC-EAST")] == 3 for order in placed
    )  # everything from the DC
    # released but not picked: the offline DC will not do it, so it is handed back too (after
    # the allocated units, which were placed first: nothing is left for it and it waits)
    shop.orders.release(placed[0].order_id)

    shop.inventory.update_location("DC-EAST", {"status": "offline"})

    after = [shop.orders.get(order.order_id) for order in placed]
    assert units(after[0])[("released", "DC-EAST")] == 0
    assert [order_line.quantity_in(Q.BACKORDERED) for order_line in after[0].lines] == [2, 1]
    [handed_back] = shop.fulfillments.for_order(placed[0].order_id)
    assert (handed_back.status.value, handed_back.reason) == (
        "rejected",
        "location DC-EAST went offline",
    )
    for order in after[1:]:
        held = units(order)
        assert held[("allocated", "DC-EAST")] == 0
        for order_line in order.lines:  # none lost: every ordered unit is somewhere
            assert sum(order_line.buckets.values()) == order_line.quantity
    lamps = Counter[str]()
    for order in after[1:]:
        for location, quantity in order.lines[0].at_locations(Q.ALLOCATED):
            lamps[location] += quantity
    # 8 lamps to move: S3's 4 and DC-WEST's 3 serve 7, one waits; the shades (only at the DC) wait
    assert sum(lamps.values()) == 7 and set(lamps) <= {"S3", "DC-WEST"}
    assert sum(o.lines[0].quantity_in(Q.BACKORDERED) for o in after[1:]) == 1
    assert sum(o.lines[1].quantity_in(Q.BACKORDERED) for o in after[1:]) == 4
    assert atp(shop, "LAMP-01", "DC-WEST") + atp(shop, "LAMP-01", "S3") == 0
    replanned = events(shop, "sourcing.line_replanned")
    outage = [e for e in replanned if e["trigger"] == "outage"]
    assert len(outage) == 8 and sum(e["quantity"] for e in outage) == 12
    assert {e["trigger"] for e in replanned} == {"outage"}  # nothing left for the handed back
    with shop.uow(read_only=True) as uow:
        outage_decisions = uow.connection.execute(
            select(func.count())
            .select_from(sourcing_decisions)
            .where(sourcing_decisions.c.trigger == "outage")
        ).scalar()
    assert outage_decisions == 4  # one decision per order: its affected lines planned together
    # a second run finds nothing left at the DC
    again = shop.order_sourcing.replan_location("DC-EAST")
    assert (again.affected_orders, again.affected_units) == (0, 0)


def test_a_store_going_dark_moves_only_collections(shop: Services) -> None:
    put(shop, "LAMP-01", "S1", 10)
    put(shop, "SHADE-02", "S1", 10)
    order = shop.orders.capture(
        an_order(
            line("LAMP-01", 1, delivery=at_store(DeliveryMethod.PICKUP)),
            line("SHADE-02", 3),  # S1 is the nearest shipper with plenty of shades
        )
    ).order
    assert units(order)[("allocated", "S1")] == 4

    outcome = shop.inventory.update_location("S1", {"status": "dark"})
    assert outcome.status.value == "dark"
    now = shop.orders.get(order.order_id)
    # the pickup can only be at S1, which serves no customers now: it waits
    assert now.lines[0].quantity_in(Q.BACKORDERED) == 1
    # S1 still ships: the shades stay
    assert now.lines[1].at_locations(Q.ALLOCATED) == [("S1", 3)]


def test_a_store_going_dark_hands_back_released_collections_and_keeps_shipping(
    shop: Services,
) -> None:
    put(shop, "LAMP-01", "S1", 10)
    put(shop, "SHADE-02", "S1", 10)
    order = shop.orders.capture(
        an_order(
            line("LAMP-01", 1, delivery=at_store(DeliveryMethod.PICKUP)),
            line("SHADE-02", 3),
        )
    ).order
    shop.orders.release(order.order_id)
    before = {f.delivery_method: f for f in shop.fulfillments.for_order(order.order_id)}
    assert set(before) == {"pickup", "ship"}

    shop.inventory.update_location("S1", {"status": "dark"})

    after = {f.id: f for f in shop.fulfillments.for_order(order.order_id)}
    assert after[before["pickup"].id].status.value == "rejected"
    assert after[before["ship"].id].status.value == "released"  # a dark store still ships
    now = shop.orders.get(order.order_id)
    assert now.lines[0].quantity_in(Q.BACKORDERED) == 1  # only S1 could hand it over
    assert now.lines[1].at_locations(Q.RELEASED) == [("S1", 3)]


# --- stock opportunity (bid prices) -----------------------------------------------------------


@pytest.mark.postgres
def test_bid_prices_from_recent_orders_steer_the_next_capture(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 3)
    put(shop, "LAMP-01", "DC-WEST", 50)
    for n in range(2):  # recent demand near New York: both from DC-EAST, one unit left there
        shop.orders.capture(an_order(line("LAMP-01", 1), reference=f"BID-{n}"))
    assert shop.order_sourcing.refresh_bid_prices(orders=2).status == "off"  # nobody weighs it

    shop.sourcing.set_profile(
        {"name": "default", "weights": {"stock_opportunity": "1.5"}}, changed_by="test"
    )
    registry = JobRegistry()
    registry.add(next(job for job in JOBS if job.name == "sourcing.bid_prices"))
    ticks = iter([0.0])
    asyncio.run(Worker(shop, jobs=registry, monotonic=lambda: next(ticks))._run_due_jobs())
    outcome = shop.order_sourcing.refresh_bid_prices(orders=2)
    assert (outcome.status, outcome.history_orders, outcome.priced_skus) == ("optimal", 2, 1)
    with shop.uow(read_only=True) as uow:
        stored = uow.sourcing_bid_prices.latest()
        assert stored is not None
        assert uow.sourcing_bid_prices.latest_id() == stored.table_id  # older ones deleted
    # two units expected, one left east: the second comes from the west, so the east unit is
    # worth what the west costs more (the programme's dual)
    prices = stored.document["stock"]["LAMP-01"]
    assert set(prices) == {"DC-EAST"}

    order = shop.orders.capture(an_order(line("LAMP-01", 1), reference="BID-NEXT")).order
    # weighed 1.5, the east unit costs more than the west one: the west ships
    assert order.lines[0].at_locations(Q.ALLOCATED) == [("DC-WEST", 1)]
    [decision] = shop.order_sourcing.explain(order.order_id).decisions
    [explained] = decision.plan["explanation"]
    candidates = {c["location"]: c["terms"] for c in explained["candidates"]}
    east, west = candidates["DC-EAST"], candidates["DC-WEST"]
    paid = {
        code: sum(Decimal(v) for k, v in terms.items() if k != "stock_opportunity")
        for code, terms in candidates.items()
    }
    assert prices["DC-EAST"] == pytest.approx(float(paid["DC-WEST"] - paid["DC-EAST"]), abs=0.01)
    assert Decimal(east["stock_opportunity"]) == Decimal(f"{1.5 * prices['DC-EAST']:.2f}")
    assert Decimal(west["stock_opportunity"]) == Decimal("0.00")
    assert decision.plan["opportunity_cost"] == "0.00"


# --- what if --------------------------------------------------------------------------------


def test_what_if_over_the_last_orders_changes_nothing(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 20)
    put(shop, "LAMP-01", "DC-WEST", 20)
    for n in range(3):
        shop.orders.capture(an_order(line("LAMP-01", 1), reference=f"SIM-{n}"))
    with shop.uow(read_only=True) as uow:
        decisions = uow.connection.execute(
            select(func.count()).select_from(sourcing_decisions)
        ).scalar()

    outcome = shop.order_sourcing.simulate_last(2, outage={"DC-EAST": "offline"})

    assert outcome.orders == 2
    assert len(outcome.changed_orders) == 2
    assert all(c.simulated_sources == ["1:1@DC-WEST"] for c in outcome.changed_orders)
    assert outcome.simulated.fulfillment_cost > outcome.current.fulfillment_cost
    with shop.uow(read_only=True) as uow:
        assert (
            uow.connection.execute(select(func.count()).select_from(sourcing_decisions)).scalar()
            == decisions
        )
    with pytest.raises(DomainError):
        shop.order_sourcing.simulate_last(0, outage={"DC-EAST": "offline"})


# --- daily capacity -------------------------------------------------------------------------------


def used_today(services: Services, code: str) -> int:
    with services.uow(read_only=True) as uow:
        return uow.locations.capacity_used([code], on=services.clock.now().date())[code]


@pytest.mark.postgres
def test_capture_uses_the_chosen_locations_capacity_and_the_engine_sees_what_is_left(
    shop: Services,
) -> None:
    shop.inventory.update_location("DC-EAST", {"daily_capacity": 4, "capacity_unit": "units"})
    shop.inventory.update_location("DC-WEST", {"daily_capacity": 2, "capacity_unit": "orders"})
    put(shop, "LAMP-01", "DC-EAST", 20)
    put(shop, "LAMP-01", "DC-WEST", 20)

    first = shop.orders.capture(an_order(line("LAMP-01", 3), reference="CAP-1")).order
    assert first.lines[0].at_locations(Q.ALLOCATED) == [("DC-EAST", 3)]
    assert used_today(shop, "DC-EAST") == 3
    # one unit left in the east: the "capacity" filter sends the next two lamps west
    second = shop.orders.capture(an_order(line("LAMP-01", 2), reference="CAP-2")).order
    assert second.lines[0].at_locations(Q.ALLOCATED) == [("DC-WEST", 2)]
    assert (used_today(shop, "DC-EAST"), used_today(shop, "DC-WEST")) == (3, 1)  # 1 order
    # one more unit fills the east: the next order there finds it excluded by "capacity"
    shop.orders.capture(an_order(line("LAMP-01", 1), reference="CAP-3"))
    assert used_today(shop, "DC-EAST") == 4
    fourth = shop.orders.capture(an_order(line("LAMP-01", 1), reference="CAP-4")).order
    [decision] = shop.order_sourcing.explain(fourth.order_id).decisions
    [explained] = decision.plan["explanation"]
    assert {e["location"]: e["filter"] for e in explained["excluded"]}["DC-EAST"] == "capacity"
    assert used_today(shop, "DC-WEST") == 2  # CAP-2 and CAP-4: two orders
    # a refusal gives the refusing location's capacity back (the order leaves it)
    shop.order_sourcing.replan_refused(second.order_id, 1, "DC-WEST", 2, "no staff")
    assert used_today(shop, "DC-WEST") == 1


def test_a_location_over_its_capacity_moves_its_newest_allocations_beyond_it(
    shop: Services,
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 20)
    put(shop, "LAMP-01", "DC-WEST", 20)
    shop.inventory.update_location("DC-EAST", {"daily_capacity": 10, "capacity_unit": "units"})
    placed = []
    for n in range(4):
        placed.append(
            shop.orders.capture(an_order(line("LAMP-01", 2), reference=f"OVER-{n}")).order
        )
        shop.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    assert used_today(shop, "DC-EAST") == 8
    shop.orders.release(placed[0].order_id)  # released: the DC has it in hand, it stays
    # the day turns out shorter: 5 units of work, not 10
    shop.inventory.update_location("DC-EAST", {"daily_capacity": 5})

    outcome = shop.order_sourcing.replan_location("DC-EAST")

    assert (outcome.affected_units, outcome.re_sourced_units) == (3, 3)
    after = {o.order_id: shop.orders.get(o.order_id) for o in placed}
    # the newest orders move first: the last one whole, one unit of the one before
    assert after[placed[3].order_id].lines[0].at_locations(Q.ALLOCATED) == [("DC-WEST", 2)]
    assert after[placed[2].order_id].lines[0].at_locations(Q.ALLOCATED) == [
        ("DC-EAST", 1),
        ("DC-WEST", 1),
    ]
    assert after[placed[0].order_id].lines[0].at_locations(Q.RELEASED) == [("DC-EAST", 2)]
    assert used_today(shop, "DC-EAST") == 5
    replanned = events(shop, "sourcing.line_replanned")
    assert {e["trigger"] for e in replanned} == {"capacity"}
    assert sum(e["quantity"] for e in replanned) == 3
    # full now: nothing more moves, and the periodic check agrees
    assert shop.order_sourcing.replan_location("DC-EAST").affected_units == 0
    assert shop.order_sourcing.replan_over_capacity() == 0


# --- late supply ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_late_supply_moves_the_promise_of_the_lines_waiting_for_it(shop: Services) -> None:
    today = shop.clock.now().date()

    def supply(reference: str, location: str, days: int, status: str = "open") -> SupplyLine:
        return SupplyLine(
            reference,
            "purchase_order",
            "LAMP-01",
            location,
            5,
            today + timedelta(days=days),
            status,
        )

    shop.inventory.add_supply([supply("PO-1", "DC-EAST", 5), supply("PO-2", "DC-WEST", 9)])
    order = shop.orders.capture(an_order(line("LAMP-01", 2), reference="LATE-1")).order
    assert order.lines[0].quantity_in(Q.BACKORDERED) == 2
    assert order.lines[0].promised_on == today + timedelta(days=5)  # PO-1 covers it first

    # PO-1 slips by ten days: PO-2 at the other DC now comes sooner
    shop.inventory.add_supply([supply("PO-1", "DC-EAST", 15)])

    after = shop.orders.get(order.order_id)
    assert after.lines[0].quantity_in(Q.BACKORDERED) == 2
    assert after.lines[0].promised_on == today + timedelta(days=9)
    [replanned] = events(shop, "sourcing.line_replanned")
    assert (replanned["trigger"], replanned["quantity"], replanned["backordered"]) == (
        "supply_late",
        2,
        2,
    )
    changed = events(shop, "order.promise_date_changed")[-1]  # the first: at capture
    assert changed["new_promised_on"] == (today + timedelta(days=9)).isoformat()
    decisions = shop.order_sourcing.explain(order.order_id).decisions
    assert [d.trigger for d in decisions] == ["capture", "supply_late"]

    # PO-2 is cancelled and stock turns up at a store that ships: served now, not waiting
    put(shop, "LAMP-01", "S3", 1)  # a receipt allocates what it can at once
    shop.inventory.add_supply([supply("PO-2", "DC-WEST", 9, status="cancelled")])
    now = shop.orders.get(order.order_id)
    assert now.lines[0].at_locations(Q.ALLOCATED) == [("S3", 1)]
    assert now.lines[0].quantity_in(Q.BACKORDERED) == 1
    assert now.lines[0].promised_on == today + timedelta(days=15)  # only PO-1 is left
    # a date that does not move changes nothing
    before = len(events(shop, "sourcing.line_replanned"))
    shop.inventory.add_supply([supply("PO-1", "DC-EAST", 15)])
    assert len(events(shop, "sourcing.line_replanned")) == before


# --- batch (wave) sourcing ------------------------------------------------------------------------


@pytest.mark.postgres
def test_the_worker_plans_batch_mode_orders_in_a_wave_every_15_minutes(
    shop: Services, clock: ControlledClock
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 3)
    put(shop, "LAMP-01", "DC-WEST", 5)
    shop.sourcing.set_profile({"name": "web-waves", "mode": "batch"}, changed_by="test")
    shop.sourcing.set_rules(
        {
            "default_profile": "default",
            "rules": [{"name": "web", "profile": "web-waves", "priority": 1, "channels": ["web"]}],
        },
        changed_by="test",
    )
    pending = [
        shop.orders.capture(an_order(line("LAMP-01", 2), reference=f"WAVE-{n}")).order
        for n in range(3)
    ]
    # batch mode: nothing is sourced at capture, the lines wait open for the wave
    assert all(units(order) == Counter({("open", None): 2}) for order in pending)
    at_once = shop.orders.capture(
        an_order(line("LAMP-01", 1), channel="store", reference="POS-1")
    ).order
    assert units(at_once)[("allocated", "DC-EAST")] == 1  # other channels: real time

    ticks = iter([0.0, 60.0, 15 * 60.0 + 1])
    registry = JobRegistry()
    registry.add(next(job for job in JOBS if job.name == "sourcing.batch_wave"))
    worker = Worker(shop, jobs=registry, monotonic=lambda: next(ticks))

    asyncio.run(worker._run_due_jobs())
    after = [shop.orders.get(order.order_id) for order in pending]
    assert all(units(order)[("open", None)] == 0 for order in after)
    allocated = Counter[str]()
    for order in after:
        for location, quantity in order.lines[0].at_locations(Q.ALLOCATED):
            allocated[location] += quantity
    assert allocated == Counter({"DC-EAST": 2, "DC-WEST": 4})  # 2 left east, the rest west
    decisions = shop.order_sourcing.explain(pending[0].order_id).decisions
    assert [d.trigger for d in decisions] == ["wave"]
    assert len(events(shop, "sourcing.order_sourced")) == 4  # three in the wave, one at once

    clock.advance(timedelta(minutes=1))
    late = shop.orders.capture(an_order(line("LAMP-01", 1), reference="WAVE-9")).order
    asyncio.run(worker._run_due_jobs())  # a minute later: not due yet
    assert units(shop.orders.get(late.order_id))[("open", None)] == 1
    clock.advance(timedelta(minutes=15))
    asyncio.run(worker._run_due_jobs())  # fifteen minutes on: the next wave
    assert units(shop.orders.get(late.order_id))[("allocated", "DC-WEST")] == 1  # the last lamp


@pytest.mark.postgres
def test_an_outage_re_plan_in_chunks_moves_every_order_once(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 10)
    put(shop, "LAMP-01", "DC-WEST", 10)
    placed = [
        shop.orders.capture(an_order(line("LAMP-01", 1), reference=f"CHUNK-{n}")).order
        for n in range(5)
    ]
    with shop.uow() as uow:  # the status changes without the hook: the re-plan runs below
        location = uow.locations.require("DC-EAST")
        uow.locations.update(replace(location, status=LocationStatus.OFFLINE), at=shop.clock.now())
        uow.commit()
    status_events = len(events(shop, "order.line.status_changed"))  # those of the captures

    outcome = shop.order_sourcing.replan_location("DC-EAST", chunk_size=2)  # 3 transactions

    assert (outcome.affected_orders, outcome.affected_units, outcome.re_sourced_units) == (5, 5, 5)
    for order in placed:
        assert units(shop.orders.get(order.order_id)) == Counter({("allocated", "DC-WEST"): 1})
    assert atp(shop, "LAMP-01", "DC-WEST") == 5
    assert len(events(shop, "sourcing.line_replanned")) == 5
    # no line flapped to open and back: the lines stay allocated, no status event
    assert len(events(shop, "order.line.status_changed")) == status_events


def _outage_plans(
    shop: Services, clock: ControlledClock, *, chunk_size: int
) -> dict[str, list[tuple[int, str, str | None, int]]]:
    """Orders on DC-EAST, which goes offline and is re-planned ``chunk_size`` orders at a time:
    where each order's units are then (channel reference -> line, state, location, units)."""
    for sku, location, on_hand in (
        ("LAMP-01", "DC-EAST", 40),
        ("LAMP-01", "DC-WEST", 6),
        ("LAMP-01", "S3", 5),
        ("SHADE-02", "DC-EAST", 20),
        ("SHADE-02", "S3", 3),
        ("SHADE-02", "DC-WEST", 2),
        ("BULB-03", "DC-EAST", 30),
        ("BULB-03", "S3", 4),
    ):
        put(shop, sku, location, on_hand)
    baskets = [
        (line("LAMP-01", 2), line("SHADE-02", 1)),
        (line("LAMP-01", 1),),
        (line("SHADE-02", 2), line("BULB-03", 3)),
        (
            line("LAMP-01", 3, delivery=ship(WEST_HOME)),
            line("BULB-03", 1, delivery=ship(WEST_HOME)),
        ),
        (line("BULB-03", 2), line("LAMP-01", 1)),
    ]
    placed = {}
    for n in range(15):
        clock.advance(timedelta(seconds=1))
        reference = f"BULK-{n}"
        placed[reference] = shop.orders.capture(
            an_order(*baskets[n % len(baskets)], reference=reference)
        ).order.order_id
    with shop.uow() as uow:  # the status changes without the hook: the re-plan runs below
        location = uow.locations.require("DC-EAST")
        uow.locations.update(replace(location, status=LocationStatus.OFFLINE), at=clock.now())
        uow.commit()
    shop.order_sourcing.replan_location("DC-EAST", chunk_size=chunk_size)
    found = {}
    for reference, order_id in placed.items():
        order = shop.orders.get(order_id)
        found[reference] = sorted(
            (order_line.line_no, state.value, location, quantity)
            for order_line in order.lines
            for (state, location), quantity in order_line.buckets.items()
            if quantity
        )
    return found


def test_a_bulk_re_plan_decides_what_one_order_at_a_time_would(
    shop: Services, clock: ControlledClock, sqlite_template: Path, tmp_path: Path
) -> None:
    """The set-based outage re-plan (every order planned in memory on one snapshot) makes the
    decisions of re-planning the same orders one by one, each on a fresh snapshot."""
    path = tmp_path / "one-by-one.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    other_clock = ControlledClock(clock.now())
    other = build_services(
        Settings(database_url=url, data_dir=tmp_path / "one-by-one"),
        clock=other_clock,
        engine=engine,
    )
    order_network(other)
    try:
        in_bulk = _outage_plans(shop, clock, chunk_size=REPLAN_CHUNK)
        one_by_one = _outage_plans(other, other_clock, chunk_size=1)
    finally:
        engine.dispose()

    assert in_bulk == one_by_one
    moved_to = {where for rows in in_bulk.values() for _, state, where, _ in rows}
    assert "DC-EAST" not in moved_to and {"DC-WEST", "S3"} <= moved_to
    assert any(state == "backordered" for rows in in_bulk.values() for _, state, _, _ in rows)
