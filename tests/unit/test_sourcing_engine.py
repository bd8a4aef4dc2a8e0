"""The sourcing engine: each filter, each cost term and each split policy on hand-computed plans.

Geometry: locations sit on the equator, so one degree of longitude is 111.2 km. The default
shipping zones are <=150 km: 5.50 + 0.40/kg (1 day), <=500 km: 7.00 + 0.60/kg (2 days),
<=1200 km: 8.50 + 0.85/kg (3 days), <=2500 km: 10.00 + 1.10/kg (4 days), beyond: 12.00 + 1.40/kg.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oms.domain.sourcing.batch import plan_wave
from oms.domain.sourcing.model import (
    COLLECTED_AT_LOCATION,
    CandidateLocation,
    Capability,
    DeliveryMethod,
    GeoPoint,
    LocationStatus,
    LocationType,
    Network,
    SourcingInputInvalid,
    SourcingLine,
    SourcingOrder,
)
from oms.domain.sourcing.plan import SourcingPlan
from oms.domain.sourcing.planner import plan_order
from oms.domain.sourcing.profiles import (
    COST_TERM_NAMES,
    InvalidProfile,
    Profile,
    ProfileRule,
    ProfileSet,
    SplitPolicy,
    profile_from_document,
    profile_to_document,
    rule_from_document,
)

HOME = GeoPoint(0.0, 0.0)
MONDAY_9AM = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ALL_CAPABILITIES = frozenset({Capability.SHIP, Capability.PICKUP, Capability.CURBSIDE})


def at_km(km: float) -> GeoPoint:
    return GeoPoint(0.0, km / 111.19508)


def location(
    code: str,
    km: float,
    atp: Mapping[str, int],
    *,
    kind: LocationType = LocationType.DC,
    status: LocationStatus = LocationStatus.ACTIVE,
    capabilities: frozenset[Capability] = ALL_CAPABILITIES,
    capacity: int | None = None,
    handling: str = "0",
    priority: int = 0,
    cut_off_hour: float = 24.0,
) -> CandidateLocation:
    return CandidateLocation(
        code=code,
        type=kind,
        status=status,
        capabilities=capabilities,
        point=at_km(km),
        atp=dict(atp),
        remaining_capacity=capacity,
        handling_cost=Decimal(handling),
        priority=priority,
        cut_off_hour=cut_off_hour,
    )


def line(
    line_id: str = "1",
    sku: str = "LAMP",
    quantity: int = 1,
    method: DeliveryMethod = DeliveryMethod.SHIP,
    **flags: object,
) -> SourcingLine:
    collect = method in COLLECTED_AT_LOCATION or method is DeliveryMethod.SHIP_TO_STORE
    return SourcingLine(
        line_id=line_id,
        sku=sku,
        quantity=quantity,
        delivery_method=method,
        destination=None if collect else HOME,
        weight_kg=float(flags.pop("weight_kg", 1.0)),  # type: ignore[arg-type]
        **flags,  # type: ignore[arg-type]
    )


def order(*lines: SourcingLine, promise_on: date | None = None, **extra: object) -> SourcingOrder:
    return SourcingOrder(
        order_id=str(extra.pop("order_id", "O1")),
        channel=str(extra.pop("channel", "web")),
        lines=lines,
        placed_at=MONDAY_9AM,
        promise_on=promise_on,
        **extra,  # type: ignore[arg-type]
    )


def only(*terms: str, **settings_: object) -> Profile:
    """A profile in which only the named cost terms count."""
    weights = {term: Decimal(1 if term in terms else 0) for term in COST_TERM_NAMES}
    return Profile(name="test", weights=weights, **settings_)  # type: ignore[arg-type]


def source(
    locations: list[CandidateLocation], the_order: SourcingOrder, profile: Profile
) -> SourcingPlan:
    return plan_order(the_order, Network(locations), ProfileSet.single(profile))


def sources(plan: SourcingPlan, line_id: str = "1") -> dict[str, int]:
    return plan.allocated(line_id)


def why_excluded(plan: SourcingPlan, code: str, line_id: str = "1") -> tuple[str, str]:
    explained = next(x for x in plan.explanation if x.line_id == line_id)
    found = next(e for e in explained.excluded if e.location == code)
    return found.filter, found.reason


# -- filters -----------------------------------------------------------------------------------


def test_status_offline_and_closed_never_dark_only_for_non_walk_in() -> None:
    places = [
        location("OFF", 10, {"LAMP": 5}, status=LocationStatus.OFFLINE),
        location("SHUT", 20, {"LAMP": 5}, status=LocationStatus.CLOSED),
        location("DARK", 30, {"LAMP": 5}, kind=LocationType.STORE, status=LocationStatus.DARK),
        location("FAR", 900, {"LAMP": 5}),
    ]
    shipped = source(places, order(line()), only("shipping"))
    assert sources(shipped) == {"DARK": 1}
    assert why_excluded(shipped, "OFF") == ("status", "offline: takes no orders")
    assert why_excluded(shipped, "SHUT")[0] == "status"

    pickup = line(method=DeliveryMethod.PICKUP, pickup_location="DARK")
    collected = source(places, order(pickup), only("shipping"))
    assert collected.backorders == {"1": 1}
    assert why_excluded(collected, "DARK")[0] == "status"
    assert "walk-in" in why_excluded(collected, "DARK")[1]
    curbside = line(method=DeliveryMethod.CURBSIDE, pickup_location="DARK")
    assert source(places, order(curbside), only("shipping")).backorders == {"1": 1}


def test_capability_for_the_delivery_method() -> None:
    places = [
        location("NOSHIP", 10, {"LAMP": 5}, capabilities=frozenset({Capability.PICKUP})),
        location("SHIPS", 400, {"LAMP": 5}),
    ]
    plan = source(places, order(line()), only("shipping"))
    assert sources(plan) == {"SHIPS": 1}
    assert why_excluded(plan, "NOSHIP") == ("capability", "cannot ship")


def test_allowed_location_types_and_dropship_only_from_vendors() -> None:
    places = [
        location("STORE", 10, {"LAMP": 5}, kind=LocationType.STORE),
        location("DC", 400, {"LAMP": 5}),
        location("VENDOR", 800, {"LAMP": 5}, kind=LocationType.VENDOR),
    ]
    dc_only = only("shipping", allowed_types=frozenset({LocationType.DC}))
    plan = source(places, order(line()), dc_only)
    assert sources(plan) == {"DC": 1}
    assert why_excluded(plan, "STORE")[0] == "location_type"

    dropship = source(places, order(line(method=DeliveryMethod.DROPSHIP)), only("shipping"))
    assert sources(dropship) == {"VENDOR": 1}


def test_pickup_comes_only_from_the_chosen_store() -> None:
    places = [
        location("S1", 5, {"LAMP": 5}, kind=LocationType.STORE),
        location("S2", 50, {"LAMP": 5}, kind=LocationType.STORE),
    ]
    pickup = line(method=DeliveryMethod.PICKUP, pickup_location="S2")
    plan = source(places, order(pickup), only("shipping"))
    assert sources(plan) == {"S2": 1}
    assert why_excluded(plan, "S1") == ("pickup_location", "the customer collects at S2")
    assert plan.cost == Decimal("0.00")  # collected: no parcel


def test_ship_to_store_comes_from_a_dc_to_a_store_that_receives_transfers() -> None:
    receiving = frozenset({Capability.PICKUP, Capability.RECEIVE_TRANSFER})
    places = [
        location("STORE", 5, {"LAMP": 5}, kind=LocationType.STORE, capabilities=receiving),
        location("DC", 300, {"LAMP": 5}),
    ]
    to_store = line(method=DeliveryMethod.SHIP_TO_STORE, pickup_location="STORE")
    plan = source(places, order(to_store), only("shipping"))
    assert sources(plan) == {"DC": 1}
    not_receiving = [
        location("STORE", 5, {}, kind=LocationType.STORE, capabilities=frozenset()),
        places[1],
    ]
    refused = source(not_receiving, order(to_store), only("shipping"))
    assert refused.backorders == {"1": 1}
    assert why_excluded(refused, "DC")[0] == "pickup_location"


def test_excluded_and_preferred_locations() -> None:
    places = [location("NEAR", 10, {"LAMP": 5}), location("MID", 300, {"LAMP": 5})]
    excluded = source(places, order(line()), only("shipping", excluded_locations={"NEAR"}))
    assert sources(excluded) == {"MID": 1}
    assert why_excluded(excluded, "NEAR")[0] == "listed_locations"

    preferred_only = only("shipping", preferred_locations=frozenset({"MID"}), preferred_only=True)
    assert sources(source(places, order(line()), preferred_only)) == {"MID": 1}


def test_a_location_that_refused_is_never_chosen_again_for_that_line() -> None:
    places = [location("CHEAP", 10, {"LAMP": 5}), location("DEAR", 900, {"LAMP": 5})]
    replan = order(line(quantity=2), refused={"1": frozenset({"CHEAP"})})
    plan = source(places, replan, only("shipping"))
    assert sources(plan) == {"DEAR": 2}
    assert why_excluded(plan, "CHEAP")[0] == "refused"


def test_item_eligibility_ship_from_store_hazmat_and_pickup() -> None:
    places = [
        location("STORE", 10, {"LAMP": 5}, kind=LocationType.STORE),
        location("DC", 300, {"LAMP": 5}),
        location("3PL", 20, {"LAMP": 5}, kind=LocationType.THIRD_PARTY),
    ]
    no_store = source(places, order(line(ship_from_store_allowed=False)), only("shipping"))
    assert sources(no_store) == {"3PL": 1}
    assert why_excluded(no_store, "STORE")[0] == "item_eligibility"

    hazmat = source(places, order(line(hazmat=True)), only("shipping"))
    assert sources(hazmat) == {"DC": 1}
    assert "hazardous" in why_excluded(hazmat, "3PL")[1]

    pickup = line(method=DeliveryMethod.PICKUP, pickup_location="STORE", pickup_allowed=False)
    assert source(places, order(pickup), only("shipping")).backorders == {"1": 1}


def test_maximum_distance() -> None:
    places = [location("FAR", 600, {"LAMP": 5}), location("NEAR", 100, {"LAMP": 1})]
    plan = source(places, order(line(quantity=2)), only("shipping", max_distance_km=500.0))
    assert sources(plan) == {"NEAR": 1}
    assert plan.backorders == {"1": 1}
    assert why_excluded(plan, "FAR") == ("max_distance", "600 km away, beyond the 500 km limit")


def test_remaining_capacity_excludes_and_limits() -> None:
    places = [
        location("FULL", 10, {"LAMP": 5}, capacity=0),
        location("TWO", 20, {"LAMP": 5}, capacity=2),
        location("FAR", 900, {"LAMP": 5}),
    ]
    plan = source(places, order(line(quantity=3)), only("shipping", split_policy=SplitPolicy.ALLOW))
    assert why_excluded(plan, "FULL") == ("capacity", "no fulfillment capacity left today")
    # TWO 2 + FAR 1 would cost (5.50 + 0.80) + (8.50 + 0.85) = 15.65; FAR alone 8.50 + 2.55
    assert sources(plan) == {"FAR": 3}
    assert plan.cost == Decimal("11.05")
    limited = source(places[:2], order(line(quantity=3)), only("shipping"))
    assert sources(limited) == {"TWO": 2}
    assert limited.backorders == {"1": 1}


def test_cut_off_and_promise_date() -> None:
    # placed 09:00, 2 h to pick: a 10:00 cut-off means it leaves tomorrow, arriving in 2 days
    places = [
        location("LATE", 10, {"LAMP": 5}, cut_off_hour=10.0),
        location("ONTIME", 300, {"LAMP": 5}),
    ]
    tomorrow = date(2026, 1, 6)
    strict = only("shipping", max_late_days=0)
    plan = source(places, order(line(), promise_on=tomorrow), strict)
    # ONTIME leaves today but zone 2 takes 2 days: also late, so nothing qualifies
    assert plan.backorders == {"1": 1}
    assert why_excluded(plan, "LATE")[0] == "promise"
    in_two_days = source(places, order(line(), promise_on=date(2026, 1, 7)), strict)
    assert sources(in_two_days) == {"LATE": 1}


def test_minimum_atp() -> None:
    places = [location("THIN", 10, {"LAMP": 2}), location("DEEP", 300, {"LAMP": 9})]
    plan = source(places, order(line()), only("shipping", minimum_atp=3))
    assert sources(plan) == {"DEEP": 1}
    assert why_excluded(plan, "THIN") == (
        "minimum_atp",
        "only 2 LAMP available, the profile needs at least 3",
    )


# -- cost terms --------------------------------------------------------------------------------


def test_shipping_by_zone_and_weight() -> None:
    places = [location("DC", 300, {"LAMP": 5})]
    plan = source(places, order(line(quantity=2, weight_kg=1.5)), only("shipping"))
    assert plan.cost == Decimal("8.80")  # zone 2: 7.00 + 0.60 * 3 kg
    assert plan.shipments[0].terms["shipping"] == Decimal("8.80")


def test_ship_alone_items_pay_one_parcel_each() -> None:
    places = [location("DC", 100, {"TV": 5})]
    plan = source(places, order(line(sku="TV", quantity=2, ship_alone=True)), only("shipping"))
    assert plan.cost == Decimal("11.80")  # 2 x (5.50 + 0.40)


def test_handling_cost_decides_between_equal_distances() -> None:
    places = [
        location("DEAR", 100, {"LAMP": 5}, handling="2.00"),
        location("CHEAP", 100, {"LAMP": 5}, handling="1.25"),
    ]
    plan = source(places, order(line(quantity=3)), only("shipping", "handling"))
    assert sources(plan) == {"CHEAP": 3}
    assert plan.terms["handling"] == Decimal("3.75")
    assert plan.cost == Decimal("10.45")  # 5.50 + 3 x 0.40 + 3 x 1.25


def test_split_penalty_per_extra_shipment() -> None:
    places = [location("A", 100, {"LAMP": 2}), location("B", 100, {"LAMP": 2})]
    plan = source(places, order(line(quantity=3)), only("shipping", "split"))
    assert sorted(sources(plan).values()) == [1, 2]
    # two parcels of 5.50 + 0.40/unit, plus one extra shipment at 3.00
    assert plan.terms["split"] == Decimal("3.00")
    assert plan.cost == Decimal("15.20")


def test_lateness_against_the_promise_date() -> None:
    places = [location("SLOW", 10, {"LAMP": 5}, cut_off_hour=10.0)]
    plan = source(places, order(line(), promise_on=date(2026, 1, 6)), only("lateness"))
    # leaves tomorrow (cut-off), 1 day in transit: 1 day late at 4.00
    assert plan.cost == Decimal("4.00")


def test_store_priority_and_preferred_discount() -> None:
    places = [
        location("RANK3", 100, {"LAMP": 5}, kind=LocationType.STORE, priority=3),
        location("RANK1", 100, {"LAMP": 5}, kind=LocationType.STORE, priority=1),
    ]
    plan = source(places, order(line(quantity=2)), only("store_priority"))
    assert sources(plan) == {"RANK1": 2}
    assert plan.cost == Decimal("0.10")  # 1 rank x 0.05 x 2 units
    preferring = only("store_priority", preferred_locations=frozenset({"RANK3"}))
    assert sources(source(places, order(line(quantity=2)), preferring)) == {"RANK3": 2}


def test_stock_balance_protects_a_stores_last_units() -> None:
    places = [
        location("SHALLOW", 100, {"LAMP": 3}, kind=LocationType.STORE),
        location("DEEP", 100, {"LAMP": 9}, kind=LocationType.STORE),
    ]
    plan = source(places, order(line(quantity=2)), only("stock_balance"))
    assert sources(plan) == {"DEEP": 2}
    assert plan.cost == Decimal("0.00")
    alone = [location("SHALLOW", 100, {"LAMP": 3}, kind=LocationType.STORE)]
    # 3 on hand, 2 protected: the second unit is a last unit at 2.50
    assert source(alone, order(line(quantity=2)), only("stock_balance")).cost == Decimal("2.50")


def test_a_zero_weight_switches_a_term_off_and_weights_multiply() -> None:
    places = [location("DC", 100, {"LAMP": 5}, handling="1.00")]
    double = Profile(
        name="x", weights={"handling": Decimal(2), **{t: Decimal(0) for t in ("shipping",)}}
    )
    assert source(places, order(line()), double).cost == Decimal("2.00")


# -- split policies ----------------------------------------------------------------------------


def two_lines() -> SourcingOrder:
    return order(line("1", "LAMP", 1), line("2", "SHADE", 1))


SPLIT_PLACES = [
    location("LAMPS", 10, {"LAMP": 5}),
    location("SHADES", 10, {"SHADE": 5}),
    location("BOTH", 1000, {"LAMP": 5, "SHADE": 5}),
]


def test_never_ships_everything_from_one_location() -> None:
    plan = source(SPLIT_PLACES, two_lines(), only("shipping", split_policy=SplitPolicy.NEVER))
    assert plan.shipment_count == 1
    assert sources(plan, "1") == {"BOTH": 1} and sources(plan, "2") == {"BOTH": 1}
    assert plan.cost == Decimal("10.20")  # zone 3: 8.50 + 2 x 0.85


def test_never_backorders_what_one_location_cannot_serve() -> None:
    plan = source(SPLIT_PLACES[:2], two_lines(), only("shipping", split_policy=SplitPolicy.NEVER))
    assert plan.shipment_count == 1
    assert plan.backordered_units == 1


def test_allow_splits_when_two_parcels_are_cheaper() -> None:
    plan = source(SPLIT_PLACES, two_lines(), only("shipping", split_policy=SplitPolicy.ALLOW))
    # two local parcels: 2 x (5.50 + 0.40) = 11.80 > 10.20 from BOTH: one parcel still wins
    assert plan.shipment_count == 1 and plan.cost == Decimal("10.20")
    cheap_far = [
        *SPLIT_PLACES[:2],
        location("BOTH", 3000, {"LAMP": 5, "SHADE": 5}),
    ]
    plan = source(cheap_far, two_lines(), only("shipping", "split"))
    # BOTH: 12.00 + 2 x 1.40 = 14.80; two parcels: 11.80 + 3.00 split = 14.80 -> one parcel
    assert plan.shipment_count == 1
    split_cheaper = source(cheap_far, two_lines(), only("shipping"))
    assert split_cheaper.shipment_count == 2 and split_cheaper.cost == Decimal("11.80")


def test_allow_splits_a_line_but_minimise_takes_fewest_parcels() -> None:
    places = [
        location("A", 10, {"LAMP": 2}),
        location("B", 10, {"LAMP": 2}),
        location("C", 10, {"LAMP": 1, "SHADE": 1}),
    ]
    the_order = order(line("1", "LAMP", 3), line("2", "SHADE", 1))
    minimise = source(places, the_order, only("shipping", split_policy=SplitPolicy.MINIMISE))
    allow = source(places, the_order, only("shipping", split_policy=SplitPolicy.ALLOW))
    assert minimise.shipment_count == 2
    assert minimise.backordered_units == 0
    assert allow.backordered_units == 0
    assert sum(sources(allow, "1").values()) == 3


def test_max_shipments_caps_a_split() -> None:
    places = [location(f"L{i}", 10 * (i + 1), {"LAMP": 1}) for i in range(4)]
    plan = source(places, order(line(quantity=4)), only("shipping", max_shipments=2))
    assert plan.shipment_count == 2
    assert plan.backorders == {"1": 2}


# -- profiles chosen by rules ------------------------------------------------------------------


def test_rules_choose_a_profile_per_line() -> None:
    profiles = ProfileSet(
        [Profile("default"), Profile("big", split_policy=SplitPolicy.NEVER), Profile("hazmat")],
        [
            ProfileRule("dangerous", "hazmat", priority=1, item_flags=frozenset({"hazmat"})),
            ProfileRule("big baskets", "big", priority=2, min_order_value=Decimal("500")),
        ],
    )
    big = order(line("1"), line("2", hazmat=True), order_value=Decimal("800"))
    assert profiles.choose(big, big.lines[0]).profile.name == "big"
    assert profiles.choose(big, big.lines[1]).rule == "dangerous"
    small = order(line("1"), order_value=Decimal("20"))
    assert profiles.choose(small, small.lines[0]).rule is None


def test_profile_documents_round_trip_and_report_every_problem() -> None:
    profile = Profile(
        "stores first",
        max_distance_km=800.0,
        weights={"shipping": Decimal("1.5")},
        split_policy=SplitPolicy.MINIMISE,
    )
    assert profile_from_document(profile_to_document(profile)) == profile
    with pytest.raises(InvalidProfile) as refused:
        profile_from_document(
            {"name": "", "split_policy": "sometimes", "weights": {"magic": 1}, "colour": "red"}
        )
    pointers = {e["pointer"] for e in refused.value.extensions["errors"]}
    assert pointers == {"#/name", "#/split_policy", "#/weights/magic", "#/colour"}
    with pytest.raises(InvalidProfile):
        rule_from_document({"name": "r", "profile": "p", "item_flags": ["fragile"]})


def test_bad_input_is_refused() -> None:
    with pytest.raises(SourcingInputInvalid):
        line(quantity=0)
    with pytest.raises(SourcingInputInvalid):
        SourcingLine("1", "LAMP", 1, DeliveryMethod.PICKUP)  # no pickup location
    with pytest.raises(SourcingInputInvalid):
        Network([location("X", 1, {}), location("X", 2, {})])


# -- the batch planner -------------------------------------------------------------------------


def test_a_wave_beats_greedy_when_the_first_order_would_take_the_only_stock() -> None:
    # Greedy gives order 1 the near store's LAMP; order 2 (SHADE+LAMP) must then split.
    places = [
        location("NEAR", 10, {"LAMP": 1, "SHADE": 1}),
        location("MID", 50, {"LAMP": 5}),
    ]
    first = order(line("1", "LAMP", 1), order_id="O1")
    second = order(line("1", "LAMP", 1), line("2", "SHADE", 1), order_id="O2")
    profile = ProfileSet.single(only("shipping", "split"))
    greedy_network = Network(places)
    greedy = [plan_order(o, greedy_network, profile) for o in (first, second)]
    wave = plan_wave([first, second], Network(places), profile, time_limit_seconds=5)
    assert sum(p.objective for p in wave.plans) < sum(p.objective for p in greedy)
    assert wave.statistics.chosen == "batch"
    assert wave.plans[1].shipment_count == 1
    relaxed = plan_wave([first, second], Network(places), profile, relaxation=True)
    assert relaxed.statistics.dual_bound is not None
    assert relaxed.statistics.dual_bound <= float(sum(p.objective for p in wave.plans)) + 1e-6


@settings(max_examples=25, deadline=None)
@given(
    stock=st.lists(st.integers(min_value=0, max_value=3), min_size=4, max_size=4),
    quantities=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=5),
    policy=st.sampled_from(list(SplitPolicy)),
)
def test_plans_never_allocate_more_than_atp_and_account_for_every_unit(
    stock: list[int], quantities: list[int], policy: SplitPolicy
) -> None:
    places = [location(f"L{i}", 100 * (i + 1), {"LAMP": s}) for i, s in enumerate(stock)]
    orders = [order(line("1", "LAMP", q), order_id=f"O{n}") for n, q in enumerate(quantities)]
    profiles = ProfileSet.single(Profile("p", split_policy=policy))
    objectives: dict[str, Decimal] = {}
    for planner in ("greedy", "batch"):
        network = Network(places)
        if planner == "greedy":
            plans = [plan_order(o, network, profiles) for o in orders]
        else:
            plans = list(plan_wave(orders, network, profiles, time_limit_seconds=2).plans)
        taken: dict[str, int] = {}
        for the_order, plan in zip(orders, plans, strict=True):
            served = sum(a.quantity for a in plan.allocations)
            assert served + plan.backordered_units == the_order.lines[0].quantity
            for allocation in plan.allocations:
                taken[allocation.location] = taken.get(allocation.location, 0) + (
                    allocation.quantity
                )
        for place in places:
            assert taken.get(place.code, 0) <= place.atp["LAMP"]
        objectives[planner] = sum((plan.objective for plan in plans), Decimal(0))
        assert sum(taken.values()) == min(sum(stock), sum(quantities)) or policy != (
            SplitPolicy.ALLOW
        )
    assert objectives["batch"] <= objectives["greedy"]  # a wave is never worse than greedy
