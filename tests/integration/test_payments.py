"""Payments through the sandbox gateway: authorise, capture per shipment, void, refund, faults."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from oms.adapters.clock import ControlledClock
from oms.adapters.db.tables import payment_gateway_calls
from oms.adapters.gateways.payments_sandbox import SandboxGateway
from oms.bootstrap import Services
from oms.domain.payments import (
    Money,
    PaymentNotFound,
    RefundExceedsCaptured,
    Tender,
    TenderKind,
)
from oms.services.payments import PaymentStatus
from oms.services.ports import GatewayKeyReused

CUSTOMER = {"email": "ada@example.com", "name": "Ada Lovelace", "language": "en"}


def eur(amount: str | int) -> Money:
    return Money.of(amount, "EUR")


def card(token: str = "tok_visa", tender_id: str = "card") -> Tender:  # noqa: S107
    return Tender(tender_id, TenderKind.CARD, token)


def outbox_types(services: Services) -> list[str]:
    return [e.type for e in services.events.read(limit=1000)]


@pytest.mark.postgres
def test_split_tender_is_captured_per_shipment_and_refunded_to_the_original_tenders(
    services: Services,
) -> None:
    gift = Tender("gift", TenderKind.GIFT_CARD, "gc_50", eur(30))
    outcome = services.payments.authorise("ORD-1", [card(), gift], eur(100), customer=CUSTOMER)
    assert outcome.approved and outcome.processed == eur(100)

    first = services.payments.capture("ORD-1", eur("40.00"), "SHP-1")
    second = services.payments.capture("ORD-1", eur("25.50"), "SHP-2")
    assert first.approved and second.approved

    summary = services.payments.summary("ORD-1")
    by_tender = {t.tender.tender_id: t for t in summary.tenders}
    assert by_tender["gift"].captured == eur(30)  # gift card first (the default)
    assert by_tender["card"].captured == eur("35.50")
    assert summary.authorised_open == eur("34.50")

    refund = services.payments.refund("ORD-1", eur(20), "return", refund_ref="RMA-1")
    assert refund.approved
    summary = services.payments.summary("ORD-1")
    by_tender = {t.tender.tender_id: t for t in summary.tenders}
    assert by_tender["card"].refunded == eur(20)  # the card gets money back before the gift card
    assert by_tender["gift"].refunded == eur(0)
    assert summary.net_captured == eur("45.50")

    void = services.payments.void_remaining("ORD-1")
    assert void.processed == eur("34.50")
    assert services.payments.summary("ORD-1").authorised_open == eur(0)

    calls = services.payments.gateway_calls("ORD-1")
    assert [c.operation for c in calls] == [
        "authorise", "authorise", "capture", "capture", "capture", "refund", "void",
    ]  # fmt: skip
    assert all(c.outcome == "approved" and c.idempotency_key for c in calls)
    types = outbox_types(services)
    assert types.count("payment.captured") == 2
    assert "payment.refunded" in types and "payment.voided" in types
    refunded = next(e for e in services.events.read() if e.type == "payment.refunded")
    assert refunded.data["customer"] == CUSTOMER and refunded.data["amount"] == "20.00"


@pytest.mark.postgres
def test_a_timeout_on_capture_followed_by_a_retry_captures_once(services: Services) -> None:
    services.payments.authorise("ORD-2", [card("tok_timeout_once")], eur(80))

    outcome = services.payments.capture("ORD-2", eur(50), "SHP-1")

    assert outcome.approved and outcome.processed == eur(50)
    captures = services.payment_gateway.records(kind="capture", token="tok_timeout_once")
    assert len(captures) == 1 and captures[0]["amount"] == Decimal(50)
    calls = [c for c in services.payments.gateway_calls("ORD-2") if c.operation == "capture"]
    assert [(c.attempt, c.outcome) for c in calls] == [(1, "timeout"), (2, "approved")]
    assert calls[0].idempotency_key == calls[1].idempotency_key
    assert services.payments.summary("ORD-2").captured == eur(50)

    # capturing the same shipment again (a retried use case) captures nothing more
    again = services.payments.capture("ORD-2", eur(50), "SHP-1")
    assert again.approved and again.processed == eur(0)
    assert len(services.payment_gateway.records(kind="capture")) == 1


def test_a_use_case_rolled_back_after_the_gateway_call_does_not_capture_twice(
    services: Services,
) -> None:
    services.payments.authorise("ORD-3", [card()], eur(60))
    with services.uow() as uow:
        outcome = services.payments.capture("ORD-3", eur(60), "SHP-1", uow=uow)
        assert outcome.approved
        uow.rollback()  # e.g. the shipment update failed after the capture
    assert services.payments.summary("ORD-3").captured == eur(0)

    with services.uow() as uow:  # the caller retries its whole use case
        services.payments.capture("ORD-3", eur(60), "SHP-1", uow=uow)
        uow.commit()

    assert services.payments.summary("ORD-3").captured == eur(60)
    assert len(services.payment_gateway.records(kind="capture")) == 1


@pytest.mark.postgres
def test_a_declined_card_is_a_domain_outcome_that_holds_the_order(services: Services) -> None:
    outcome = services.payments.authorise("ORD-4", [card("tok_decline")], eur(30))

    assert outcome.status is PaymentStatus.DECLINED and outcome.needs_hold
    assert outcome.decline_code == "card_declined"
    declined = [e for e in services.events.read() if e.type == "payment.declined"]
    assert declined and declined[0].data["operation"] == "authorise"
    assert services.payments.gateway_calls("ORD-4")[0].outcome == "declined"

    services.payments.authorise("ORD-5", [card("tok_decline_capture")], eur(30))
    capture = services.payments.capture("ORD-5", eur(30), "SHP-1")
    assert capture.needs_hold and capture.decline_code == "capture_declined"
    event = [e for e in services.events.read() if e.type == "payment.declined"][-1]
    assert event.data["shipment_ref"] == "SHP-1" and event.subject == "orders/ORD-5"
    assert services.payments.summary("ORD-5").captured == eur(0)


def test_a_gateway_that_never_answers_leaves_the_order_unpaid_and_held(services: Services) -> None:
    services.payments.authorise("ORD-6", [card("tok_timeout_always")], eur(10))
    calls = services.payments.gateway_calls("ORD-6")
    assert [(c.attempt, c.outcome) for c in calls] == [
        (1, "timeout"),
        (2, "timeout"),
        (3, "timeout"),
    ]
    assert len({c.idempotency_key for c in calls}) == 1
    assert "payment.declined" in outbox_types(services)


def test_an_expired_authorisation_is_renewed_before_capture(
    services: Services, clock: ControlledClock
) -> None:
    services.payments.authorise("ORD-7", [card("tok_expired_auth")], eur(40))
    outcome = services.payments.capture("ORD-7", eur(15), "SHP-1")
    assert outcome.approved
    operations = [
        (c.operation, c.idempotency_key) for c in services.payments.gateway_calls("ORD-7")
    ]
    assert [op for op, _ in operations] == ["authorise", "authorise", "capture"]
    assert ":reauthorise:" in operations[1][1]

    services.payments.authorise("ORD-8", [card()], eur(40))
    clock.advance(timedelta(days=8))  # past the card authorisation's 7 days
    assert services.payments.capture("ORD-8", eur(40), "SHP-1").approved
    summary = services.payments.summary("ORD-8")
    assert summary.captured == eur(40) and summary.authorised_open == eur(0)


def test_refunds_never_exceed_what_was_captured_and_are_idempotent_per_reference(
    services: Services,
) -> None:
    services.payments.authorise("ORD-9", [card()], eur(50))
    services.payments.capture("ORD-9", eur(20), "SHP-1")
    with pytest.raises(RefundExceedsCaptured):
        services.payments.refund("ORD-9", eur("20.01"), "goodwill", refund_ref="APP-1")
    services.payments.refund("ORD-9", eur(5), "goodwill", refund_ref="APP-1")
    services.payments.refund("ORD-9", eur(5), "goodwill", refund_ref="APP-1")
    assert services.payments.summary("ORD-9").refunded == eur(5)
    assert len(services.payment_gateway.records(kind="refund")) == 1


def test_gift_card_balance_and_key_reuse_are_refused_like_a_real_gateway(
    services: Services,
) -> None:
    gateway: SandboxGateway = services.payment_gateway
    first = gateway.authorise(token="gc_25", amount=eur(20), idempotency_key="k1")
    assert first.approved
    over = gateway.authorise(token="gc_25", amount=eur(10), idempotency_key="k2")
    assert not over.approved and over.decline_code == "insufficient_funds"
    assert gateway.authorise(token="gc_25", amount=eur(20), idempotency_key="k1") == first
    with pytest.raises(GatewayKeyReused):
        gateway.authorise(token="gc_25", amount=eur(21), idempotency_key="k1")
    assert first.reference is not None
    too_much = gateway.capture(authorisation=first.reference, amount=eur(21), idempotency_key="k3")
    assert too_much.decline_code == "amount_exceeds_authorisation"


def test_the_sandbox_state_is_shared_by_separate_connections(
    services: Services, clock: ControlledClock
) -> None:
    """Another process opens its own engine on the same store and sees the same answers."""
    from oms.adapters.db.engine import make_engine

    services.payment_gateway.ensure_schema()
    engine = services.payment_gateway._engine
    other = SandboxGateway(
        make_engine(str(engine.url.render_as_string(hide_password=False))), clock=clock
    )
    first = services.payment_gateway.authorise(token="tok_visa", amount=eur(5), idempotency_key="x")
    assert other.authorise(token="tok_visa", amount=eur(5), idempotency_key="x") == first
    assert len(other.records(kind="authorisation")) == 1


def test_every_gateway_call_is_recorded_with_request_key_and_outcome(services: Services) -> None:
    services.payments.authorise("ORD-10", [card()], eur(12))
    with services.engine.connect() as connection:
        rows = connection.execute(select(payment_gateway_calls)).mappings().all()
    assert len(rows) == 1
    assert rows[0]["request"] == {"token": "tok_visa", "amount": "12.00", "currency": "EUR"}
    assert rows[0]["idempotency_key"] == "ORD-10:authorise:card"
    assert rows[0]["response"]["approved"] is True


CAPTURE_IN_ANOTHER_PROCESS = """
import sys
from datetime import datetime
from oms.adapters.clock import ControlledClock
from oms.adapters.db.engine import make_engine
from oms.adapters.gateways.payments_sandbox import SandboxGateway
from oms.domain.payments import Money

clock = ControlledClock(datetime.fromisoformat(sys.argv[3]))
gateway = SandboxGateway(make_engine(sys.argv[1]), clock=clock)
result = gateway.capture(
    authorisation=sys.argv[2], amount=Money.of("30", "EUR"), idempotency_key="the-same-key"
)
print(result.approved, result.reference)
"""


@pytest.mark.postgres
def test_duplicate_requests_from_several_processes_capture_once(services: Services) -> None:
    import subprocess
    import sys

    gateway = services.payment_gateway
    auth = gateway.authorise(token="tok_visa", amount=eur(100), idempotency_key="auth-1")
    assert auth.reference is not None
    url = gateway._engine.url.render_as_string(hide_password=False)
    now = services.clock.now().isoformat()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CAPTURE_IN_ANOTHER_PROCESS, url, auth.reference, now],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    answers = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode == 0 for p in processes), answers
    assert len({out for out, _ in answers}) == 1  # every process got the first result
    assert answers[0][0].startswith("True sbx_cap_")
    captures = gateway.records(kind="capture")
    assert len(captures) == 1 and captures[0]["amount"] == Decimal(30)
    (authorisation,) = gateway.records(kind="authorisation")
    assert authorisation["captured"] == Decimal(30)


@pytest.mark.postgres
def test_concurrent_captures_on_one_order_never_exceed_the_authorisation(
    services: Services,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from oms.domain.payments import CaptureExceedsAuthorisation

    services.payments.authorise("ORD-C", [card()], eur(100))

    def ship(n: int) -> str:
        try:
            return services.payments.capture("ORD-C", eur(60), f"SHP-{n}").status.value
        except CaptureExceedsAuthorisation:
            return "refused"

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = sorted(pool.map(ship, range(3)))

    assert results == ["approved", "refused", "refused"]
    assert services.payments.summary("ORD-C").captured == eur(60)
    assert len(services.payment_gateway.records(kind="capture")) == 1


@pytest.mark.postgres
def test_tenders_read_back_with_their_limits_in_the_order_currency(services: Services) -> None:
    """A new payment order starts without tenders; read back later, each tender's limit is in
    the order's currency (read along with the tenders)."""
    gift = Tender("gift", TenderKind.GIFT_CARD, "gc_25", eur(25))
    outcome = services.payments.authorise("W-7001", [gift, card()], eur(60))
    assert outcome.status is PaymentStatus.APPROVED
    with services.uow(read_only=True) as uow:
        assert uow.payments.tenders("W-7001") == [gift, card()]
        assert uow.payments.tenders("W-NONE") == []
    more = services.payments.authorise("W-7001", [card("tok_visa", "card2")], eur(5))
    assert more.status is PaymentStatus.APPROVED
    with services.uow(read_only=True) as uow:
        assert [t.tender_id for t in uow.payments.tenders("W-7001")] == ["gift", "card", "card2"]


@pytest.mark.postgres
def test_capture_if_paid_does_nothing_without_payments_and_captures_as_capture_with(
    services: Services,
) -> None:
    assert services.payments.capture_if_paid("W-NOPAY", eur(10), "SHP-0") is None
    with pytest.raises(PaymentNotFound):
        services.payments.capture("W-NOPAY", eur(10), "SHP-0")
    services.payments.authorise("W-7002", [card()], eur(30))

    first = services.payments.capture_if_paid("W-7002", eur(10), "SHP-1")
    assert first is not None and first.approved and first.processed == eur(10)
    again = services.payments.capture("W-7002", eur(10), "SHP-1")  # nothing missing
    assert again.approved and again.processed == eur(0)
    assert services.payments.summary("W-7002").authorised_open == eur(20)
    assert outbox_types(services).count("payment.captured") == 1
