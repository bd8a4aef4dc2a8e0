"""Acceptance 1 through the real service, database and sandbox gateway: for any sequence of
captures, cancellations, returns and appeasements (with retries, timeouts and expiring
authorisations), captured - refunded is what the customer keeps, no refund exceeds what was
captured on its tender, the gateway's books agree with ours, and every sum is an exact decimal
in the order's currency."""

from __future__ import annotations

import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oms.adapters.clock import ControlledClock
from oms.bootstrap import build_services
from oms.config import Settings
from oms.domain.payments import (
    CaptureExceedsAuthorisation,
    Money,
    RefundExceedsCaptured,
    Settlement,
    SplitTenderOrder,
    Tender,
    TenderKind,
    ValueChange,
    customer_keeps,
)

EXPONENTS = {"JPY": 0, "EUR": 2, "KWD": 3}
ACTIONS = ["ship", "cancel", "return", "appease", "wait"]


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    total = draw(st.integers(min_value=1, max_value=100_000))
    return {
        "currency": draw(st.sampled_from(sorted(EXPONENTS))),
        "total": total,
        "gift": draw(st.one_of(st.none(), st.integers(min_value=1, max_value=total))),
        "card_token": draw(st.sampled_from(["tok_visa", "tok_timeout_once", "tok_expired_auth"])),
        "capture_order": draw(st.sampled_from(list(SplitTenderOrder))),
        "refund_order": draw(st.sampled_from(list(SplitTenderOrder))),
        "actions": draw(
            st.lists(
                st.tuples(
                    st.sampled_from(ACTIONS),
                    st.integers(min_value=1, max_value=total + 5),
                    st.booleans(),  # repeat the same call (a retried use case)
                ),
                max_size=12,
            )
        ),
    }


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_any_sequence_keeps_the_books_exact(
    scenario: dict[str, object], sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    currency = str(scenario["currency"])
    exponent = EXPONENTS[currency]

    def money(units: int) -> Money:
        return Money(Decimal(units).scaleb(-exponent), currency)

    directory = tmp_path_factory.mktemp("payments")
    shutil.copyfile(sqlite_template, directory / "oms.db")
    clock = ControlledClock()
    services = build_services(
        Settings(
            database_url=f"sqlite:///{directory / 'oms.db'}",
            data_dir=directory,
            payment_retry_backoff_seconds=0,
            payment_capture_order=scenario["capture_order"],  # type: ignore[arg-type]
            payment_refund_order=scenario["refund_order"],  # type: ignore[arg-type]
        ),
        clock=clock,
    )
    try:
        total = int(scenario["total"])  # type: ignore[call-overload]
        tenders = [Tender("card", TenderKind.CARD, str(scenario["card_token"]))]
        gift = scenario["gift"]
        if gift is not None:
            limit = money(int(gift))  # type: ignore[call-overload]
            tenders.append(Tender("gift", TenderKind.GIFT_CARD, f"gc_{limit.amount}", limit))
        assert services.payments.authorise("ORD", tenders, money(total)).approved

        unshipped, shipped, given_back = total, 0, 0
        changes: list[ValueChange] = []
        for step, (kind, units, repeat) in enumerate(scenario["actions"]):  # type: ignore[call-overload]
            amount = money(units)
            if kind == "wait":
                clock.advance(timedelta(days=units % 9))
                continue
            # a partial void has no reference to repeat it by: only the others are repeated
            repeats = 2 if repeat and kind != "cancel" else 1
            for attempt in range(repeats):
                if kind == "ship":
                    if units > unshipped:
                        with pytest.raises(CaptureExceedsAuthorisation):
                            services.payments.capture("ORD", amount, f"SHP-{step}")
                        break
                    outcome = services.payments.capture("ORD", amount, f"SHP-{step}")
                    assert outcome.approved
                    assert outcome.processed == (amount if attempt == 0 else money(0))
                elif kind == "cancel":
                    if units > unshipped:
                        with pytest.raises(CaptureExceedsAuthorisation):
                            services.payments.void("ORD", amount)
                        break
                    assert services.payments.void("ORD", amount).approved
                else:
                    if units > shipped - given_back:
                        with pytest.raises(RefundExceedsCaptured):
                            services.payments.refund("ORD", amount, kind, refund_ref=f"R-{step}")
                        break
                    outcome = services.payments.refund("ORD", amount, kind, refund_ref=f"R-{step}")
                    assert outcome.approved
                    assert outcome.processed == (amount if attempt == 0 else money(0))
            else:
                if kind == "ship":
                    unshipped, shipped = unshipped - units, shipped + units
                    changes.append(ValueChange(Settlement.SHIPPED, amount))
                elif kind == "cancel":
                    unshipped -= units
                    changes.append(ValueChange(Settlement.CANCELLED, amount))
                else:
                    given_back += units
                    settled = Settlement.RETURNED if kind == "return" else Settlement.APPEASED
                    changes.append(ValueChange(settled, amount))

        summary = services.payments.summary("ORD")
        assert summary.captured - summary.refunded == customer_keeps(currency, changes)
        assert summary.authorised_open == money(unshipped)
        for tender in summary.tenders:
            assert tender.refunded <= tender.captured
            if tender.tender.limit is not None:
                assert tender.captured <= tender.tender.limit
        # the gateway's own books agree with ours
        gateway = services.payment_gateway
        gateway_captured = sum((r["amount"] for r in gateway.records(kind="capture")), Decimal(0))
        gateway_refunded = sum((r["amount"] for r in gateway.records(kind="refund")), Decimal(0))
        assert gateway_captured == summary.captured.amount
        assert gateway_refunded == summary.refunded.amount
        for value in (summary.captured, summary.refunded, summary.net_captured):
            assert value.currency == currency
            assert -value.amount.as_tuple().exponent == exponent  # type: ignore[operator]
        for transaction in summary.transactions:
            assert transaction.amount.currency == currency
            assert -transaction.amount.amount.as_tuple().exponent == exponent  # type: ignore[operator]
    finally:
        services.close()
