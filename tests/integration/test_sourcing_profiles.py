"""Sourcing profiles and rules as versioned data, and simulations that change nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from oms.bootstrap import Services
from oms.domain.errors import Conflict, Invalid, NotFound
from oms.domain.sourcing.model import (
    CandidateLocation,
    Capability,
    DeliveryMethod,
    GeoPoint,
    LocationStatus,
    LocationType,
    SourcingLine,
    SourcingOrder,
)
from oms.domain.sourcing.profiles import SplitPolicy

pytestmark = pytest.mark.postgres

SHIP = frozenset({Capability.SHIP})


def snapshot() -> list[CandidateLocation]:
    return [
        CandidateLocation(
            "DC-EAST",
            LocationType.DC,
            LocationStatus.ACTIVE,
            SHIP,
            GeoPoint(40.7, -74.0),
            {"LAMP": 50},
        ),
        CandidateLocation(
            "DC-WEST",
            LocationType.DC,
            LocationStatus.ACTIVE,
            SHIP,
            GeoPoint(34.05, -118.24),
            {"LAMP": 50},
        ),
    ]


def orders(count: int) -> list[SourcingOrder]:
    return [
        SourcingOrder(
            order_id=f"O{n}",
            channel="web",
            lines=(SourcingLine("1", "LAMP", 1, DeliveryMethod.SHIP, GeoPoint(40.0, -75.0)),),
            placed_at=datetime(2026, 1, 5, 9, tzinfo=UTC),
        )
        for n in range(count)
    ]


def test_profiles_are_versioned_and_every_change_is_evented(services: Services) -> None:
    created = services.sourcing.create_profile(
        {"name": "web", "split_policy": "never"}, changed_by="ops"
    )
    assert created.version == 1
    assert created.document["split_policy"] == "never"

    changed = services.sourcing.update_profile(
        "web", {"split_policy": "allow", "max_shipments": 2}, changed_by="ops", expected_version=1
    )
    assert changed.version == 2
    assert [p.version for p in services.sourcing.profile_versions("web")] == [1, 2]
    assert services.sourcing.get_profile("web", 1).document["split_policy"] == "never"
    assert services.sourcing.get_profile("web").document["max_shipments"] == 2
    assert services.sourcing.profile_set().profiles["web"].split_policy is SplitPolicy.ALLOW

    with pytest.raises(Conflict):
        services.sourcing.update_profile("web", {}, changed_by="ops", expected_version=1)
    with pytest.raises(Conflict):
        services.sourcing.create_profile({"name": "web"}, changed_by="ops")
    with pytest.raises(NotFound):
        services.sourcing.update_profile("nope", {}, changed_by="ops")

    events = services.events.read(types=["sourcing.profile_changed"])
    assert [(e.data["name"], e.data["version"]) for e in events] == [("web", 1), ("web", 2)]


def test_setting_an_unchanged_profile_stores_no_new_version(services: Services) -> None:
    first = services.sourcing.set_profile({"name": "p", "minimum_atp": 2}, changed_by="cli")
    again = services.sourcing.set_profile({"name": "p", "minimum_atp": 2}, changed_by="cli")
    assert first.version == again.version == 1


def test_a_bad_profile_is_refused_with_pointers_and_stores_nothing(services: Services) -> None:
    with pytest.raises(Invalid) as refused:
        services.sourcing.create_profile(
            {"name": "x", "max_shipments": 0, "zones": [{"up_to_km": 10}]}, changed_by="ops"
        )
    pointers = {e["pointer"] for e in refused.value.extensions["errors"]}
    assert "#/max_shipments" in pointers and "#/zones" in pointers
    assert services.sourcing.list_profiles() == []


def test_rules_must_name_existing_profiles_and_choose_per_line(services: Services) -> None:
    with pytest.raises(Invalid):
        services.sourcing.set_rules(
            {"rules": [{"name": "r", "profile": "missing"}]}, changed_by="ops"
        )
    services.sourcing.create_profile({"name": "marketplace"}, changed_by="ops")
    rules = services.sourcing.set_rules(
        {"rules": [{"name": "mp", "profile": "marketplace", "channels": ["marketplace"]}]},
        changed_by="ops",
    )
    assert rules.version == 1
    profile_set = services.sourcing.profile_set()
    order = orders(1)[0]
    assert profile_set.choose(order, order.lines[0]).profile.name == "default"


def test_simulating_an_outage_changes_sources_and_no_data(services: Services) -> None:
    services.sourcing.create_profile({"name": "default"}, changed_by="ops")
    outcome = services.sourcing.simulate(
        orders(3), snapshot(), outage={"DC-EAST": LocationStatus.OFFLINE}
    )
    assert outcome.orders == 3
    assert len(outcome.changed_orders) == 3
    assert all("@DC-WEST" in c.simulated_sources[0] for c in outcome.changed_orders)
    assert outcome.simulated.total_cost > outcome.current.total_cost
    cheaper_split = services.sourcing.simulate(
        orders(2), snapshot(), profile={"name": "default", "weights": {"shipping": "0"}}
    )
    assert cheaper_split.simulated.fulfillment_cost < cheaper_split.current.fulfillment_cost
    assert [p.version for p in services.sourcing.profile_versions("default")] == [1]
    assert services.sourcing.rules().version == 0
    with pytest.raises(Invalid):
        services.sourcing.simulate(orders(1), snapshot())


def test_plan_uses_the_stored_profiles(services: Services) -> None:
    services.sourcing.create_profile(
        {"name": "default", "excluded_locations": ["DC-EAST"]}, changed_by="ops"
    )
    plan = services.sourcing.plan(orders(1)[0], snapshot())
    assert plan.allocated("1") == {"DC-WEST": 1}
    assert plan.explanation[0].excluded[0].filter == "listed_locations"
    assert plan.cost > Decimal(0)


def test_a_wave_is_planned_with_the_stored_profiles(services: Services) -> None:
    services.sourcing.create_profile(
        {"name": "default", "mode": "batch", "batch_time_limit_seconds": 2}, changed_by="ops"
    )
    wave = services.sourcing.plan_wave(orders(4), snapshot())
    assert len(wave.plans) == 4
    assert all(plan.allocated("1") == {"DC-EAST": 1} for plan in wave.plans)
    assert wave.statistics.solver_status == "optimal"


def test_decisions_are_stored_with_their_explanation_and_evented(services: Services) -> None:
    plan = services.sourcing.plan(orders(1)[0], snapshot())
    stored = services.sourcing.record_decision(plan, trigger="capture")
    assert stored.decision_id > 0
    replanned = services.sourcing.plan(orders(1)[0], [snapshot()[1]])  # as if DC-EAST had gone away
    services.sourcing.record_decision(replanned, trigger="outage")

    history = services.sourcing.decisions("O0")
    assert [d.trigger for d in history] == ["capture", "outage"]
    assert history[0].cost == plan.cost
    line = history[0].plan["explanation"][0]
    assert line["chosen"] == [{"location": "DC-EAST", "quantity": 1}]
    assert {c["location"] for c in line["candidates"]} == {"DC-EAST", "DC-WEST"}
    assert "shipping" in line["candidates"][0]["terms"]
    events = services.events.read(types=["sourcing.order_sourced"])
    assert [e.subject for e in events] == ["orders/O0", "orders/O0"]
    assert events[1].data["locations"] == ["DC-WEST"]
    with pytest.raises(NotFound):
        services.sourcing.decisions("O-unknown")
    with pytest.raises(Invalid):
        services.sourcing.record_decision(plan, trigger="whim")


def test_a_dc_outage_re_sources_every_open_order_and_stores_the_decisions(
    services: Services,
) -> None:
    open_orders = orders(5)
    open_allocations = {o.order_id: {"1": {"DC-EAST": 1}} for o in open_orders}
    outcome = services.sourcing.replan_outage(
        open_orders, open_allocations, snapshot(), statuses={"DC-EAST": LocationStatus.OFFLINE}
    )
    assert outcome.affected_units == 5
    assert outcome.re_sourced_units == 5 and outcome.backordered_units == 0
    for o in open_orders:
        (decision,) = services.sourcing.decisions(o.order_id)
        assert decision.trigger == "outage"
        assert decision.plan["allocations"][0]["location"] == "DC-WEST"
