"""Invoice arithmetic and the notification rules (pure functions, no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.adapters.rendering import JinjaEmailTemplates, format_money
from oms.domain.errors import Invalid
from oms.domain.invoices import InvoiceLine, compute_totals
from oms.domain.notifications import (
    ContactPreferences,
    Message,
    choose_language,
    decide,
)
from oms.domain.payments import Money
from oms.services.ports import TemplateProblem


def line(sku: str, quantity: int, price: str, rate: str, currency: str = "EUR") -> InvoiceLine:
    return InvoiceLine(sku, sku.title(), quantity, Money.of(price, currency), Decimal(rate))


def test_gross_prices_contain_the_tax_and_the_summary_is_per_rate() -> None:
    totals = compute_totals(
        [line("lamp", 2, "24.99", "19"), line("book", 1, "10.00", "7"), line("mug", 3, "5", "19")],
        currency="EUR",
        prices_include_tax=True,
    )
    lamp = totals.lines[0]
    assert (lamp.gross, lamp.net, lamp.tax) == (
        Money.of("49.98", "EUR"), Money.of("42.00", "EUR"), Money.of("7.98", "EUR"),
    )  # fmt: skip
    assert totals.tax_by_rate[Decimal("7")] == (Money.of("9.35", "EUR"), Money.of("0.65", "EUR"))
    assert totals.gross == Money.of("74.98", "EUR")
    assert totals.net + totals.tax == totals.gross


def test_net_prices_get_tax_added_in_the_currency_minor_unit() -> None:
    totals = compute_totals(
        [line("tea", 3, "333", "10", "JPY")], currency="JPY", prices_include_tax=False
    )
    assert totals.tax == Money.of(100, "JPY") and totals.gross == Money.of(1099, "JPY")
    bhd = compute_totals(
        [line("oud", 1, "1.005", "5", "BHD")], currency="BHD", prices_include_tax=False
    )
    assert bhd.tax == Money.of("0.050", "BHD")


def test_bad_lines_are_refused() -> None:
    with pytest.raises(Invalid, match="quantity"):
        compute_totals([line("x", 0, "1", "19")], currency="EUR", prices_include_tax=True)
    with pytest.raises(Invalid, match="priced in USD"):
        compute_totals([line("x", 1, "1", "19", "USD")], currency="EUR", prices_include_tax=True)
    with pytest.raises(Invalid, match="at least one line"):
        compute_totals([], currency="EUR", prices_include_tax=True)


@given(
    st.lists(
        st.tuples(
            st.integers(1, 20), st.integers(0, 10**7), st.sampled_from(["0", "5", "7", "19", "20"])
        ),
        min_size=1,
        max_size=10,
    ),
    st.booleans(),
)
def test_invoice_totals_are_exact_sums_of_the_lines(
    rows: list[tuple[int, int, str]], gross: bool
) -> None:
    lines = [
        InvoiceLine(f"SKU{i}", "x", q, Money(Decimal(c).scaleb(-2), "EUR"), Decimal(r))
        for i, (q, c, r) in enumerate(rows)
    ]
    totals = compute_totals(lines, currency="EUR", prices_include_tax=gross)
    assert totals.net + totals.tax == totals.gross
    assert sum((p.gross.amount for p in totals.lines), Decimal(0)) == totals.gross.amount
    assert all(-p.tax.amount.as_tuple().exponent == 2 for p in totals.lines)  # type: ignore[operator]


def test_preferences_decide_what_is_sent() -> None:
    opted_out = ContactPreferences("a@b.example", marketing_opt_out=True)
    assert decide(Message.SHIPPED, opted_out).send
    assert not decide(Message.PICKUP_REMINDER, opted_out).send
    off = ContactPreferences("a@b.example", email_enabled=False)
    assert not decide(Message.REFUND_ISSUED, off).send
    assert decide(Message.PICKUP_REMINDER, None).send
    assert choose_language(ContactPreferences("a@b.example", language="de"), "en") == "de"
    assert choose_language(None, "de-AT") == "de"
    assert choose_language(None, "??") == "en"


def test_templates_fall_back_to_english_and_name_what_is_missing() -> None:
    templates = JinjaEmailTemplates()
    context = {"order_number": "W-1", "customer": {"name": "Jo"}, "amount": "5.00",
               "currency": "EUR", "reason": "late", "refund_ref": "R1"}  # fmt: skip
    rendered = templates.render("refund_issued", "fr", context)
    assert rendered.language == "en"
    assert rendered.subject == "We have refunded 5.00 EUR for order W-1"
    with pytest.raises(TemplateProblem, match="carrier"):
        templates.render("shipped", "en", {"order_number": "W-1", "customer": {"name": ""}})
    assert format_money("1234567.5", "EUR", "de") == "1.234.567,5 EUR"
