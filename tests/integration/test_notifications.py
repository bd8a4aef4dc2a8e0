"""Customer email from outbox events, sent to a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services, build_services
from oms.config import Settings
from oms.domain.payments import Money, Tender, TenderKind
from oms.services.ports import OutboxEvent

ADA = {"email": "ada@example.com", "name": "Ada Lovelace", "language": "en"}
KLARA = {"email": "klara@example.de", "name": "Klara Schmidt", "language": "de"}


@dataclass
class Mailbox:
    """An aiosmtpd handler keeping what arrives; it can refuse the next N messages (451)."""

    messages: list[EmailMessage] = field(default_factory=list)
    refuse_next: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return "451 4.3.0 try again later"
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def mailbox(smtp_port: int) -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
def notifier(
    database_url: str, engine: Engine, clock: ControlledClock, smtp_port: int, tmp_path: Path
) -> Services:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_from="Shop <orders@shop.example>",
        smtp_timeout_seconds=5,
    )
    return build_services(settings, clock=clock, engine=engine)


def emit(services: Services, type: str, data: dict[str, Any], subject: str = "") -> str:
    """Commit an event as the other areas will (it lands in the outbox)."""
    event_id = str(uuid.uuid4())
    event = OutboxEvent(
        position=0,
        event_id=event_id,
        type=type,
        source="/oms",
        subject=subject or f"orders/{data.get('order_id', '')}",
        time=services.clock.now(),
        data=data,
    )
    with services.uow() as uow:
        uow.outbox.add([event])
        uow.commit()
    return event_id


ORDER_CREATED = {
    "order_id": "o-1",
    "order_number": "W-1001",
    "customer": ADA,
    "currency": "EUR",
    "lines": [
        {"sku": "LAMP-01", "description": "Desk lamp", "quantity": 2, "unit_price": "24.50",
         "line_total": "49.00", "delivery_method": "ship"},
        {"sku": "BULB-07", "description": "LED bulb", "quantity": 1, "unit_price": "1234.50",
         "line_total": "1234.50", "delivery_method": "pickup"},
    ],
    "totals": {"subtotal": "1283.50", "shipping": "4.95", "tax": "205.71", "total": "1288.45"},
}  # fmt: skip
SHIPPED = {
    "order_id": "o-1", "order_number": "W-1001", "customer": ADA, "shipment_id": "SHP-1",
    "carrier": "DHL", "tracking_number": "00340434161094042557",
    "tracking_url": "https://track.example/00340434161094042557",
    "lines": [{"sku": "LAMP-01", "description": "Desk lamp", "quantity": 2}],
    "expected_on": "2026-01-08",
}  # fmt: skip
READY = {
    "order_id": "o-1", "order_number": "W-1001", "customer": ADA, "pickup_code": "PK-7Q2M",
    "collect_by": "2026-01-12T18:00:00+00:00",
    "location": {"code": "S-BERLIN", "name": "Berlin Mitte store", "address": "Unter den Linden 1"},
    "lines": [{"sku": "BULB-07", "description": "LED bulb", "quantity": 1}],
}  # fmt: skip
REMINDER = {
    "order_id": "o-1", "order_number": "W-1001", "customer": ADA, "pickup_code": "PK-7Q2M",
    "collect_by": "2026-01-12T18:00:00+00:00",
    "location": {"code": "S-BERLIN", "name": "Berlin Mitte store", "address": "Unter den Linden 1"},
}  # fmt: skip
CANCELLED = {
    "order_id": "o-2", "order_number": "W-1002", "customer": ADA, "reason": "out of stock",
    "currency": "EUR", "refund_amount": "19.99",
    "lines": [{"sku": "MUG-03", "description": "Blue mug", "quantity": 1}],
}  # fmt: skip
BACKORDERED = {
    "order_id": "o-3", "order_number": "W-1003", "customer": ADA,
    "lines": [{"sku": "SOFA-9", "description": "Sofa", "quantity": 1, "expected_on": "2026-02-20"}],
}  # fmt: skip


def sent_body(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


@pytest.mark.postgres
def test_each_event_sends_the_right_email(notifier: Services, mailbox: Mailbox) -> None:
    emit(notifier, "order.created", ORDER_CREATED)
    emit(notifier, "fulfillment.shipped", SHIPPED)
    emit(notifier, "fulfillment.ready_for_pickup", READY)
    emit(notifier, "fulfillment.pickup_reminder_due", REMINDER)
    emit(notifier, "order.cancelled", CANCELLED)
    emit(notifier, "order.backorder_delayed", BACKORDERED)
    notifier.payments.authorise(
        "W-1004", [Tender("card", TenderKind.CARD, "tok_visa")], Money.of("30", "EUR"),
        customer=ADA,
    )  # fmt: skip
    notifier.payments.capture("W-1004", Money.of("30", "EUR"), "SHP-9")
    notifier.payments.refund(
        "W-1004", Money.of("12.50", "EUR"), "damaged on arrival", refund_ref="RMA-77"
    )

    report = notifier.notifications.dispatch()

    assert report.sent == 7 and report.retrying == 0
    by_subject = {m["Subject"]: m for m in mailbox.to("ada@example.com")}
    assert set(by_subject) == {
        "Your order W-1001 is confirmed",
        "Your order W-1001 is on its way",
        "Your order W-1001 is ready for pickup",
        "Reminder: your order W-1001 is waiting at Berlin Mitte store",
        "Your order W-1002 has been cancelled",
        "Your order W-1003 is delayed",
        "We have refunded 12.50 EUR for order W-1004",
    }
    confirmation = sent_body(by_subject["Your order W-1001 is confirmed"])
    assert "Hello Ada Lovelace" in confirmation
    assert "2 x Desk lamp (LAMP-01)  49.00 EUR" in confirmation
    assert "1,234.50 EUR" in confirmation and "Total:    1,288.45 EUR" in confirmation
    shipped = sent_body(by_subject["Your order W-1001 is on its way"])
    assert "shipped with DHL" in shipped
    assert "Tracking number: 00340434161094042557" in shipped
    assert "https://track.example/00340434161094042557" in shipped
    assert "Expected delivery: 8 January 2026" in shipped
    ready = sent_body(by_subject["Your order W-1001 is ready for pickup"])
    assert "Your pickup code: PK-7Q2M" in ready and "Unter den Linden 1" in ready
    assert "collect it by 12 January 2026" in ready
    reminder = sent_body(by_subject["Reminder: your order W-1001 is waiting at Berlin Mitte store"])
    assert "PK-7Q2M" in reminder
    cancelled = sent_body(by_subject["Your order W-1002 has been cancelled"])
    assert "1 x Blue mug (MUG-03)" in cancelled and "Reason: out of stock" in cancelled
    assert "19.99 EUR" in cancelled
    delayed = sent_body(by_subject["Your order W-1003 is delayed"])
    assert "Sofa (SOFA-9): expected 20 February 2026" in delayed
    refund = sent_body(by_subject["We have refunded 12.50 EUR for order W-1004"])
    assert "Reason: damaged on arrival" in refund and "RMA-77" in refund
    message = by_subject["Your order W-1001 is confirmed"]
    assert message["From"] == "Shop <orders@shop.example>"
    assert message["Message-ID"].endswith("@oms.local>")

    # another pass sends nothing again: one email per event
    assert notifier.notifications.dispatch().sent == 0
    assert len(mailbox.messages) == 7


def test_german_customers_get_german_email_and_unknown_languages_fall_back_to_english(
    notifier: Services, mailbox: Mailbox
) -> None:
    emit(notifier, "order.created", {**ORDER_CREATED, "customer": KLARA})
    emit(notifier, "fulfillment.ready_for_pickup", {**READY, "customer": KLARA})
    emit(notifier, "fulfillment.shipped", {**SHIPPED, "customer": {**KLARA, "language": "fr"}})

    notifier.notifications.dispatch()

    subjects = sorted(m["Subject"] for m in mailbox.to("klara@example.de"))
    assert subjects == [
        "Ihre Bestellung W-1001 ist abholbereit",
        "Ihre Bestellung W-1001 ist bestätigt",
        "Your order W-1001 is on its way",
    ]
    confirmation = next(m for m in mailbox.messages if "bestätigt" in m["Subject"])
    body = sent_body(confirmation)
    assert "Guten Tag Klara Schmidt" in body and "Gesamt:        1.288,45 EUR" in body
    ready = next(m for m in mailbox.messages if "abholbereit" in m["Subject"])
    assert "bis zum 12. Januar 2026" in sent_body(ready)


def test_contact_preferences_are_respected(notifier: Services, mailbox: Mailbox) -> None:
    notifier.notifications.set_preferences(
        "Ada@Example.com", marketing_opt_out=True, language="de-DE"
    )
    notifier.notifications.set_preferences("klara@example.de", email_enabled=False)
    reminder = emit(notifier, "fulfillment.pickup_reminder_due", REMINDER)
    emit(notifier, "fulfillment.ready_for_pickup", READY)
    emit(notifier, "order.created", {**ORDER_CREATED, "customer": KLARA})
    emit(notifier, "order.created", {**ORDER_CREATED, "customer": {"name": "No Email"}})

    notifier.notifications.dispatch()

    # the transactional message arrives, in the preferred language; the reminder does not
    assert [m["Subject"] for m in mailbox.messages] == ["Ihre Bestellung W-1001 ist abholbereit"]
    (skipped,) = notifier.notifications.deliveries(event_id=reminder)
    assert skipped.status == "skipped"
    assert skipped.last_error == "the customer opted out of marketing-like messages"
    (klara,) = notifier.notifications.deliveries(recipient="klara@example.de")
    assert klara.status == "skipped" and "email channel off" in (klara.last_error or "")
    statuses = sorted(d.status for d in notifier.notifications.deliveries())
    assert statuses == ["sent", "skipped", "skipped", "skipped"]


def test_an_smtp_failure_is_retried_with_backoff(
    notifier: Services, mailbox: Mailbox, clock: ControlledClock
) -> None:
    mailbox.refuse_next = 2
    event_id = emit(notifier, "order.created", ORDER_CREATED)

    first = notifier.notifications.dispatch()
    assert (first.sent, first.retrying) == (0, 1)
    (delivery,) = notifier.notifications.deliveries(event_id=event_id)
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=60)
    assert "451" in (delivery.last_error or "")

    assert notifier.notifications.dispatch().sent == 0  # not due yet
    clock.advance(timedelta(seconds=61))
    assert notifier.notifications.dispatch().retrying == 1  # refused again: wait twice as long
    (delivery,) = notifier.notifications.deliveries(event_id=event_id)
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=120)
    clock.advance(timedelta(seconds=121))

    assert notifier.notifications.dispatch().sent == 1
    assert [m["Subject"] for m in mailbox.messages] == ["Your order W-1001 is confirmed"]
    (delivery,) = notifier.notifications.deliveries(event_id=event_id)
    assert delivery.status == "sent" and delivery.attempts == 3


def test_an_unreachable_server_is_retried_then_given_up(
    database_url: str, engine: Engine, clock: ControlledClock, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url, data_dir=tmp_path / "d", smtp_port=free_port(),
        notification_max_attempts=2, notification_retry_seconds=10,
    )  # fmt: skip
    services = build_services(settings, clock=clock, engine=engine)
    event_id = emit(services, "order.cancelled", CANCELLED)
    assert services.notifications.dispatch().retrying == 1
    clock.advance(timedelta(seconds=11))
    assert services.notifications.dispatch().failed == 1
    (delivery,) = services.notifications.deliveries(event_id=event_id)
    assert delivery.status == "failed" and delivery.attempts == 2


def test_an_event_missing_template_data_is_kept_as_invalid_and_does_not_block_others(
    notifier: Services, mailbox: Mailbox
) -> None:
    broken = emit(notifier, "fulfillment.shipped", {"order_id": "o-9", "customer": ADA})
    emit(notifier, "order.created", ORDER_CREATED)
    notifier.notifications.dispatch()
    (delivery,) = notifier.notifications.deliveries(event_id=broken)
    assert delivery.status == "invalid" and "carrier" in (delivery.last_error or "")
    assert [m["Subject"] for m in mailbox.messages] == ["Your order W-1001 is confirmed"]


def test_a_declined_capture_tells_customer_care(
    database_url: str, engine: Engine, clock: ControlledClock, smtp_port: int,
    mailbox: Mailbox, tmp_path: Path,
) -> None:  # fmt: skip
    settings = Settings(
        database_url=database_url, data_dir=tmp_path / "d", smtp_port=smtp_port,
        care_email="care@shop.example",
    )  # fmt: skip
    services = build_services(settings, clock=clock, engine=engine)
    services.payments.authorise(
        "W-3001", [Tender("card", TenderKind.CARD, "tok_decline_capture")], Money.of(40, "EUR"),
        customer=ADA,
    )  # fmt: skip
    outcome = services.payments.capture("W-3001", Money.of(40, "EUR"), "SHP-1")
    assert outcome.needs_hold

    services.notifications.dispatch()

    (message,) = mailbox.messages
    assert message["To"] == "care@shop.example"
    assert message["Subject"] == "Payment problem on order W-3001: capture capture_declined"
    body = sent_body(message)
    assert "40.00 EUR" in body and "Shipment: SHP-1" in body and "payment hold" in body
