"""The fulfillment's steps, each checked against the current state (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.domain.fulfillment import (
    Fulfillment,
    FulfillmentLine,
    FulfillmentStatus,
    FulfillmentStepRefused,
    InvalidFulfillmentStep,
    Package,
    PickupCodeMismatch,
)

AT = datetime(2026, 1, 5, 9, tzinfo=UTC)
ONE = Decimal("1")


def released(method: str = "ship", *quantities: int) -> Fulfillment:
    return Fulfillment.release(
        id="F-1",
        order_id="O-1",
        order_number="W-1",
        location_code="DC-1",
        delivery_method=method,
        lines=[FulfillmentLine(n, f"SKU-{n}", q) for n, q in enumerate(quantities or (2,), 1)],
        at=AT,
        actor="test",
    )


def test_nothing_ships_before_it_is_picked_and_packed() -> None:
    f = released("ship", 2)
    with pytest.raises(FulfillmentStepRefused, match="cannot be shipped"):
        f.ship(carrier="UPS", service="g", tracking={"P1": "1"}, shipment_id="S", at=AT, actor="t")
    f.confirm_pick(1, 2, at=AT, actor="t")
    with pytest.raises(FulfillmentStepRefused, match="needs 'packed'"):
        f.ship(carrier="UPS", service="g", tracking={"P1": "1"}, shipment_id="S", at=AT, actor="t")
    with pytest.raises(FulfillmentStepRefused, match="pack exactly what was picked"):
        f.pack([Package("P1", ONE, ONE, ONE, ONE, {1: 1})], at=AT, actor="t")
    f.pack([Package("P1", ONE, ONE, ONE, ONE, {1: 2})], at=AT, actor="t")
    with pytest.raises(InvalidFulfillmentStep, match="one tracking number per package"):
        f.ship(carrier="UPS", service="g", tracking={"P2": "1"}, shipment_id="S", at=AT, actor="t")
    f.ship(carrier="UPS", service="g", tracking={"P1": "1Z"}, shipment_id="S", at=AT, actor="t")
    assert f.status is FulfillmentStatus.SHIPPED
    assert f.packages[0].tracking_number == "1Z"


def test_reject_is_refused_once_something_is_picked() -> None:
    f = released("ship", 2, 1)
    f.confirm_pick(1, 1, at=AT, actor="t")
    with pytest.raises(FulfillmentStepRefused, match="picks confirmed"):
        f.reject("no staff", at=AT, actor="t")


def test_hand_over_needs_the_code_or_an_override() -> None:
    f = released("pickup", 1)
    f.confirm_pick(1, 1, at=AT, actor="t")
    f.ready_for_pickup(pickup_code="ABC234", collect_by=AT + timedelta(days=7), at=AT, actor="t")
    with pytest.raises(PickupCodeMismatch):
        f.hand_over(pickup_code="ABC235", override_reason=None, at=AT, actor="t")
    with pytest.raises(InvalidFulfillmentStep):
        f.hand_over(pickup_code=None, override_reason="  ", at=AT, actor="t")
    f.hand_over(pickup_code=None, override_reason="ID checked", at=AT, actor="t")
    assert f.status is FulfillmentStatus.COLLECTED


@given(st.lists(st.tuples(st.integers(1, 9), st.integers(0, 9)), min_size=1, max_size=5))
def test_picked_plus_short_is_always_what_was_released(pairs: list[tuple[int, int]]) -> None:
    quantities = [quantity for quantity, _ in pairs]
    f = released("ship", *quantities)
    for line_no, (quantity, found) in enumerate(pairs, 1):
        short = f.confirm_pick(line_no, min(found, quantity), at=AT, actor="t")
        assert short == quantity - min(found, quantity)
    assert all(x.picked + x.short == x.quantity for x in f.lines)
    picked_any = any(x.picked for x in f.lines)
    assert f.status is (FulfillmentStatus.PICKED if picked_any else FulfillmentStatus.CANCELLED)
    restored = Fulfillment.from_row(
        id=f.id,
        order_id=f.order_id,
        order_number=f.order_number,
        location_code=f.location_code,
        destination_code=None,
        delivery_method=f.delivery_method,
        status=f.status.value,
        pickup_code=None,
        created_at=AT,
        updated_at=AT,
        version=1,
        document=f.to_document(),
    )
    assert [x.describe() for x in restored.lines] == [x.describe() for x in f.lines]
