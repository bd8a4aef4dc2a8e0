"""Re-planning: refusals are remembered, outages re-source every affected unit or backorder it."""

from __future__ import annotations

from datetime import timedelta

from oms.domain.sourcing.model import DeliveryMethod, LocationStatus, LocationType, Network
from oms.domain.sourcing.planner import plan_order
from oms.domain.sourcing.profiles import Profile, ProfileSet
from oms.domain.sourcing.replan import remainder_order, replan_outage, replan_refusal
from tests.unit.test_sourcing_engine import MONDAY_9AM, line, location, order

PROFILES = ProfileSet.single(Profile("default"))


def test_a_location_that_rejects_is_never_chosen_again_for_that_quantity() -> None:
    network = Network(
        [
            location("NEAR", 10, {"LAMP": 9}),
            location("MID", 300, {"LAMP": 1}),
            location("FAR", 2000, {"LAMP": 9}),
        ]
    )
    first = order(line(quantity=2))
    plan = plan_order(first, network, PROFILES)
    assert plan.allocated("1") == {"NEAR": 2}

    # NEAR rejects both units: they go elsewhere, never back to NEAR
    again = replan_refusal(
        first,
        line_id="1",
        location="NEAR",
        quantity=2,
        network=network,
        profiles=PROFILES,
        at=MONDAY_9AM + timedelta(hours=1),
    )
    assert "NEAR" not in again.allocated("1")
    assert sum(again.allocated("1").values()) == 2

    # then MID short-picks its unit: the refusals add up, NEAR and MID stay excluded
    remainder = remainder_order(first, {"1": 1}, refused={"1": frozenset({"NEAR", "MID"})})
    last = plan_order(remainder, network, PROFILES)
    assert last.allocated("1") == {"FAR": 1}
    refused_filters = {e.location: e.filter for e in last.explanation[0].excluded}
    assert refused_filters["NEAR"] == "refused" and refused_filters["MID"] == "refused"


def test_a_dc_going_offline_re_sources_or_backorders_every_affected_line() -> None:
    places = [
        location("DC-EAST", 10, {"LAMP": 20, "SHADE": 20}),
        location("DC-WEST", 900, {"LAMP": 3}),
        location("STORE", 50, {"SHADE": 4}),
    ]
    network = Network(places)
    orders = [
        order(line("1", "LAMP", 2), line("2", "SHADE", 1), order_id=f"O{n}") for n in range(4)
    ]
    plans = {o.order_id: plan_order(o, network, PROFILES) for o in orders}
    open_allocations = {
        order_id: {line_id: plan.allocated(line_id) for line_id in ("1", "2")}
        for order_id, plan in plans.items()
    }
    at_east = sum(
        q
        for lines in open_allocations.values()
        for by in lines.values()
        for code, q in by.items()
        if code == "DC-EAST"
    )
    assert at_east == 12  # every order went to the nearest DC

    result, changed = replan_outage(
        orders,
        open_allocations,
        network,
        PROFILES,
        statuses={"DC-EAST": LocationStatus.OFFLINE},
        at=MONDAY_9AM + timedelta(hours=2),
    )
    assert result.affected_orders == 4
    assert result.affected_units == 12
    assert result.re_sourced_units + result.backordered_units == 12  # none lost
    assert result.re_sourced_units == 3 + 4  # DC-WEST's 3 lamps, the store's 4 shades
    assert result.backordered_units == 5
    for plan in result.plans.values():
        assert all(a.location != "DC-EAST" for a in plan.allocations)
    assert changed.status_is(LocationStatus.OFFLINE)[changed.index["DC-EAST"]]


def test_a_store_going_dark_moves_only_what_customers_were_to_collect_there() -> None:
    store = location("STORE", 5, {"LAMP": 9}, kind=LocationType.STORE)
    places = [store, location("DC", 400, {"LAMP": 9})]
    network = Network(places)
    ship = order(line("1", "LAMP", 1), order_id="SHIP")
    collect = order(
        line("1", "LAMP", 1, DeliveryMethod.PICKUP, pickup_location="STORE"), order_id="COLLECT"
    )
    open_allocations = {
        "SHIP": {"1": {"STORE": 1}},
        "COLLECT": {"1": {"STORE": 1}},
    }
    result, _ = replan_outage(
        [ship, collect],
        open_allocations,
        network,
        PROFILES,
        statuses={"STORE": LocationStatus.DARK},
        at=MONDAY_9AM,
    )
    assert set(result.plans) == {"COLLECT"}
    # nobody else can hand it over at that store: backordered, not lost
    assert result.plans["COLLECT"].backorders == {"1": 1}
    assert result.affected_units == result.re_sourced_units + result.backordered_units == 1
