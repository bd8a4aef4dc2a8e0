"""Invoice lines with an absolute tax amount and discount (as orders carry them): the document
adds up to exactly quantity x price - discount + tax, whatever the amounts."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.domain.errors import Invalid
from oms.domain.invoices import InvoiceLine, compute_totals
from oms.domain.payments import Money


def usd(value: str | Decimal) -> Money:
    return Money.of(value, "USD")


def test_stated_tax_and_discount_are_used_as_given() -> None:
    lamp = InvoiceLine(
        "LAMP", "Lamp", 2, usd("20.00"), tax_amount=usd("2.72"), discount=usd("0.67")
    )
    ship = InvoiceLine("SHIPPING", "Shipping", 1, usd("5.99"), tax_amount=usd("0.00"))
    totals = compute_totals([lamp, ship], currency="USD", prices_include_tax=False)
    assert [(p.net, p.tax, p.gross) for p in totals.lines] == [
        (usd("39.33"), usd("2.72"), usd("42.05")),
        (usd("5.99"), usd("0.00"), usd("5.99")),
    ]
    assert (totals.net, totals.tax, totals.gross) == (usd("45.32"), usd("2.72"), usd("48.04"))
    assert totals.tax_by_rate == {None: (usd("45.32"), usd("2.72"))}


def test_stated_tax_inside_gross_prices() -> None:
    mug = InvoiceLine("MUG", "Mug", 3, Money.of("5.00", "EUR"), tax_amount=Money.of("2.39", "EUR"))
    totals = compute_totals([mug], currency="EUR", prices_include_tax=True)
    assert (totals.net, totals.tax, totals.gross) == (
        Money.of("12.61", "EUR"),
        Money.of("2.39", "EUR"),
        Money.of("15.00", "EUR"),
    )


def test_rate_and_stated_lines_are_summarised_apart() -> None:
    rated = InvoiceLine("BOOK", "Book", 1, usd("10.00"), Decimal("7"))
    stated = InvoiceLine("LAMP", "Lamp", 1, usd("10.00"), tax_amount=usd("0.80"))
    totals = compute_totals([stated, rated], currency="USD", prices_include_tax=False)
    assert list(totals.tax_by_rate) == [Decimal("7"), None]
    assert totals.gross == usd("21.50")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (InvoiceLine("X", "x", 1, usd("1.00")), "either a tax rate or a tax amount"),
        (
            InvoiceLine("X", "x", 1, usd("1.00"), Decimal("7"), tax_amount=usd("0.07")),
            "either a tax rate or a tax amount",
        ),
        (InvoiceLine("X", "x", 1, usd("1.00"), tax_amount=usd("-0.01")), "may not be negative"),
        (
            InvoiceLine("X", "x", 1, usd("1.00"), tax_amount=usd("0"), discount=usd("1.01")),
            "discount must be",
        ),
        (
            InvoiceLine("X", "x", 1, usd("1.00"), tax_amount=usd("0"), discount=usd("-1")),
            "discount must be",
        ),
    ],
)
def test_bad_stated_lines_are_refused(line: InvoiceLine, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        compute_totals([line], currency="USD", prices_include_tax=False)


cents = st.integers(min_value=0, max_value=1_000_000).map(lambda c: Decimal(c).scaleb(-2))


@given(
    st.lists(
        st.tuples(st.integers(1, 50), cents, st.integers(0, 100), cents), min_size=1, max_size=8
    )
)
def test_gross_is_exactly_the_sum_of_price_minus_discount_plus_tax(
    rows: list[tuple[int, Decimal, int, Decimal]],
) -> None:
    lines = []
    expected = Decimal(0)
    for i, (quantity, price, percent, tax) in enumerate(rows):
        discount = (quantity * price * percent / 100).quantize(Decimal("0.01"), ROUND_DOWN)
        lines.append(
            InvoiceLine(
                f"S{i}", "x", quantity, usd(price), tax_amount=usd(tax), discount=usd(discount)
            )
        )
        expected += quantity * price - discount + tax
    totals = compute_totals(lines, currency="USD", prices_include_tax=False)
    assert totals.gross == usd(expected)
    assert totals.net + totals.tax == totals.gross
