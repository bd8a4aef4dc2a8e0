"""Money and the payment ledger: exact decimals, capture/refund limits, split tenders."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oms.domain.payments import (
    AuthorisationExpired,
    CaptureExceedsAuthorisation,
    CurrencyMismatch,
    InsufficientTender,
    InvalidMoney,
    Money,
    PaymentLedger,
    RefundExceedsCaptured,
    Settlement,
    SplitTenderOrder,
    Tender,
    TenderKind,
    TenderPolicy,
    ValueChange,
    assign_amounts,
    customer_keeps,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
AUTH_LIFETIME = timedelta(days=7)


# --- money ------------------------------------------------------------------------------------


def test_money_keeps_the_minor_unit_of_its_currency() -> None:
    assert Money.of("12.5", "USD").amount == Decimal("12.50")
    assert str(Money.of(1500, "JPY")) == "1500 JPY"
    assert Money.of("1.234", "BHD").amount == Decimal("1.234")
    with pytest.raises(InvalidMoney, match="more than 0 decimals"):
        Money.of("10.5", "JPY")
    with pytest.raises(InvalidMoney, match="more than 2 decimals"):
        Money.of("0.001", "EUR")
    with pytest.raises(InvalidMoney, match="unknown currency"):
        Money.of("1", "XYZ")


def test_money_is_never_a_float_and_never_mixes_currencies() -> None:
    with pytest.raises(InvalidMoney, match="float"):
        Money.of(0.1, "USD")  # type: ignore[arg-type]
    with pytest.raises(InvalidMoney, match="Decimal"):
        Money(0.1, "USD")  # type: ignore[arg-type]
    with pytest.raises(InvalidMoney, match="finite"):
        Money(Decimal("NaN"), "USD")
    with pytest.raises(CurrencyMismatch):
        _ = Money.of(1, "USD") + Money.of(1, "EUR")
    with pytest.raises(CurrencyMismatch):
        _ = Money.of(1, "USD") < Money.of(1, "EUR")
    assert Money.of("0.10", "USD") + Money.of("0.20", "USD") == Money.of("0.30", "USD")


def test_percentages_round_half_up_to_the_minor_unit() -> None:
    assert Money.of("19.99", "EUR").percent(Decimal(10)) == Money.of("2.00", "EUR")
    assert Money.of("0.05", "EUR").percent(Decimal(50)) == Money.of("0.03", "EUR")
    assert Money.of(999, "JPY").percent(Decimal("12.5")) == Money.of(125, "JPY")
    assert Money.of("1.001", "KWD").percent(Decimal(50)) == Money.of("0.501", "KWD")


# --- split tenders ----------------------------------------------------------------------------


def test_gift_card_first_is_charged_first_and_refunded_last() -> None:
    gift = Tender("gc", TenderKind.GIFT_CARD, "gc_50", Money.of(30, "EUR"))
    card = Tender("card", TenderKind.CARD, "tok_visa")
    policy = TenderPolicy(SplitTenderOrder.GIFT_CARD_FIRST, SplitTenderOrder.GIFT_CARD_LAST)
    shares = assign_amounts([card, gift], Money.of(100, "EUR"), policy=policy)
    assert [(t.tender_id, m.amount) for t, m in shares] == [("gc", 30), ("card", 70)]

    ledger = PaymentLedger("O-1", "EUR", policy=policy, tenders=[card, gift])
    for tender, share in shares:
        ledger.record_authorisation(
            tender.tender_id,
            reference=f"a-{tender.tender_id}",
            amount=share,
            at=T0,
            expires_at=T0 + AUTH_LIFETIME,
        )
    steps = ledger.plan_capture(Money.of(40, "EUR"), at=T0)
    assert [(s.tender_id, s.amount.amount) for s in steps] == [("gc", 30), ("card", 10)]
    for i, step in enumerate(steps):
        ledger.record_capture(
            step.tender_id,
            authorisation_reference=step.authorisation_reference,
            reference=f"c{i}",
            amount=step.amount,
            at=T0,
        )
    refund = ledger.plan_refund(Money.of(15, "EUR"))
    assert [(s.tender_id, s.amount.amount) for s in refund] == [("card", 10), ("gc", 5)]


def test_gift_card_last_is_charged_after_the_card() -> None:
    gift = Tender("gc", TenderKind.GIFT_CARD, "gc_50", Money.of(30, "EUR"))
    card = Tender("card", TenderKind.CARD, "tok_visa", Money.of(70, "EUR"))
    policy = TenderPolicy(SplitTenderOrder.GIFT_CARD_LAST, SplitTenderOrder.GIFT_CARD_FIRST)
    ledger = PaymentLedger("O-1", "EUR", policy=policy, tenders=[gift, card])
    for tender, share in assign_amounts([gift, card], Money.of(100, "EUR"), policy=policy):
        ledger.record_authorisation(
            tender.tender_id,
            reference=f"a-{tender.tender_id}",
            amount=share,
            at=T0,
            expires_at=None,
        )
    steps = ledger.plan_capture(Money.of(80, "EUR"), at=T0)
    assert [(s.tender_id, s.amount.amount) for s in steps] == [("card", 70), ("gc", 10)]


def test_tenders_that_do_not_cover_the_amount_are_refused() -> None:
    gift = Tender("gc", TenderKind.GIFT_CARD, "gc_20", Money.of(20, "EUR"))
    with pytest.raises(InsufficientTender, match=r"cover 20\.00 EUR of 50\.00 EUR"):
        assign_amounts([gift], Money.of(50, "EUR"), policy=TenderPolicy())


def test_an_expired_authorisation_cannot_be_captured_until_renewed() -> None:
    card = Tender("card", TenderKind.CARD, "tok_visa")
    ledger = PaymentLedger("O-2", "USD", tenders=[card])
    ledger.record_authorisation(
        "card", reference="a1", amount=Money.of(50, "USD"), at=T0, expires_at=T0 + AUTH_LIFETIME
    )
    later = T0 + AUTH_LIFETIME + timedelta(hours=1)
    (step,) = ledger.plan_capture(Money.of(20, "USD"), at=later)
    assert step.reauthorise
    with pytest.raises(AuthorisationExpired):
        ledger.record_capture(
            "card", authorisation_reference="a1", reference="c1", amount=step.amount, at=later
        )
    ledger.record_authorisation(
        "card",
        reference="a2",
        amount=Money.of(50, "USD"),
        at=later,
        expires_at=later + AUTH_LIFETIME,
        replaces="a1",
    )
    ledger.record_capture(
        "card", authorisation_reference="a2", reference="c1", amount=step.amount, at=later
    )
    assert ledger.authorised_open == Money.of(30, "USD")
    with pytest.raises(CaptureExceedsAuthorisation):
        ledger.plan_capture(Money.of("30.01", "USD"), at=later)
    with pytest.raises(RefundExceedsCaptured):
        ledger.plan_refund(Money.of("20.01", "USD"))


# --- property: any sequence of captures, cancellations, returns and appeasements ----------------

CURRENCIES = {"JPY": 0, "USD": 2, "BHD": 3}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, int, int | None, TenderPolicy, list[tuple[str, int]]]:
    currency = draw(st.sampled_from(sorted(CURRENCIES)))
    total_units = draw(st.integers(min_value=1, max_value=500_000))
    gift_units = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=total_units)))
    policy = TenderPolicy(
        draw(st.sampled_from(list(SplitTenderOrder))), draw(st.sampled_from(list(SplitTenderOrder)))
    )
    action = st.tuples(
        st.sampled_from(["ship", "cancel", "return", "appease", "wait"]),
        st.integers(min_value=1, max_value=total_units + 10),
    )
    return currency, total_units, gift_units, policy, draw(st.lists(action, max_size=25))


def money(units: int, currency: str) -> Money:
    return Money(Decimal(units).scaleb(-CURRENCIES[currency]), currency)


@dataclass
class Model:
    """What the order says, independently of the ledger."""

    unshipped: int
    shipped: int = 0
    given_back: int = 0
    changes: list[ValueChange] = field(default_factory=list)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_captured_minus_refunded_is_what_the_customer_keeps(
    scenario: tuple[str, int, int | None, TenderPolicy, list[tuple[str, int]]],
) -> None:
    currency, total_units, gift_units, policy, actions = scenario
    tenders = [Tender("card", TenderKind.CARD, "tok_visa")]
    if gift_units is not None:
        tenders.append(Tender("gc", TenderKind.GIFT_CARD, "gc", money(gift_units, currency)))
    ledger = PaymentLedger("O-P", currency, policy=policy, tenders=tenders)
    now = T0
    for tender, share in assign_amounts(tenders, money(total_units, currency), policy=policy):
        ledger.record_authorisation(
            tender.tender_id,
            reference=f"auth-{tender.tender_id}-0",
            amount=share,
            at=now,
            expires_at=now + AUTH_LIFETIME,
        )
    model = Model(unshipped=total_units)
    sequence = 0

    for kind, units in actions:
        sequence += 1
        amount = money(units, currency)
        if kind == "wait":
            now += timedelta(days=units % 10)
            continue
        if kind == "ship":
            if units > model.unshipped:
                with pytest.raises(CaptureExceedsAuthorisation):
                    ledger.plan_capture(amount, at=now)
                continue
            for step in ledger.plan_capture(amount, at=now):
                auth_ref = step.authorisation_reference
                if step.reauthorise:
                    old = ledger.account(step.tender_id).authorisation(auth_ref)
                    renewed = f"auth-{step.tender_id}-{sequence}"
                    ledger.record_authorisation(
                        step.tender_id,
                        reference=renewed,
                        amount=old.open_amount,
                        at=now,
                        expires_at=now + AUTH_LIFETIME,
                        replaces=auth_ref,
                    )
                    auth_ref = renewed
                ledger.record_capture(
                    step.tender_id,
                    authorisation_reference=auth_ref,
                    reference=f"cap-{sequence}-{step.tender_id}",
                    amount=step.amount,
                    at=now,
                    shipment_ref=f"SHP-{sequence}",
                )
            model.unshipped -= units
            model.shipped += units
            model.changes.append(ValueChange(Settlement.SHIPPED, amount))
        elif kind == "cancel":
            if units > model.unshipped:
                with pytest.raises(CaptureExceedsAuthorisation):
                    ledger.plan_void(amount)
                continue
            for void in ledger.plan_void(amount):
                ledger.record_void(
                    void.tender_id,
                    authorisation_reference=void.authorisation_reference,
                    amount=void.amount,
                    at=now,
                )
            model.unshipped -= units
            model.changes.append(ValueChange(Settlement.CANCELLED, amount))
        else:  # a return or an appeasement: money goes back to the original tenders
            if units > model.shipped - model.given_back:
                with pytest.raises(RefundExceedsCaptured):
                    ledger.plan_refund(amount)
                continue
            for step in ledger.plan_refund(amount):
                ledger.record_refund(
                    step.tender_id,
                    capture_reference=step.capture_reference,
                    reference=f"ref-{sequence}-{step.tender_id}",
                    amount=step.amount,
                    reason=kind,
                    at=now,
                )
            model.given_back += units
            model.changes.append(
                ValueChange(
                    Settlement.RETURNED if kind == "return" else Settlement.APPEASED, amount
                )
            )

        # the invariants, after every accepted step
        assert ledger.captured - ledger.refunded == customer_keeps(currency, model.changes)
        assert ledger.authorised_open == money(model.unshipped, currency)
        for account in ledger.accounts.values():
            assert account.refunded <= account.captured
            for capture in account.captures:
                assert Money.zero(currency) <= capture.refunded <= capture.amount
            for auth in account.authorisations:
                assert not auth.open_amount.is_negative()
            if account.tender.limit is not None:
                assert account.captured <= account.tender.limit
        for value in [*ledger.all_amounts(), ledger.captured, ledger.refunded]:
            assert value.currency == currency
            assert isinstance(value.amount, Decimal)
            assert value.amount == value.amount.quantize(Decimal(1).scaleb(-CURRENCIES[currency]))
            assert -value.amount.as_tuple().exponent == CURRENCIES[currency]  # type: ignore[operator]

    assert ledger.net_captured == customer_keeps(currency, model.changes)
