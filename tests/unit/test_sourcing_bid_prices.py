"""The opportunity cost of scarce stock: bid prices from the forecast transportation programme
and the ``stock_opportunity`` term the planners weigh, on hand-computed plans.

Geometry as in test_sourcing_engine: NEAR is 100 km away (zone 1: 5.50 + 0.40/kg), FAR 300 km
(zone 2: 7.00 + 0.60/kg); lines weigh 1 kg, so a parcel of one unit costs 5.90 from NEAR and
7.60 from FAR when only shipping counts.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from oms.domain.sourcing.batch import plan_wave
from oms.domain.sourcing.bid_prices import DemandLane, bid_prices, demand_lanes
from oms.domain.sourcing.model import Network
from oms.domain.sourcing.planner import plan_order
from oms.domain.sourcing.profiles import (
    Profile,
    ProfileSet,
    profile_from_document,
    profile_to_document,
)

from .test_sourcing_engine import line, location, only, order


def near_and_far(near_units: int = 1, far_units: int = 1) -> Network:
    return Network(
        [location("NEAR", 100, {"LAMP": near_units}), location("FAR", 300, {"LAMP": far_units})]
    )


def weighing(**settings: object) -> ProfileSet:
    return ProfileSet.single(only("shipping", "stock_opportunity", **settings))


def lane(units: float, costs: dict[int, float], sku: str = "LAMP") -> DemandLane:
    return DemandLane(
        sku=sku,
        units=units,
        locations=np.array(list(costs), dtype=np.int64),
        unit_cost=np.array(list(costs.values()), dtype=np.float64),
        backorder_penalty=40.0,
        minute_of_day=0,
    )


# -- the programme -----------------------------------------------------------------------------


def test_a_unit_is_worth_what_the_next_best_source_would_cost_the_order_it_serves() -> None:
    # NEAR has 1 unit, FAR 5. Lane 1 (1 unit): NEAR 5, FAR 9. Lane 2 (1.5 units): NEAR 6,
    # FAR 20. NEAR's unit saves lane 2 14 and lane 1 only 4: it goes to lane 2, which takes
    # its other half unit from FAR; lane 1 ships from FAR. One more unit at NEAR would save
    # lane 2 another 14 per unit (20 - 6); FAR has stock to spare: worth nothing.
    network = near_and_far(near_units=1, far_units=5)
    prices = bid_prices(network, [lane(1, {0: 5.0, 1: 9.0}), lane(1.5, {0: 6.0, 1: 20.0})])
    assert prices.status == "optimal"
    assert prices.stock == {"LAMP": {"NEAR": pytest.approx(14.0)}}
    assert prices.capacity == {}
    assert prices.backordered_units == pytest.approx(0.0)
    assert prices.expected_units == pytest.approx(2.5)


def test_stock_short_of_demand_is_worth_the_backorder_it_avoids() -> None:
    # 1.5 units expected, only NEAR (1 unit) can serve at 6: half a unit is backordered at 40,
    # so one more unit at NEAR is worth 40 - 6 = 34.
    network = near_and_far(near_units=1, far_units=0)
    prices = bid_prices(network, [lane(1.5, {0: 6.0, 1: 7.0})])
    assert prices.stock == {"LAMP": {"NEAR": pytest.approx(34.0)}}
    assert prices.backordered_units == pytest.approx(0.5)
    half = bid_prices(network, [lane(1.5, {0: 6.0})], scale=0.5)  # 0.75 units expected
    assert half.stock == {}


def test_capacity_short_of_demand_prices_every_unit_shipped_there() -> None:
    # NEAR holds 5 LAMP and 5 DESK but can ship 1 unit today: the stock is plentiful, the
    # capacity is the scarce thing, worth 40 - 6 per unit, whatever the SKU.
    network = Network([location("NEAR", 100, {"LAMP": 5, "DESK": 5}, capacity=1)])
    prices = bid_prices(network, [lane(1.5, {0: 6.0})])
    assert prices.stock == {}
    assert prices.capacity == {"NEAR": pytest.approx(34.0)}
    network.set_bid_prices(prices.stock, prices.capacity)
    assert network.bid_price("DESK")[0] == pytest.approx(34.0)
    assert network.bid_price("UNKNOWN")[0] == pytest.approx(34.0)


def test_lanes_come_from_past_orders_priced_by_the_engines_terms() -> None:
    # A past order of 2 LAMP: NEAR (a DC, handling 1.10) has stock, FAR has none. Per unit:
    # the parcel's 5.50 shared by 2 units, 0.40/kg and 1.10 handling = 4.25.
    network = Network(
        [
            location("NEAR", 100, {"LAMP": 5}, handling="1.10"),
            location("FAR", 300, {"LAMP": 0}),
        ]
    )
    lanes = demand_lanes([order(line("1", "LAMP", 2))], network, ProfileSet.single(Profile("d")))
    assert len(lanes) == 1
    assert lanes[0].sku == "LAMP"
    assert lanes[0].units == 2.0
    assert lanes[0].locations.tolist() == [0]
    assert lanes[0].unit_cost.tolist() == pytest.approx([4.25])
    assert lanes[0].minute_of_day == 9 * 60


# -- the planners ------------------------------------------------------------------------------


def test_the_greedy_planner_leaves_a_unit_that_later_orders_need_more() -> None:
    # NEAR 5.90 + opportunity 3.00 = 8.90 > FAR 7.60: FAR ships. The plan's cost is what is
    # paid (7.60); the explanation shows NEAR's opportunity as its own term.
    network = near_and_far()
    network.set_bid_prices({"LAMP": {"NEAR": 3.0}})
    plan = plan_order(order(line()), network, weighing())
    assert plan.allocated("1") == {"FAR": 1}
    assert plan.cost == Decimal("7.60")
    assert plan.opportunity_cost == Decimal("0.00")
    assert plan.objective == Decimal("7.60")
    near = next(c for c in plan.explanation[0].candidates if c.location == "NEAR")
    assert near.terms == {"shipping": Decimal("5.90"), "stock_opportunity": Decimal("3.00")}
    assert near.total == Decimal("8.90")
    assert plan.to_document()["opportunity_cost"] == "0.00"
    # a cheaper opportunity (5.90 + 1.00 < 7.60) still ships from NEAR, and the plan says so
    network = near_and_far()
    network.set_bid_prices({"LAMP": {"NEAR": 1.0}})
    plan = plan_order(order(line()), network, weighing())
    assert plan.allocated("1") == {"NEAR": 1}
    assert (plan.cost, plan.opportunity_cost) == (Decimal("5.90"), Decimal("1.00"))
    assert plan.decision_objective == Decimal("6.90")
    assert "stock_opportunity" not in plan.shipments[0].terms  # not paid


def test_the_term_is_off_unless_the_profile_weighs_it() -> None:
    network = near_and_far()
    network.set_bid_prices({"LAMP": {"NEAR": 3.0}})
    assert Profile("default").weight("stock_opportunity") == 0.0
    plan = plan_order(order(line()), network, ProfileSet.single(Profile("default")))
    assert plan.allocated("1") == {"NEAR": 1}
    half = ProfileSet.single(
        Profile("half", weights={**only("shipping").weights, "stock_opportunity": Decimal("0.5")})
    )
    network = near_and_far()
    network.set_bid_prices({"LAMP": {"NEAR": 3.0}})
    plan = plan_order(order(line()), network, half)  # 5.90 + 1.50 = 7.40 < 7.60
    assert plan.allocated("1") == {"NEAR": 1}
    assert plan.opportunity_cost == Decimal("1.50")


def test_the_opportunity_counts_above_the_least_a_candidate_has() -> None:
    # NEAR 5, FAR 4: NEAR's unit is worth 1 more than FAR's. 5.90 + 1 = 6.90 < 7.60: NEAR.
    network = near_and_far()
    network.set_bid_prices({"LAMP": {"NEAR": 5.0, "FAR": 4.0}})
    plan = plan_order(order(line()), network, weighing())
    assert plan.allocated("1") == {"NEAR": 1}
    assert plan.opportunity_cost == Decimal("1.00")


def test_a_line_waits_for_scarce_stock_only_when_the_profile_says_so() -> None:
    # NEAR alone, its unit worth 36 to later orders: 5.90 + 36 = 41.90 > 40 backorder.
    def network() -> Network:
        places = Network([location("NEAR", 100, {"LAMP": 1})])
        places.set_bid_prices({"LAMP": {"NEAR": 36.0}})
        return places

    served = plan_order(order(line()), network(), weighing())
    assert served.allocated("1") == {"NEAR": 1}
    assert served.backorders == {}
    waits = plan_order(order(line()), network(), weighing(opportunity_may_backorder=True))
    assert waits.allocations == ()
    assert waits.backorders == {"1": 1}
    assert waits.backorder_penalty == Decimal("40.00")
    assert "counting the stock opportunity cost" in waits.explanation[0].summary
    assert "stock opportunity" not in served.explanation[0].summary
    cheaper = Network([location("NEAR", 100, {"LAMP": 1})])
    cheaper.set_bid_prices({"LAMP": {"NEAR": 33.0}})  # 5.90 + 33 = 38.90 < 40: it ships
    plan = plan_order(order(line()), cheaper, weighing(opportunity_may_backorder=True))
    assert plan.allocated("1") == {"NEAR": 1}


def test_a_wave_weighs_the_opportunity_in_its_objective() -> None:
    # two orders of one LAMP; NEAR's units are worth 3 each to later orders, FAR's nothing:
    # both ship from FAR (2 x 7.60), against 2 x 8.90 from NEAR
    network = near_and_far(near_units=2, far_units=2)
    network.set_bid_prices({"LAMP": {"NEAR": 3.0}})
    orders = [order(line(), order_id="O1"), order(line(), order_id="O2")]
    wave = plan_wave(orders, network, weighing(), time_limit_seconds=5)
    assert [p.allocated("1") for p in wave.plans] == [{"FAR": 1}, {"FAR": 1}]
    assert sum(p.objective for p in wave.plans) == Decimal("15.20")
    assert wave.statistics.greedy_objective == Decimal("15.20")


def test_profile_documents_carry_the_weight_and_the_waiting_rule() -> None:
    profile = Profile(
        "scarce", weights={"stock_opportunity": Decimal("0.8")}, opportunity_may_backorder=True
    )
    document = profile_to_document(profile)
    assert document["weights"] == {"stock_opportunity": "0.8"}
    assert document["opportunity_may_backorder"] is True
    assert profile_from_document(document) == profile
    assert profile_from_document({"name": "plain"}).opportunity_may_backorder is False
