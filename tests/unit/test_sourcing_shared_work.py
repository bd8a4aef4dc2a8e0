"""The planner's shared work per group gives the same answers as each line worked out alone.

``prepare`` works out once per group what a group's lines share (where the parcel goes, the
filters that read only profile, method and place, the cost terms as one array over the lines);
before, every line did all of it for itself. This property holds the two to the same masks,
exclusions and costs.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from oms.domain.sourcing.filters import first_reasons
from oms.domain.sourcing.model import (
    CandidateLocation,
    Capability,
    DeliveryMethod,
    GeoPoint,
    LocationStatus,
    LocationType,
    Network,
    SourcingLine,
    SourcingOrder,
)
from oms.domain.sourcing.planner import prepare
from oms.domain.sourcing.profiles import Profile, ProfileRule, ProfileSet, SplitPolicy

SKUS = ("LAMP", "SOFA", "RUG")
PLACED = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


@st.composite
def locations(draw: st.DrawFn) -> list[CandidateLocation]:
    count = draw(st.integers(min_value=1, max_value=9))
    result = []
    for i in range(count):
        result.append(
            CandidateLocation(
                code=f"L{i}",
                type=draw(st.sampled_from(list(LocationType))),
                status=draw(
                    st.sampled_from(
                        [LocationStatus.ACTIVE] * 3
                        + [LocationStatus.DARK, LocationStatus.OFFLINE, LocationStatus.CLOSED]
                    )
                ),
                capabilities=frozenset(
                    draw(st.sets(st.sampled_from(list(Capability)), min_size=1))
                ),
                point=GeoPoint(
                    draw(st.floats(min_value=30, max_value=45)),
                    draw(st.floats(min_value=-120, max_value=-75)),
                ),
                atp={sku: draw(st.integers(min_value=0, max_value=4)) for sku in SKUS},
                remaining_capacity=draw(st.one_of(st.none(), st.integers(0, 6))),
                handling_cost=Decimal(draw(st.sampled_from(["0", "0.35", "1.20"]))),
                cut_off_hour=draw(st.sampled_from([12.0, 16.0, 24.0])),
                priority=draw(st.integers(0, 3)),
            )
        )
    return result


@st.composite
def orders(draw: st.DrawFn, codes: list[str]) -> SourcingOrder:
    destinations = [GeoPoint(40.7, -74.0), GeoPoint(34.0, -118.2)]
    lines = []
    for n in range(draw(st.integers(min_value=1, max_value=5))):
        method = draw(st.sampled_from(list(DeliveryMethod)))
        needs_store = method not in (DeliveryMethod.SHIP, DeliveryMethod.DROPSHIP)
        lines.append(
            SourcingLine(
                line_id=str(n + 1),
                sku=draw(st.sampled_from([*SKUS, "GONE"])),
                quantity=draw(st.integers(min_value=1, max_value=4)),
                delivery_method=method,
                destination=draw(st.sampled_from(destinations)) if not needs_store else None,
                pickup_location=draw(st.sampled_from([*codes, "NOWHERE"])) if needs_store else None,
                weight_kg=draw(st.sampled_from([0.5, 1.0, 3.25])),
                ship_alone=draw(st.booleans()),
                hazmat=draw(st.booleans()),
                pickup_allowed=draw(st.booleans()),
                ship_from_store_allowed=draw(st.booleans()),
            )
        )
    refused = {}
    if draw(st.booleans()):
        refused = {"1": frozenset(draw(st.sets(st.sampled_from(codes), max_size=2)))}
    return SourcingOrder(
        order_id="O1",
        channel=draw(st.sampled_from(["web", "store"])),
        lines=tuple(lines),
        placed_at=PLACED,
        order_value=Decimal(draw(st.integers(10, 300))),
        promise_on=draw(st.sampled_from([None, date(2026, 1, 6), date(2026, 1, 9)])),
        refused=refused,
    )


@st.composite
def profile_sets(draw: st.DrawFn, codes: list[str]) -> ProfileSet:
    other = Profile(
        "other",
        split_policy=draw(st.sampled_from(list(SplitPolicy))),
        max_shipments=draw(st.integers(1, 3)),
        max_distance_km=draw(st.sampled_from([None, 800.0, 3000.0])),
        max_late_days=draw(st.sampled_from([None, 0, 2])),
        minimum_atp=draw(st.integers(1, 2)),
        excluded_locations=frozenset(draw(st.sets(st.sampled_from(codes), max_size=2))),
        preferred_locations=frozenset(draw(st.sets(st.sampled_from(codes), max_size=3))),
        preferred_only=draw(st.booleans()),
        protected_units=draw(st.integers(0, 2)),
        weights={
            "shipping": Decimal(draw(st.sampled_from(["1", "1.5"]))),
            "lateness": Decimal(draw(st.sampled_from(["0", "1", "2"]))),
            "stock_opportunity": Decimal(draw(st.sampled_from(["0", "1", "0.7"]))),
        },
        opportunity_may_backorder=draw(st.booleans()),
    )
    default = Profile("default", split_policy=draw(st.sampled_from(list(SplitPolicy))))
    rules = [ProfileRule("web", "other", channels=frozenset({"web"}))]
    return ProfileSet([default, other], rules)


def network_for(places: list[CandidateLocation], bid: bool) -> Network:
    network = Network(places)
    if bid:
        network.set_bid_prices(
            {"LAMP": {place.code: 1.5 + i for i, place in enumerate(places)}},
            {places[0].code: 0.75},
        )
    return network


@settings(max_examples=80, deadline=None)
@given(data=st.data(), places=locations(), bid=st.booleans())
def test_a_groups_shared_work_equals_each_line_prepared_alone(
    data: st.DataObject, places: list[CandidateLocation], bid: bool
) -> None:
    codes = [place.code for place in places]
    profiles = data.draw(profile_sets(codes))
    the_order = data.draw(orders(codes))
    network = network_for(places, bid)
    for group in prepare(the_order, network, profiles):
        for i, position in enumerate(group.positions):
            alone = dataclasses.replace(the_order, lines=(the_order.lines[position],))
            (single,) = prepare(alone, network, profiles)
            ctx, own = group.contexts[i], single.contexts[0]
            assert np.array_equal(ctx.distance_km, own.distance_km)
            assert np.array_equal(ctx.late_days, own.late_days)
            assert np.array_equal(group.masks[i], single.masks[0])
            assert [name for name, _ in group.exclusions[i]] == [
                name for name, _ in single.exclusions[0]
            ]
            everywhere = list(range(network.size))
            assert first_reasons(group.exclusions[i], everywhere) == first_reasons(
                single.exclusions[0], everywhere
            )
            costs, own_costs = group.costs, single.costs
            assert np.array_equal(costs.fixed, own_costs.fixed)
            assert np.array_equal(costs.last_unit, own_costs.last_unit)
            assert np.array_equal(costs.unit[i], own_costs.unit[0])
            assert np.array_equal(costs.decision_unit[i], own_costs.decision_unit[0])
            assert np.array_equal(costs.threshold[i], own_costs.threshold[0])
            assert sorted(costs.terms) == sorted(own_costs.terms)
