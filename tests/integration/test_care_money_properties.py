"""Issue 8, acceptance 1 at the order level: for any sequence of shipments (captures), cancelled
units (voids), returns refunded and appeasements, the ledger's captured - refunded equals what
the customer keeps (shipped value + shipping - returned value - appeased), no tender is refunded
more than it paid, and every amount is an exact decimal in the order's currency."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oms.bootstrap import Services
from oms.domain.locations import LocationType
from oms.domain.orders import Customer, Delivery, DeliveryMethod, LineRequest, PaymentReference
from oms.domain.payments import RefundExceedsCaptured
from oms.services.orders import CaptureOrder
from oms.services.returns import ReturnLineRequest
from tests.inventory_support import a_location, an_item, stock
from tests.orders_support import HOME

UNIT = Decimal("14.82")  # 12.35 + 2.47 tax: exact per unit, no rounding to hide behind
SHIPPING = Decimal("4.99")
QUANTITY = 6
_references = itertools.count()

actions = st.lists(
    st.one_of(
        st.tuples(st.just("ship"), st.integers(1, 3)),
        st.tuples(st.just("cancel"), st.integers(1, 2)),
        st.tuples(st.just("return"), st.integers(1, 2)),
        st.tuples(st.just("appease"), st.integers(1, 3000)),
    ),
    max_size=7,
)


@pytest.fixture
def shop(services: Services) -> Services:
    services.inventory.set_safety_stock_default(LocationType.STORE, 0)
    services.inventory.set_safety_stock_default(LocationType.DC, 0)
    services.inventory.create_location(a_location("DC-EAST", capabilities=["ship"]))
    services.inventory.create_location(
        a_location("S1", type="store", capabilities=["pickup", "accept_returns"])
    )
    services.inventory.create_item(an_item("LAMP-01"))
    stock(services, "LAMP-01", at="DC-EAST", on_hand=100_000)
    return services


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=actions, gift=st.sampled_from([None, "20.00", "200.00"]))
def test_what_the_customer_keeps_is_exact(
    shop: Services, steps: list[tuple[str, int]], gift: str | None
) -> None:
    example = next(_references)
    payments = [PaymentReference("card", "tok_visa")]
    if gift:
        # a gift card of its own per example (the sandbox keeps balances across orders)
        balance = Decimal(gift) + Decimal(example).scaleb(-2)
        payments.insert(0, PaymentReference("gift_card", f"gc_{balance}", balance))
    order = shop.orders.capture(
        CaptureOrder(
            channel="web",
            channel_reference=f"PROP-{example}",
            customer=Customer("C-1", "Ann", "ann@example.com"),
            currency="USD",
            lines=[
                LineRequest(
                    "LAMP-01",
                    QUANTITY,
                    Decimal("12.35"),
                    Delivery(DeliveryMethod.SHIP, address=HOME),
                    tax=Decimal("2.47") * QUANTITY,
                )
            ],
            shipping_charge=SHIPPING,
            payments=payments,
        )
    ).order
    ref, oid = order.order_number, order.order_id
    shop.orders.release(oid)
    released, delivered = QUANTITY, 0
    shipped = returned = Decimal("0")
    appeased = Decimal("0")
    for number, (kind, amount) in enumerate(steps):
        if kind == "ship" and released:
            units = min(amount, released)
            for source, target in (("released", "picked"), ("picked", "shipped")):
                shop.orders.move_quantity(
                    oid, 1, units, source=source, target=target, location_code="DC-EAST"
                )
            outcome = shop.orders.capture_for_shipment(oid, f"SHP-{number}", [(1, units)])
            assert outcome is not None and outcome.approved
            shop.orders.move_quantity(
                oid, 1, units, source="shipped", target="delivered", location_code="DC-EAST"
            )
            shipped += UNIT * units + (SHIPPING if shipped == 0 else Decimal("0"))
            released -= units
            delivered += units
        elif kind == "cancel" and released:
            units = min(amount, released)
            request = shop.orders.cancel(oid, reason="changed mind", line_no=1, quantity=units)
            shop.orders.decide_cancel_request(oid, request.requests[0].request_id, confirm=True)
            released -= units
        elif kind == "return" and delivered:
            units = min(amount, delivered)
            made = shop.returns.authorise(
                oid, [ReturnLineRequest(1, units, "other")], method="in_store", location_code="S1"
            )
            shop.returns.receive(made.return_id, location_code="S1")
            shop.returns.inspect(made.return_id, [(1, "restock", units)])
            try:
                done = shop.returns.refund(made.return_id)
                assert done.outcome.processed.amount == UNIT * units
                returned += UNIT * units
            except RefundExceedsCaptured:
                # appeasements already gave back more than is left: the rule refuses it whole
                summary = shop.payments.summary(ref)
                assert summary.net_captured.amount < UNIT * units
            delivered -= units
        elif kind == "appease":
            value = Decimal(amount).scaleb(-2)
            try:
                result = shop.care.appease(oid, kind="refund", reason_code="goodwill", amount=value)
                assert result.outcome is not None and result.outcome.approved
                appeased += value
            except RefundExceedsCaptured:
                assert shop.payments.summary(ref).net_captured.amount < value
        summary = shop.payments.summary(ref)
        assert summary.captured.amount == shipped
        assert summary.captured.amount - summary.refunded.amount == shipped - returned - appeased
        for tender in summary.tenders:
            assert tender.refunded.amount <= tender.captured.amount
        for money in (summary.captured, summary.refunded, summary.authorised_open):
            assert money.currency == "USD" and money.amount.as_tuple().exponent == -2
        # what is neither captured nor cancelled stays authorised, to the cent
        waiting_shipping = SHIPPING if shipped == 0 and released else Decimal("0")
        assert summary.authorised_open.amount == UNIT * released + waiting_shipping
