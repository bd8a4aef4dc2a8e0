"""Invoices and receipts per shipment: lines, tax per rate, totals, all exact in one currency.

Tax is computed per line and rounded half up to the currency's minor unit; prices are either
net (tax added) or gross (tax contained, the usual retail price in Europe).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from oms.domain.errors import Invalid
from oms.domain.payments import Money, total


class DocumentKind(StrEnum):
    INVOICE = "invoice"
    RECEIPT = "receipt"


@dataclass(frozen=True)
class InvoiceLine:
    sku: str
    description: str
    quantity: int
    unit_price: Money
    tax_rate: Decimal | None = None
    """Percent, e.g. Decimal("19") or Decimal("7.7"); None when ``tax_amount`` states the tax."""
    tax_amount: Money | None = None
    """The line's tax as an absolute amount (as the order carries it), used instead of a rate
    so that the document adds up to exactly what was charged."""
    discount: Money | None = None
    """An absolute discount on quantity x unit price (before tax when prices exclude it)."""


@dataclass(frozen=True)
class PricedLine:
    line: InvoiceLine
    net: Money
    tax: Money
    gross: Money


@dataclass(frozen=True)
class InvoiceTotals:
    lines: list[PricedLine]
    tax_by_rate: dict[Decimal | None, tuple[Money, Money]]
    """rate -> (net, tax); None groups the lines whose tax is stated as an amount"""
    net: Money
    tax: Money
    gross: Money


def price_line(line: InvoiceLine, *, prices_include_tax: bool) -> PricedLine:
    if isinstance(line.quantity, bool) or not isinstance(line.quantity, int) or line.quantity < 1:
        raise Invalid(f"line '{line.sku}': quantity must be a whole number >= 1")
    if (line.tax_rate is None) == (line.tax_amount is None):
        raise Invalid(f"line '{line.sku}': give either a tax rate or a tax amount")
    if line.tax_rate is not None and (
        not isinstance(line.tax_rate, Decimal) or not Decimal(0) <= line.tax_rate <= Decimal(100)
    ):
        raise Invalid(f"line '{line.sku}': tax rate must be a Decimal percentage 0..100")
    if line.unit_price.is_negative():
        raise Invalid(f"line '{line.sku}': the unit price may not be negative")
    amount = line.unit_price.times(line.quantity)
    if line.discount is not None:
        if line.discount.is_negative() or line.discount.amount > amount.amount:
            raise Invalid(f"line '{line.sku}': the discount must be 0..quantity x unit price")
        amount = amount - line.discount
    if line.tax_amount is not None:
        if line.tax_amount.is_negative():
            raise Invalid(f"line '{line.sku}': the tax amount may not be negative")
        if prices_include_tax:
            return PricedLine(line, amount - line.tax_amount, line.tax_amount, amount)
        return PricedLine(line, amount, line.tax_amount, amount + line.tax_amount)
    rate = line.tax_rate if line.tax_rate is not None else Decimal(0)
    if prices_include_tax:
        quantum = Decimal(1).scaleb(-amount.exponent)
        net_value = (amount.amount * 100 / (100 + rate)).quantize(quantum, ROUND_HALF_UP)
        net = Money(net_value, amount.currency)
        return PricedLine(line, net, amount - net, amount)
    tax = amount.percent(rate)
    return PricedLine(line, amount, tax, amount + tax)


def compute_totals(
    lines: Sequence[InvoiceLine], *, currency: str, prices_include_tax: bool
) -> InvoiceTotals:
    if not lines:
        raise Invalid("an invoice needs at least one line")
    priced = [price_line(line, prices_include_tax=prices_include_tax) for line in lines]
    for p in priced:
        if p.gross.currency != currency:
            raise Invalid(f"line '{p.line.sku}' is priced in {p.gross.currency}, not {currency}")
    by_rate: dict[Decimal | None, tuple[Money, Money]] = {}
    for p in priced:
        net, tax = by_rate.get(p.line.tax_rate, (Money.zero(currency), Money.zero(currency)))
        by_rate[p.line.tax_rate] = (net + p.net, tax + p.tax)
    return InvoiceTotals(
        lines=priced,
        tax_by_rate=dict(
            sorted(by_rate.items(), key=lambda kv: (kv[0] is None, kv[0] or Decimal(0)))
        ),
        net=total((p.net for p in priced), currency),
        tax=total((p.tax for p in priced), currency),
        gross=total((p.gross for p in priced), currency),
    )


def invoice_document(
    *,
    number: str,
    kind: DocumentKind,
    order_ref: str,
    shipment_ref: str,
    issued_at: datetime,
    currency: str,
    seller: dict[str, str],
    bill_to: dict[str, str],
    totals: InvoiceTotals,
    prices_include_tax: bool,
) -> dict[str, Any]:
    """The invoice as a JSON document (money as decimal strings)."""

    def s(m: Money) -> str:
        return str(m.amount)

    return {
        "number": number,
        "kind": kind.value,
        "order_ref": order_ref,
        "shipment_ref": shipment_ref,
        "issued_at": issued_at.isoformat(),
        "currency": currency,
        "prices_include_tax": prices_include_tax,
        "seller": seller,
        "bill_to": bill_to,
        "lines": [
            {
                "sku": p.line.sku,
                "description": p.line.description,
                "quantity": p.line.quantity,
                "unit_price": s(p.line.unit_price),
                "tax_rate": None if p.line.tax_rate is None else str(p.line.tax_rate),
                "discount": None if p.line.discount is None else s(p.line.discount),
                "net": s(p.net),
                "tax": s(p.tax),
                "gross": s(p.gross),
            }
            for p in totals.lines
        ],
        "tax_summary": [
            {"rate": None if rate is None else str(rate), "net": s(net), "tax": s(tax)}
            for rate, (net, tax) in totals.tax_by_rate.items()
        ],
        "totals": {"net": s(totals.net), "tax": s(totals.tax), "gross": s(totals.gross)},
    }
