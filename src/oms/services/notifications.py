"""Customer email driven by the outbox: each event becomes at most one email, sent by SMTP and
retried with backoff when the mail server fails.

How it works
------------
1. :meth:`NotificationService.collect` reads committed events with the outbox repository's
   ``read_after`` from its own persisted cursor (``notification_cursors``, name ``email``). For
   each event it applies the customer's contact preferences, renders the template of the event
   in the customer's language (falling back to English) and stores ONE delivery row per event and
   channel (unique ``(event_id, channel)``): ``pending``, or ``skipped`` with the reason, or
   ``invalid`` when the event lacks what the template needs. The read never passes a position
   that a transaction still in flight may fill (see ``OutboxRepository.read_after``), so an event
   whose transaction commits late is not skipped; the unique key keeps a replay from sending twice.
2. :meth:`NotificationService.send_due` claims due deliveries one by one (``sending`` with a
   lease, so two workers never send the same one), sends by SMTP outside any transaction and
   marks them ``sent``; an SMTP failure sets the next attempt at ``retry * 2**(attempts-1)``
   later, up to ``max_attempts``, then ``failed``. The Message-ID is derived from the event id.

Events and the data they must carry (orders and fulfillment emit them; ``payment.refunded`` is
emitted by :class:`oms.services.payments.PaymentService`). Every event carries
``customer: {email, name, language}`` (language optional: ISO 639-1, e.g. "de") and
``order_number`` (falls back to ``order_id`` / ``order_ref``). Money is a decimal string plus
``currency``. Dates are ISO 8601.

``order.created`` -> order confirmation
    {order_id, order_number, customer, currency,
     lines: [{sku, description, quantity, unit_price, line_total, delivery_method}],
     totals: {subtotal, shipping, tax, total}}
``fulfillment.shipped`` -> shipped
    {order_id, order_number, customer, shipment_id, carrier, tracking_number, tracking_url,
     lines: [{sku, description, quantity}], expected_on (optional)}
``fulfillment.ready_for_pickup`` -> ready for pickup
    {order_id, order_number, customer, pickup_code, collect_by,
     location: {code, name, address}, lines: [{sku, description, quantity}]}
``fulfillment.pickup_reminder_due`` -> pickup reminder (marketing-like: respects opt-out)
    {order_id, order_number, customer, pickup_code, collect_by, location: {code, name, address}}
``order.cancelled`` -> cancellation
    {order_id, order_number, customer, reason, currency,
     lines: [{sku, description, quantity}], refund_amount (optional)}
``order.backorder_delayed`` -> backorder delay
    {order_id, order_number, customer, lines: [{sku, description, quantity, expected_on}]}
``payment.refunded`` -> refund issued
    {order_ref, customer, refund_ref, amount, currency, reason, tenders: [{tender_id, amount}]}
``payment.declined`` -> payment problem, to customer care (``OMS_CARE_EMAIL``), in English
    {order_ref, operation, amount, currency, tender_id, decline_code, message, shipment_ref}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from oms.domain.errors import Invalid
from oms.domain.notifications import (
    DEFAULT_LANGUAGE,
    MESSAGE_FOR_EVENT,
    ContactPreferences,
    Message,
    choose_language,
    decide,
    normalise_email,
    normalise_language,
)
from oms.services.events import DEFAULT_GAP_GRACE
from oms.services.ports import (
    Clock,
    Delivery,
    EmailNotSent,
    EmailSender,
    EmailTemplates,
    OutboxEvent,
    OutgoingEmail,
    TemplateProblem,
    UnitOfWorkFactory,
)

EMAIL: Final = "email"
CURSOR: Final = "email"
SEND_LEASE: Final = timedelta(minutes=5)
"""A delivery claimed for sending longer ago than this belongs to a sender that died."""


@dataclass(frozen=True)
class SendReport:
    sent: int
    retrying: int
    failed: int


class NotificationService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        templates: EmailTemplates,
        sender: EmailSender,
        max_attempts: int = 8,
        retry_seconds: float = 60,
        gap_grace: timedelta = DEFAULT_GAP_GRACE,
        message_domain: str = "oms.local",
        care_email: str | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._templates = templates
        self._sender = sender
        self._max_attempts = max_attempts
        self._retry = timedelta(seconds=retry_seconds)
        self._gap_grace = gap_grace
        self._domain = message_domain
        self._care_email = normalise_email(care_email) if care_email else None

    # -- preferences ---------------------------------------------------------------------------

    def set_preferences(
        self,
        email: str,
        *,
        email_enabled: bool = True,
        marketing_opt_out: bool = False,
        language: str | None = None,
    ) -> ContactPreferences:
        preferences = ContactPreferences(
            email=normalise_email(email),
            email_enabled=email_enabled,
            marketing_opt_out=marketing_opt_out,
            language=normalise_language(language) if language else None,
        )
        with self._uow() as uow:
            uow.notifications.save_preferences(preferences, at=self._clock.now())
            uow.commit()
        return preferences

    def preferences(self, email: str) -> ContactPreferences | None:
        with self._uow(read_only=True) as uow:
            return uow.notifications.preferences(normalise_email(email))

    def deliveries(
        self, *, event_id: str | None = None, recipient: str | None = None
    ) -> list[Delivery]:
        with self._uow(read_only=True) as uow:
            return uow.notifications.deliveries(
                event_id=event_id,
                recipient=normalise_email(recipient) if recipient else None,
            )

    # -- the notifier --------------------------------------------------------------------------

    def dispatch(self, *, batch: int = 100) -> SendReport:
        """One pass: turn every new event into deliveries, then send what is due."""
        while self.collect(limit=batch) == batch:
            pass
        return self.send_due(limit=batch)

    def collect(self, *, limit: int = 100) -> int:
        """Turn the next events after the cursor into delivery rows; returns how many were read
        past the cursor."""
        with self._uow() as uow:
            cursor = uow.notifications.cursor(CURSOR)
            page = uow.outbox.read_after(
                cursor,
                limit=limit,
                types=sorted(MESSAGE_FOR_EVENT),
                settled_before=self._clock.now() - self._gap_grace,
            )
            for event in page.events:
                delivery = self._delivery_for(uow.notifications.preferences, event)
                uow.notifications.add_delivery(delivery)
            if page.next_after > cursor:
                uow.notifications.advance_cursor(CURSOR, page.next_after, at=self._clock.now())
            uow.commit()
        return len(page.events)

    def send_due(self, *, limit: int = 100) -> SendReport:
        now = self._clock.now()
        with self._uow(read_only=True) as uow:
            due = uow.notifications.due(at=now, limit=limit)
        sent = retrying = failed = 0
        for delivery in due:
            with self._uow() as uow:
                claimed = uow.notifications.claim(
                    delivery.delivery_id, at=now, lease_until=now + SEND_LEASE
                )
                uow.commit()
            if not claimed or delivery.recipient is None:
                continue
            attempt = delivery.attempts + 1
            try:
                self._sender.send(
                    OutgoingEmail(
                        to=delivery.recipient,
                        subject=delivery.subject or "",
                        body=delivery.body or "",
                        message_id=f"<{delivery.event_id}.{delivery.channel}@{self._domain}>",
                    )
                )
            except EmailNotSent as error:
                retry_at = None
                if attempt < self._max_attempts:
                    retry_at = self._clock.now() + self._retry * 2 ** (attempt - 1)
                    retrying += 1
                else:
                    failed += 1
                with self._uow() as uow:
                    uow.notifications.mark_failed(
                        delivery.delivery_id,
                        error=f"attempt {attempt}: {error}",
                        retry_at=retry_at,
                        at=self._clock.now(),
                    )
                    uow.commit()
                continue
            with self._uow() as uow:
                uow.notifications.mark_sent(delivery.delivery_id, at=self._clock.now())
                uow.commit()
            sent += 1
        return SendReport(sent=sent, retrying=retrying, failed=failed)

    # -- deciding and rendering ----------------------------------------------------------------

    def _delivery_for(self, preferences_of: Any, event: OutboxEvent) -> Delivery:
        message = MESSAGE_FOR_EVENT[event.type]
        now = self._clock.now()
        customer = event.data.get("customer") or {}
        base = Delivery(
            delivery_id=0,
            event_id=event.event_id,
            event_type=event.type,
            channel=EMAIL,
            template=message.value,
            language=DEFAULT_LANGUAGE,
            recipient=None,
            subject=None,
            body=None,
            status="skipped",
            attempts=0,
            next_attempt_at=None,
            last_error=None,
            created_at=now,
            sent_at=None,
        )
        preferences: ContactPreferences | None = None
        if message.to_customer_care:
            if self._care_email is None:
                return replace(base, last_error="no customer-care mailbox set (OMS_CARE_EMAIL)")
            recipient = self._care_email
            language = DEFAULT_LANGUAGE
        else:
            try:
                recipient = normalise_email(str(customer.get("email") or ""))
            except Invalid:
                return replace(base, last_error="the event names no valid customer email")
            preferences = preferences_of(recipient)
            language = choose_language(preferences, customer.get("language"))
        decision = decide(message, preferences)
        if not decision.send:
            return replace(base, language=language, recipient=recipient, last_error=decision.reason)
        try:
            rendered = self._templates.render(message.value, language, _context(message, event))
        except TemplateProblem as problem:
            return replace(
                base,
                language=language,
                recipient=recipient,
                status="invalid",
                last_error=str(problem),
            )
        return replace(
            base,
            language=rendered.language,
            recipient=recipient,
            subject=rendered.subject,
            body=rendered.body,
            status="pending",
            next_attempt_at=now,
        )


def _context(message: Message, event: OutboxEvent) -> dict[str, Any]:
    data = dict(event.data)
    data.setdefault("order_number", data.get("order_id") or data.get("order_ref") or event.subject)
    data["customer"] = {"name": "", **(data.get("customer") or {})}
    data["template"] = message.value
    data["event_time"] = event.time
    return data


def parse_time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
