"""Returns and appeasements: the rules without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.domain.care import (
    InvalidAppeasement,
    appeasement_amount,
    needs_approval,
    new_note,
)
from oms.domain.errors import Invalid
from oms.domain.returns import (
    Disposition,
    InvalidReturn,
    Resolution,
    Return,
    ReturnLine,
    ReturnMethod,
    ReturnReason,
    ReturnRefused,
    ReturnStatus,
)

AT = datetime(2026, 11, 1, tzinfo=UTC)


def a_return(quantity: int = 3, returnable: int = 3, **extra: object) -> Return:
    fields: dict[str, object] = {
        "return_id": "r1",
        "rma_number": "RMA-1",
        "order_id": "o1",
        "order_number": "W-1",
        "customer_email": "ann@example.com",
        "method": ReturnMethod.IN_STORE,
        "location_code": "S1",
        "resolution": Resolution.REFUND,
        "currency": "EUR",
        "lines": [ReturnLine(1, "LAMP-01", quantity, ReturnReason.DEFECTIVE, Decimal("19.99"))],
        "returnable": {1: returnable},
        "actor": "agent",
        "at": AT,
    }
    fields.update(extra)
    return Return.authorise(**fields)  # type: ignore[arg-type]


def test_more_than_was_handed_over_is_refused() -> None:
    with pytest.raises(ReturnRefused) as refused:
        a_return(quantity=3, returnable=2)
    assert refused.value.extensions["returnable"] == 2


def test_a_store_or_drop_off_return_names_its_location() -> None:
    with pytest.raises(InvalidReturn):
        a_return(location_code=None)
    with pytest.raises(InvalidReturn):
        a_return(allow_ship_before_return=True)  # only exchanges ship early


def test_every_received_unit_gets_exactly_one_disposition() -> None:
    item = a_return()
    item.receive({1: 2}, location_code="S1", actor="clerk")
    with pytest.raises(InvalidReturn):
        item.inspect([(1, Disposition.RESTOCK, 1)], actor="clerk")
    with pytest.raises(InvalidReturn):
        item.inspect([(1, Disposition.RESTOCK, 3)], actor="clerk")
    given_ = item.inspect([(1, Disposition.RESTOCK, 1), (1, Disposition.DAMAGED, 1)], actor="clerk")
    assert given_ == {(1, Disposition.RESTOCK): 1, (1, Disposition.DAMAGED): 1}
    assert item.status is ReturnStatus.INSPECTED
    assert [e.type for e in item.events] == [
        "return.authorised",
        "return.received",
        "return.inspected",
    ]


def test_refund_due_is_the_received_units_minus_what_was_refunded() -> None:
    item = a_return()
    with pytest.raises(ReturnRefused):
        item.refund_due()  # nothing received yet
    item.receive({1: 2}, location_code="S1", actor="clerk")
    assert item.refund_due() == Decimal("39.98")
    item.refunded(Decimal("39.98"), actor="agent")
    with pytest.raises(ReturnRefused):
        item.refund_due()  # refunded: closed


def test_an_exchange_has_nothing_to_refund() -> None:
    item = a_return(resolution=Resolution.EXCHANGE)
    item.receive(None, location_code="S1", actor="clerk")
    with pytest.raises(ReturnRefused):
        item.refund_due()


@given(
    base=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2),
    percent=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100"), places=2),
)
def test_a_percent_appeasement_is_exact_in_minor_units_and_never_above_its_base(
    base: Decimal, percent: Decimal
) -> None:
    try:
        value = appeasement_amount(amount=None, percent=percent, base=base, exponent=2)
    except InvalidAppeasement:
        # rounds to 0.00: too small to give
        assert base * percent / 100 < Decimal("0.005")
        return
    assert value.as_tuple().exponent == -2
    assert Decimal("0") < value <= base
    assert abs(value - base * percent / 100) <= Decimal("0.005")


def test_appeasement_amounts_and_limits() -> None:
    assert appeasement_amount(amount=Decimal("10"), percent=None, base=Decimal("88"), exponent=2)
    with pytest.raises(InvalidAppeasement):
        appeasement_amount(amount=Decimal("88.01"), percent=None, base=Decimal("88"), exponent=2)
    with pytest.raises(InvalidAppeasement):
        appeasement_amount(amount=Decimal("1.001"), percent=None, base=Decimal("88"), exponent=2)
    with pytest.raises(InvalidAppeasement):
        appeasement_amount(
            amount=Decimal("1"), percent=Decimal("5"), base=Decimal("88"), exponent=2
        )
    assert needs_approval(Decimal("50.01"), Decimal("50.00"))
    assert not needs_approval(Decimal("50.00"), Decimal("50.00"))
    assert not needs_approval(Decimal("1000000"), None)  # unlimited


def test_a_note_is_on_an_order_or_a_customer() -> None:
    with pytest.raises(Invalid):
        new_note(note_id="n", text="  ", author="a", at=AT, order_id="o1")
    with pytest.raises(Invalid):
        new_note(note_id="n", text="hi", author="a", at=AT, order_id="o1", customer_key="c")
    assert new_note(note_id="n", text=" hi ", author="a", at=AT, customer_key="c").text == "hi"
