"""The order domain: capture validation, quantity states, derived statuses, holds and changes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oms.domain.orders import (
    TRANSITIONS,
    Address,
    Channel,
    Customer,
    Delivery,
    DeliveryMethod,
    Freed,
    HoldType,
    InvalidOrder,
    LineRequest,
    Order,
    OrderChangeRefused,
    OrderOnHold,
    QuantityState,
    QuantityTransitionRefused,
    Totals,
    card_number_pointers,
    derive_status,
    looks_like_card_number,
)

Q = QuantityState
AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
HOME = Address(
    name="Ann Lee", line1="1 Main St", city="Springfield", postal_code="12345", country="US"
)
SHIP = Delivery(DeliveryMethod.SHIP, address=HOME)
PICKUP_S1 = Delivery(DeliveryMethod.PICKUP, pickup_location_code="S1")


def an_order(*lines: LineRequest, totals: Totals | None = None, **extra: object) -> Order:
    return Order.capture(
        order_id="o-1",
        order_number="W-1",
        channel=Channel.WEB,
        channel_reference="web-1",
        customer=Customer(email="ann@example.com"),
        currency="USD",
        lines=lines or [LineRequest("LAMP", 5, Decimal("10.00"), SHIP)],
        at=AT,
        actor="tester",
        totals=totals,
        **extra,  # type: ignore[arg-type]
    )


# --- statuses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantities", "expected"),
    [
        ({Q.OPEN: 5}, "open"),
        ({Q.ALLOCATED: 3, Q.BACKORDERED: 2}, "partially_allocated"),
        ({Q.SHIPPED: 2, Q.ALLOCATED: 3}, "partially_shipped"),
        ({Q.SHIPPED: 2, Q.CANCELLED: 3}, "shipped"),
        ({Q.CANCELLED: 5}, "cancelled"),
        ({Q.DELIVERED: 1, Q.COLLECTED: 2}, "completed"),
        ({Q.DELIVERED: 4, Q.RETURNED: 1}, "partially_returned"),
        ({Q.READY_FOR_PICKUP: 1, Q.PICKED: 1}, "partially_ready_for_pickup"),
        ({Q.OPEN: 0, Q.BACKORDERED: 2}, "backordered"),
    ],
)
def test_statuses_are_derived_from_quantities(
    quantities: dict[QuantityState, int], expected: str
) -> None:
    assert derive_status(quantities) == expected


def test_a_line_walks_the_lifecycle_with_partial_quantities() -> None:
    order = an_order()
    order.apply_sourcing(
        allocations=[(1, "DC1", 3)], backorders=[(1, 2, date(2026, 1, 20))], actor="t", at=AT
    )
    line = order.line(1)
    assert line.status == "partially_allocated"
    assert line.promised_on == date(2026, 1, 20)
    order.release(actor="t", at=AT)
    assert (line.quantity_in(Q.RELEASED, "DC1"), line.quantity_in(Q.BACKORDERED)) == (3, 2)
    assert order.status == "partially_released"
    order.move_quantity(
        1, 3, source=Q.RELEASED, target=Q.PICKED, location_code="DC1", actor="t", at=AT
    )
    order.move_quantity(
        1, 2, source=Q.PICKED, target=Q.SHIPPED, location_code="DC1", actor="t", at=AT
    )
    assert line.by_state() == {Q.PICKED: 1, Q.SHIPPED: 2, Q.BACKORDERED: 2}
    assert order.status == "partially_shipped"
    order.allocate_backordered(1, location_code="DC1", quantity=2, actor="t", at=AT)
    assert line.promised_on is None  # nothing waits any more
    order.release(actor="t", at=AT)
    for source, target in ((Q.RELEASED, Q.PICKED), (Q.PICKED, Q.SHIPPED)):
        order.move_quantity(
            1, 2, source=source, target=target, location_code="DC1", actor="t", at=AT
        )
    order.move_quantity(
        1, 1, source=Q.PICKED, target=Q.SHIPPED, location_code="DC1", actor="t", at=AT
    )
    assert order.status == "shipped"
    order.move_quantity(
        1, 5, source=Q.SHIPPED, target=Q.DELIVERED, location_code="DC1", actor="t", at=AT
    )
    order.move_quantity(
        1, 1, source=Q.DELIVERED, target=Q.RETURNED, location_code="DC1", actor="t", at=AT
    )
    assert order.status == "partially_returned"
    types = [event.type for event in order.events]
    assert types.count("order.line.status_changed") >= 6
    assert "order.status_changed" in types


def test_moves_outside_the_transition_table_are_refused() -> None:
    order = an_order()
    with pytest.raises(QuantityTransitionRefused, match="from 'open' to 'shipped'"):
        order.move_quantity(
            1, 1, source=Q.OPEN, target=Q.SHIPPED, location_code="DC1", actor="t", at=AT
        )
    with pytest.raises(QuantityTransitionRefused, match="only 5 unit"):
        order.line(1).move(6, source=Q.OPEN, target=Q.CANCELLED)
    assert order.line(1).by_state() == {Q.OPEN: 5}


# --- capture ----------------------------------------------------------------------------------


def test_capture_computes_totals_and_records_creation() -> None:
    order = an_order(
        LineRequest(
            "LAMP", 2, Decimal("10.00"), SHIP, discount=Decimal("1.50"), tax=Decimal("1.85")
        ),
        LineRequest("SHADE", 1, Decimal("5.25"), PICKUP_S1, total=Decimal("5.25")),
        shipping_charge=Decimal("4.99"),
        totals=Totals(subtotal=Decimal("25.25"), total=Decimal("30.59")),
    )
    # 2 x 10.00 - 1.50 + 1.85 = 20.35; + 5.25 = 25.60; + 4.99 shipping = 30.59
    assert order.subtotal == Decimal("25.25")
    assert order.total == Decimal("30.59")
    assert [e.type for e in order.events] == ["order.created"]
    assert order.timeline[0].action == "created"


def test_capture_reports_every_field_error_at_once() -> None:
    with pytest.raises(InvalidOrder) as refused:
        Order.capture(
            order_id="o",
            order_number="W-1",
            channel=Channel.APP,
            channel_reference="",
            customer=Customer(),
            currency="XXX",
            lines=[
                LineRequest(
                    "LAMP",
                    0,
                    Decimal("10.00"),
                    Delivery(
                        DeliveryMethod.SHIP,
                        address=Address(
                            name="", line1="x", city="", postal_code="1", country="usa"
                        ),
                    ),
                ),
                LineRequest(
                    "SHADE",
                    1,
                    Decimal("5.00"),
                    Delivery(DeliveryMethod.CURBSIDE),
                    total=Decimal("6.00"),
                ),
            ],
            at=AT,
            actor="t",
        )
    pointers = {error["pointer"] for error in refused.value.extensions["errors"]}
    assert pointers == {
        "#/channel_reference",
        "#/currency",
        "#/customer",
        "#/lines/0/quantity",
        "#/lines/0/delivery/address/name",
        "#/lines/0/delivery/address/city",
        "#/lines/0/delivery/address/country",
        "#/lines/1/total",
        "#/lines/1/delivery/pickup_location_code",
    }


def test_totals_that_do_not_add_up_are_refused() -> None:
    with pytest.raises(InvalidOrder) as refused:
        an_order(totals=Totals(total=Decimal("49.99")))
    assert refused.value.extensions["errors"] == [
        {"pointer": "#/totals/total", "detail": "49.99 does not add up: the lines make 50.00"}
    ]


def test_more_decimals_than_the_currency_has_are_refused() -> None:
    with pytest.raises(InvalidOrder, match="unit_price"):
        an_order(LineRequest("LAMP", 1, Decimal("10.001"), SHIP))


def test_card_numbers_are_found_anywhere() -> None:
    assert looks_like_card_number("4111 1111 1111 1111")
    assert looks_like_card_number("card 4111-1111-1111-1111 please")
    assert not looks_like_card_number("4111 1111 1111 1112")  # fails Luhn
    assert not looks_like_card_number("order 12345678")
    assert looks_like_card_number("3782 822463 10005")  # American Express grouping
    assert looks_like_card_number("6011111111111117")
    # numbers that pass Luhn but are no card: wrong grouping, or no card brand's prefix
    assert not looks_like_card_number("REF-4111-11-1111111111")  # digits of a test Visa
    assert not looks_like_card_number("ORDER-2024-11-29-12345")
    assert not looks_like_card_number("1234567812345670")
    document = {"notes": "pay with 5555555555554444", "payments": [{"token": "tok_123"}]}
    assert card_number_pointers(document) == ["#/notes"]


# --- holds ------------------------------------------------------------------------------------


def test_a_hold_stops_release_until_released_with_who_and_why() -> None:
    order = an_order()
    order.apply_sourcing(allocations=[(1, "DC1", 5)], backorders=[], actor="t", at=AT)
    order.place_hold(hold_id="h1", type=HoldType.FRAUD, reason="score 91", actor="risk", at=AT)
    with pytest.raises(OrderOnHold, match="fraud"):
        order.release(actor="t", at=AT)
    with pytest.raises(OrderChangeRefused, match="already has a fraud hold"):
        order.place_hold(hold_id="h2", type=HoldType.FRAUD, reason="again", actor="r", at=AT)
    released = order.release_hold(type=HoldType.FRAUD, reason="checked", actor="agent", at=AT)
    assert (released.placed_by, released.released_by, released.release_reason) == (
        "risk",
        "agent",
        "checked",
    )
    order.release(actor="t", at=AT)
    assert order.status == "released"


# --- cancellation -----------------------------------------------------------------------------


def test_cancel_before_release_is_immediate_and_frees_allocations() -> None:
    order = an_order()
    order.apply_sourcing(allocations=[(1, "DC1", 3)], backorders=[(1, 2, None)], actor="t", at=AT)
    result = order.cancel(
        actor="agent", reason="changed mind", at=AT, new_request_id=iter([]), line_no=1, quantity=3
    )
    # backordered units go first, then allocated ones
    assert result.cancelled == 3
    assert result.freed == [Freed(1, "LAMP", "DC1", 1)]
    assert order.line(1).by_state() == {Q.ALLOCATED: 2, Q.CANCELLED: 3}
    assert order.status == "allocated"


def test_cancel_after_release_is_a_request_the_location_confirms_or_refuses() -> None:
    order = an_order()
    order.apply_sourcing(allocations=[(1, "DC1", 5)], backorders=[], actor="t", at=AT)
    order.release(actor="t", at=AT)
    result = order.cancel(
        actor="agent",
        reason="late",
        at=AT,
        new_request_id=iter(["r1", "r2"]),
        line_no=1,
        quantity=2,
    )
    assert result.cancelled == 0 and result.freed == []
    assert [(r.request_id, r.quantity, r.location_code) for r in result.requests] == [
        ("r1", 2, "DC1")
    ]
    assert order.line(1).by_state() == {Q.RELEASED: 5}
    # the 2 asked for cannot be asked for again; only 3 remain
    with pytest.raises(OrderChangeRefused, match="only 3 of 5"):
        order.cancel(
            actor="a", reason="x", at=AT, new_request_id=iter(["r9"]), line_no=1, quantity=4
        )
    freed = order.confirm_cancel_request("r1", actor="dc1", at=AT)
    assert freed == [Freed(1, "LAMP", "DC1", 2)]
    assert order.line(1).by_state() == {Q.RELEASED: 3, Q.CANCELLED: 2}
    order.cancel(actor="a", reason="x", at=AT, new_request_id=iter(["r2"]), line_no=1, quantity=1)
    order.refuse_cancel_request("r2", actor="dc1", reason="on the truck", at=AT)
    assert order.line(1).by_state() == {Q.RELEASED: 3, Q.CANCELLED: 2}
    with pytest.raises(OrderChangeRefused, match="already refused"):
        order.confirm_cancel_request("r2", actor="dc1", at=AT)


def test_shipped_units_cannot_be_cancelled() -> None:
    order = an_order()
    order.apply_sourcing(allocations=[(1, "DC1", 5)], backorders=[], actor="t", at=AT)
    order.release(actor="t", at=AT)
    order.move_quantity(
        1, 5, source=Q.RELEASED, target=Q.PICKED, location_code="DC1", actor="t", at=AT
    )
    order.move_quantity(
        1, 5, source=Q.PICKED, target=Q.SHIPPED, location_code="DC1", actor="t", at=AT
    )
    with pytest.raises(OrderChangeRefused, match="nothing left to cancel"):
        order.cancel(actor="a", reason="x", at=AT, new_request_id=iter([]))


def test_cancelling_the_whole_order_records_order_cancelled() -> None:
    order = an_order(
        LineRequest("LAMP", 2, Decimal("1"), SHIP), LineRequest("SHADE", 1, Decimal("1"), SHIP)
    )
    order.cancel(actor="a", reason="fraud", at=AT, new_request_id=iter([]))
    assert order.status == "cancelled"
    assert [e.type for e in order.events][-1] == "order.cancelled"
    with pytest.raises(OrderChangeRefused, match="is cancelled"):
        order.add_line(LineRequest("X", 1, Decimal("1"), SHIP), actor="a", reason=None, at=AT)


# --- changes ----------------------------------------------------------------------------------


def test_switching_a_line_to_pickup_reopens_it_for_sourcing() -> None:
    order = an_order()
    order.apply_sourcing(allocations=[(1, "DC1", 5)], backorders=[], actor="t", at=AT)
    freed = order.change_delivery(
        [1],
        PICKUP_S1,
        change="delivery_changed",
        actor="agent",
        reason="customer is near S1",
        at=AT,
    )
    assert freed == [Freed(1, "LAMP", "DC1", 5)]
    assert order.line(1).by_state() == {Q.OPEN: 5}
    entry = order.timeline[-1]
    assert (entry.action, entry.old["method"], entry.new["method"]) == (  # type: ignore[index]
        "delivery_changed",
        "ship",
        "pickup",
    )


def test_changing_delivery_after_release_is_refused() -> None:
    order = an_order()
    order.apply_sourcing(allocations=[(1, "DC1", 5)], backorders=[], actor="t", at=AT)
    order.release(actor="t", at=AT)
    with pytest.raises(OrderChangeRefused, match="already released"):
        order.change_delivery(
            [1], PICKUP_S1, change="delivery_changed", actor="a", reason=None, at=AT
        )


def test_quantity_changes_scale_discount_and_tax() -> None:
    order = an_order(
        LineRequest(
            "LAMP", 4, Decimal("10.00"), SHIP, discount=Decimal("2.00"), tax=Decimal("3.00")
        )
    )
    order.apply_sourcing(allocations=[(1, "DC1", 4)], backorders=[], actor="t", at=AT)
    freed = order.change_quantity(1, 3, actor="a", reason="one fewer", at=AT)
    assert freed == [Freed(1, "LAMP", "DC1", 1)]
    line = order.line(1)
    assert (line.quantity, line.discount, line.tax) == (3, Decimal("1.50"), Decimal("2.25"))
    order.change_quantity(1, 6, actor="a", reason="more", at=AT)
    assert line.by_state() == {Q.ALLOCATED: 3, Q.OPEN: 3}
    assert (line.discount, line.tax) == (Decimal("3.00"), Decimal("4.50"))
    with pytest.raises(InvalidOrder):
        order.change_quantity(1, 0, actor="a", reason=None, at=AT)


def test_add_line_numbers_it_after_the_last() -> None:
    order = an_order()
    line = order.add_line(
        LineRequest("SHADE", 2, Decimal("3.00"), PICKUP_S1), actor="a", reason="forgot", at=AT
    )
    assert line.line_no == 2
    assert order.total == Decimal("56.00")


# --- invariants -------------------------------------------------------------------------------

STATES = list(QuantityState)


@settings(max_examples=300, deadline=None)
@given(
    quantity=st.integers(min_value=1, max_value=20),
    moves=st.lists(
        st.tuples(
            st.sampled_from(STATES),
            st.sampled_from(STATES),
            st.integers(min_value=1, max_value=8),
            st.sampled_from(["DC1", "S1"]),
        ),
        max_size=40,
    ),
)
def test_quantity_is_conserved_whatever_moves_are_tried(
    quantity: int, moves: list[tuple[QuantityState, QuantityState, int, str]]
) -> None:
    order = an_order(LineRequest("LAMP", quantity, Decimal("1.00"), SHIP))
    line = order.line(1)
    for source, target, amount, location in moves:
        before = dict(line.buckets)
        allowed = target in TRANSITIONS[source]
        try:
            line.move(amount, source=source, target=target, location_code=location)
        except QuantityTransitionRefused:
            assert line.buckets == before
            continue
        assert allowed
        assert sum(line.buckets.values()) == quantity
        assert all(value > 0 for value in line.buckets.values())
    assert sum(line.by_state().values()) == quantity


OPERATIONS = ["source", "release", "cancel", "decide", "quantity", "progress", "add", "redeliver"]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_order_changes_conserve_every_line_quantity(data: st.DataObject) -> None:
    """Whatever sequence of changes is tried, each line's buckets add up to its quantity and no
    bucket is empty or negative; cancelled and returned units never come back."""
    order = an_order(LineRequest("LAMP", 4, Decimal("1.00"), SHIP))
    finished: dict[int, tuple[int, int]] = {}
    new_ids = (f"r{n}" for n in range(10_000))
    for _ in range(data.draw(st.integers(min_value=1, max_value=25))):
        operation = data.draw(st.sampled_from(OPERATIONS))
        line_no = data.draw(st.integers(min_value=1, max_value=len(order.lines)))
        line = order.line(line_no)
        amount = data.draw(st.integers(min_value=1, max_value=5))
        location = data.draw(st.sampled_from(["DC1", "S1"]))
        try:
            if operation == "source" and line.quantity_in(Q.OPEN):
                take = min(amount, line.quantity_in(Q.OPEN))
                order.apply_sourcing(
                    allocations=[(line_no, location, take)], backorders=[], actor="t", at=AT
                )
            elif operation == "release":
                order.release(actor="t", at=AT)
            elif operation == "cancel":
                order.cancel(
                    actor="t",
                    reason="r",
                    at=AT,
                    new_request_id=new_ids,
                    line_no=line_no,
                    quantity=amount,
                )
            elif operation == "decide" and order.cancel_requests:
                request = data.draw(st.sampled_from(order.cancel_requests))
                if data.draw(st.booleans()):
                    order.confirm_cancel_request(request.request_id, actor="t", at=AT)
                else:
                    order.refuse_cancel_request(request.request_id, actor="t", reason="no", at=AT)
            elif operation == "quantity":
                order.change_quantity(line_no, amount, actor="t", reason=None, at=AT)
            elif operation == "progress":
                source = data.draw(st.sampled_from(list(QuantityState)))
                target = data.draw(st.sampled_from(sorted(TRANSITIONS[source]) or [Q.OPEN]))
                order.move_quantity(
                    line_no,
                    amount,
                    source=source,
                    target=target,
                    location_code=location,
                    actor="t",
                    at=AT,
                )
            elif operation == "add":
                order.add_line(
                    LineRequest("SHADE", amount, Decimal("2.00"), SHIP),
                    actor="t",
                    reason=None,
                    at=AT,
                )
            elif operation == "redeliver":
                order.change_delivery(
                    [line_no], PICKUP_S1, change="delivery_changed", actor="t", reason=None, at=AT
                )
        except (OrderChangeRefused, QuantityTransitionRefused, InvalidOrder, OrderOnHold):
            pass
        for each in order.lines:
            assert sum(each.buckets.values()) == each.quantity
            assert all(value > 0 for value in each.buckets.values())
        for each in order.lines:
            final = (each.quantity_in(Q.CANCELLED), each.quantity_in(Q.RETURNED))
            before = finished.get(each.line_no, (0, 0))
            assert final[0] >= before[0] and final[1] >= before[1]  # final states stay final
            finished[each.line_no] = final
