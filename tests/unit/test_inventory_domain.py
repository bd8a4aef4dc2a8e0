"""ATP arithmetic, channel buffers, snapshot ordering, distances and promise dates."""

from __future__ import annotations

from datetime import UTC, datetime, time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.domain.errors import Invalid
from oms.domain.inventory import (
    ChannelBuffer,
    DeltaKind,
    Position,
    PositionChange,
    atp,
    change_events,
    delta_change,
    snapshot_is_stale,
)
from oms.domain.locations import Location, LocationType, haversine_km, validate_location
from oms.domain.promising import DeliveryMethod, DistanceTransitModel, earliest_promise

counts = st.integers(min_value=0, max_value=10_000)


@given(counts, counts, counts, counts, counts)
def test_atp_is_never_negative_and_is_the_formula_when_positive(
    on_hand: int, allocated: int, reserved: int, blocked: int, safety: int
) -> None:
    value = atp(
        on_hand=on_hand,
        allocated=allocated,
        reserved=reserved,
        blocked=blocked,
        safety_stock=safety,
    )
    assert value >= 0
    assert value == max(0, on_hand - allocated - reserved - blocked - safety)


@given(counts, st.integers(0, 100), st.integers(0, 50))
def test_a_channel_never_sees_more_than_the_pool(available: int, percent: int, units: int) -> None:
    seen = ChannelBuffer("marketplace", percent=percent, units=units).apply(available)
    assert 0 <= seen <= available
    assert ChannelBuffer("web").apply(available) == available


def test_channel_buffer_example() -> None:
    assert ChannelBuffer("marketplace", percent=50, units=1).apply(20) == 9


@given(st.lists(st.integers(-50, 500), max_size=30), st.integers(0, 100), st.integers(0, 50))
def test_a_buffer_over_an_array_is_the_buffer_of_each_figure(
    figures: list[int], percent: int, units: int
) -> None:
    for buffer in (ChannelBuffer("web"), ChannelBuffer("marketplace", percent, units)):
        seen = buffer.apply_all(np.array(figures, dtype=np.int64))
        assert seen.tolist() == [buffer.apply(figure) for figure in figures]


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_sequences_decide_over_timestamps(sequence: int, last: int) -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    stale = snapshot_is_stale(as_of=now, sequence=sequence, last_as_of=now, last_sequence=last)
    assert stale == (sequence <= last)


def test_deltas_have_signs_and_reject_nonsense() -> None:
    assert delta_change(DeltaKind.RECEIPT, 3) == 3
    assert delta_change(DeltaKind.SALE, 3) == -3
    assert delta_change(DeltaKind.COUNT_CORRECTION, -2) == -2
    with pytest.raises(Invalid):
        delta_change(DeltaKind.SHRINK, -1)
    with pytest.raises(Invalid):
        delta_change(DeltaKind.COUNT_CORRECTION, 0)


def _position(on_hand: int) -> Position:
    return Position("A", "L", on_hand=on_hand, allocated=0, reserved=0, blocked=0, safety_stock=0)


def test_threshold_events_fire_only_on_crossing() -> None:
    def types(before: int, after: int) -> list[str]:
        change = PositionChange("A", "L", "x", _position(before), _position(after), 3)
        return [event.type for event in change_events(change)]

    assert types(10, 3) == ["inventory.changed", "availability.low"]
    assert types(3, 2) == ["inventory.changed"]
    assert types(2, 0) == ["inventory.changed", "availability.out"]
    assert types(0, 0) == ["inventory.changed"]


def test_haversine_new_york_to_boston() -> None:
    assert haversine_km(40.7128, -74.0060, 42.3601, -71.0589) == pytest.approx(306, abs=2)
    assert haversine_km(10, 10, 10, 10) == 0


def test_a_location_reports_every_bad_field() -> None:
    with pytest.raises(Invalid) as refused:
        validate_location(
            Location(
                code="bad code",
                name="",
                type=LocationType.STORE,
                latitude=91,
                longitude=0,
                timezone="Nowhere/City",
            )
        )
    pointers = {e["pointer"] for e in refused.value.extensions["errors"]}
    assert pointers == {"#/code", "#/name", "#/latitude", "#/timezone"}


STORE = Location(
    code="S1",
    name="Store",
    type=LocationType.STORE,
    latitude=40.7,
    longitude=-74.0,
    timezone="America/New_York",
    pick_minutes=30,
    cutoff_time=time(15, 0),
    opening_hours={"mon": [(time(9), time(21))], "tue": [(time(9), time(21))]},
)


def test_before_opening_a_pickup_is_ready_after_opening_plus_pick_time() -> None:
    monday_8_local = datetime(2026, 1, 5, 13, 0, tzinfo=UTC)  # 08:00 in New York
    promise = earliest_promise(
        STORE, now=monday_8_local, method=DeliveryMethod.PICKUP, transit=DistanceTransitModel()
    )
    assert promise.ready_at == datetime(2026, 1, 5, 14, 30, tzinfo=UTC)  # 09:30 local
    assert promise.ship_on is None


def test_after_the_cut_off_a_parcel_ships_the_next_open_day() -> None:
    monday_16_local = datetime(2026, 1, 5, 21, 0, tzinfo=UTC)
    promise = earliest_promise(
        STORE,
        now=monday_16_local,
        method=DeliveryMethod.SHIP,
        transit=DistanceTransitModel(),
        distance_km=1700,
    )
    assert str(promise.ship_on) == "2026-01-06"
    assert str(promise.deliver_on) == "2026-01-09"  # 1 day + 2 x 800 km


def test_after_closing_on_the_last_open_day_the_next_opening_is_next_week() -> None:
    tuesday_22_local = datetime(2026, 1, 7, 3, 0, tzinfo=UTC)
    promise = earliest_promise(
        STORE, now=tuesday_22_local, method=DeliveryMethod.PICKUP, transit=DistanceTransitModel()
    )
    assert str(promise.deliver_on) == "2026-01-12"  # Monday
