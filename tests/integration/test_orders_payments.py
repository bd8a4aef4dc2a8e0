"""Orders and payments together (sandbox gateway): authorise at capture, decline -> payment hold,
a capture timeout retried captures once, an expired authorisation is renewed before capture,
cancellations release the authorisation, reserve-and-collect pays at collection; order emails
carry what their templates need. Returns: window, damaged units into blocked stock."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services
from oms.domain.errors import Conflict
from oms.domain.locations import LocationType
from oms.domain.orders import (
    Customer,
    Delivery,
    DeliveryMethod,
    HoldType,
    LineRequest,
    PaymentReference,
)
from oms.domain.returns import ReturnWindowClosed
from oms.services.orders import CaptureOrder
from oms.services.returns import ReturnLineRequest
from tests.inventory_support import a_location, an_item, stock
from tests.orders_support import HOME, IdsThatCollideOnce

ANN = Customer("C-1", "Ann Lee", "ann@example.com", "+12125550100")


@pytest.fixture
def shop(services: Services) -> Services:
    services.inventory.set_safety_stock_default(LocationType.STORE, 0)
    services.inventory.set_safety_stock_default(LocationType.DC, 0)
    services.inventory.create_location(
        a_location("DC-EAST", capabilities=["ship", "accept_returns"])
    )
    services.inventory.create_location(
        a_location("S1", type="store", capabilities=["pickup", "accept_returns"])
    )
    services.inventory.create_item(an_item("LAMP-01", name="Desk lamp"))
    stock(services, "LAMP-01", at="DC-EAST", on_hand=10)
    stock(services, "LAMP-01", at="S1", on_hand=5)
    return services


def capture(
    services: Services,
    reference: str,
    token: str = "tok_visa",  # noqa: S107
    quantity: int = 2,
    method: DeliveryMethod = DeliveryMethod.SHIP,
):  # type: ignore[no-untyped-def]
    delivery = (
        Delivery(method, address=HOME)
        if method is DeliveryMethod.SHIP
        else Delivery(method, pickup_location_code="S1")
    )
    return services.orders.capture(
        CaptureOrder(
            channel="web",
            channel_reference=reference,
            customer=ANN,
            currency="USD",
            lines=[
                LineRequest(
                    "LAMP-01",
                    quantity,
                    Decimal("40.00"),
                    delivery,
                    tax=Decimal("4.00") * quantity,
                )
            ],
            shipping_charge=Decimal("5.00"),
            payments=[PaymentReference("card", token)],
        )
    ).order


def ship(services: Services, order_id: str, quantity: int) -> None:
    services.orders.release(order_id)
    for source, target in (("released", "picked"), ("picked", "shipped")):
        services.orders.move_quantity(
            order_id, 1, quantity, source=source, target=target, location_code="DC-EAST"
        )


def event_types(services: Services) -> list[str]:
    return [event.type for event in services.events.read(limit=1000)]


def test_authorised_at_capture_and_captured_per_shipment_with_shipping_first(
    shop: Services,
) -> None:
    order = capture(shop, "P-1")
    assert shop.payments.summary(order.order_number).authorised_open.amount == Decimal("93.00")
    ship(shop, order.order_id, 1)
    first = shop.orders.capture_for_shipment(order.order_id, "SHP-1", [(1, 1)])
    assert first is not None and first.processed.amount == Decimal("49.00")  # 44 + 5 shipping
    again = shop.orders.capture_for_shipment(order.order_id, "SHP-1", [(1, 1)])
    assert again is not None and again.processed.amount == Decimal("0")  # no double capture
    summary = shop.payments.summary(order.order_number)
    assert (summary.captured.amount, summary.authorised_open.amount) == (
        Decimal("49.00"),
        Decimal("44.00"),
    )


def test_a_declined_authorisation_holds_the_order_and_tells_care(shop: Services) -> None:
    order = capture(shop, "P-2", token="tok_decline")
    assert [hold.type for hold in order.active_holds] == [HoldType.PAYMENT]
    assert "card_declined" in order.active_holds[0].reason
    assert {"payment.declined", "order.hold_placed"} <= set(event_types(shop))


def test_a_capture_timeout_retried_captures_once(shop: Services) -> None:
    order = capture(shop, "P-3", token="tok_timeout_once")
    ship(shop, order.order_id, 2)
    outcome = shop.orders.capture_for_shipment(order.order_id, "SHP-1", [(1, 2)])
    assert outcome is not None and outcome.approved
    calls = [(c.operation, c.outcome) for c in shop.payments.gateway_calls(order.order_number)]
    assert calls.count(("capture", "timeout")) == 1
    assert calls.count(("capture", "approved")) == 1
    assert shop.payments.summary(order.order_number).captured.amount == Decimal("93.00")


def test_a_declined_capture_holds_the_order(shop: Services) -> None:
    order = capture(shop, "P-4", token="tok_decline_capture")
    assert not order.on_hold
    ship(shop, order.order_id, 2)
    outcome = shop.orders.capture_for_shipment(order.order_id, "SHP-1", [(1, 2)])
    assert outcome is not None and outcome.needs_hold
    held = shop.orders.get(order.order_id)
    assert [hold.type for hold in held.active_holds] == [HoldType.PAYMENT]
    assert "payment.declined" in event_types(shop)


def test_an_expired_authorisation_is_renewed_before_capture(shop: Services) -> None:
    order = capture(shop, "P-5", token="tok_expired_auth")
    ship(shop, order.order_id, 2)
    outcome = shop.orders.capture_for_shipment(order.order_id, "SHP-1", [(1, 2)])
    assert outcome is not None and outcome.approved
    authorisations = [
        c for c in shop.payments.gateway_calls(order.order_number) if c.operation == "authorise"
    ]
    assert len(authorisations) == 2  # the original and the renewal


def test_cancelling_releases_the_authorisation_and_the_email_says_so(shop: Services) -> None:
    order = capture(shop, "P-6")
    shop.orders.cancel(order.order_id, reason="changed mind", line_no=1, quantity=1)
    assert shop.payments.summary(order.order_number).authorised_open.amount == Decimal("49.00")
    shop.orders.cancel(order.order_id, reason="changed mind")
    assert shop.payments.summary(order.order_number).authorised_open.amount == Decimal("0")
    shop.notifications.collect()
    by_template = {d.template: d for d in shop.notifications.deliveries(recipient=ANN.email)}
    confirmation = by_template["order_confirmation"]
    assert confirmation.status == "pending", confirmation.last_error
    assert "Desk lamp" in (confirmation.body or "") and "93.00" in (confirmation.body or "")
    cancellation = by_template["cancellation"]
    assert cancellation.status == "pending", cancellation.last_error
    assert "Desk lamp" in (cancellation.body or "") and "49.00" in (cancellation.body or "")


def test_reserve_and_collect_pays_at_collection(shop: Services) -> None:
    order = capture(shop, "P-7", method=DeliveryMethod.RESERVE_AND_COLLECT, quantity=1)
    # only the shipping charge is authorised now; the reserved line is paid at collection
    assert shop.payments.summary(order.order_number).authorised_open.amount == Decimal("5.00")
    shop.orders.release(order.order_id)
    for source, target in (("released", "picked"), ("picked", "ready_for_pickup")):
        shop.orders.move_quantity(
            order.order_id, 1, 1, source=source, target=target, location_code="S1"
        )
    shop.orders.move_quantity(
        order.order_id, 1, 1, source="ready_for_pickup", target="collected", location_code="S1"
    )
    assert shop.payments.summary(order.order_number).captured.amount == Decimal("44.00")

    declined = capture(
        shop, "P-8", token="tok_decline", method=DeliveryMethod.RESERVE_AND_COLLECT, quantity=1
    )
    assert declined.on_hold  # the shipping charge could not be authorised either
    shop.orders.release_hold(declined.order_id, "payment", reason="customer pays in store")
    shop.orders.release(declined.order_id)
    for source, target in (("released", "picked"), ("picked", "ready_for_pickup")):
        shop.orders.move_quantity(
            declined.order_id, 1, 1, source=source, target=target, location_code="S1"
        )
    with pytest.raises(Conflict):
        shop.orders.move_quantity(
            declined.order_id,
            1,
            1,
            source="ready_for_pickup",
            target="collected",
            location_code="S1",
        )
    after = shop.orders.get(declined.order_id)
    assert after.on_hold and after.line(1).quantity_in("ready_for_pickup") == 1  # type: ignore[arg-type]


def test_the_return_window_and_damaged_units(shop: Services, clock: ControlledClock) -> None:
    order = capture(shop, "P-9")
    ship(shop, order.order_id, 2)
    shop.orders.move_quantity(
        order.order_id, 1, 2, source="shipped", target="delivered", location_code="DC-EAST"
    )
    clock.advance(timedelta(days=10))
    made = shop.returns.authorise(
        order.order_id, [ReturnLineRequest(1, 1, "damaged")], method="mail", location_code="DC-EAST"
    )
    shop.returns.receive(made.return_id, location_code="DC-EAST")
    blocked_before = shop.inventory.item_availability("LAMP-01", location_codes=["DC-EAST"])
    shop.returns.inspect(made.return_id, [(1, "damaged", 1)])
    after = shop.inventory.item_availability("LAMP-01", location_codes=["DC-EAST"])
    assert after.positions[0].blocked == blocked_before.positions[0].blocked + 1
    assert after.atp["DC-EAST"] == blocked_before.atp["DC-EAST"]  # on hand +1, blocked +1

    clock.advance(timedelta(days=21))  # 31 days after delivery: the 30-day window has closed
    with pytest.raises(ReturnWindowClosed):
        shop.returns.authorise(
            order.order_id,
            [ReturnLineRequest(1, 1, "other")],
            method="mail",
            location_code="DC-EAST",
        )


@pytest.mark.postgres
def test_an_rma_number_already_taken_is_drawn_again(
    shop: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = capture(shop, "P-RMA")
    ship(shop, order.order_id, 2)
    first = shop.returns.authorise(
        order.order_id, [ReturnLineRequest(1, 1, "damaged")], method="mail", location_code="DC-EAST"
    )
    ids = IdsThatCollideOnce(shop.returns._ids)
    monkeypatch.setattr(shop.returns, "_ids", ids)
    ids.collide_with = first.return_id

    second = shop.returns.authorise(
        order.order_id, [ReturnLineRequest(1, 1, "damaged")], method="mail", location_code="DC-EAST"
    )

    assert ids.collide_with is None  # the colliding id was tried
    assert second.rma_number != first.rma_number
    assert sorted(r.rma_number for r in shop.returns.for_order(order.order_id)) == sorted(
        [first.rma_number, second.rma_number]
    )
