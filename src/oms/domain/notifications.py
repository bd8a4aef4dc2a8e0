"""Customer notifications: which event becomes which message, and what the customer allows.

The event types and the data each message needs are documented in
:mod:`oms.services.notifications`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from oms.domain.errors import Invalid

DEFAULT_LANGUAGE: Final = "en"


class MessageCategory(StrEnum):
    TRANSACTIONAL = "transactional"
    """About something the customer did or is owed: always sent while the channel is on."""
    MARKETING_LIKE = "marketing_like"
    """A nudge the customer did not ask for; not sent to customers who opted out."""


class Message(StrEnum):
    ORDER_CONFIRMATION = "order_confirmation"
    SHIPPED = "shipped"
    READY_FOR_PICKUP = "ready_for_pickup"
    PICKUP_REMINDER = "pickup_reminder"
    CANCELLATION = "cancellation"
    BACKORDER_DELAY = "backorder_delay"
    REFUND_ISSUED = "refund_issued"
    PAYMENT_PROBLEM = "payment_problem"
    """To customer care, not the customer: a payment was declined or the gateway was down."""

    @property
    def category(self) -> MessageCategory:
        return MESSAGE_CATEGORIES[self]

    @property
    def to_customer_care(self) -> bool:
        return self in CARE_MESSAGES


MESSAGE_CATEGORIES: Final[Mapping[Message, MessageCategory]] = {
    Message.ORDER_CONFIRMATION: MessageCategory.TRANSACTIONAL,
    Message.SHIPPED: MessageCategory.TRANSACTIONAL,
    Message.READY_FOR_PICKUP: MessageCategory.TRANSACTIONAL,
    # A reminder repeats what the customer already knows: it is a nudge, so it respects opt-out.
    Message.PICKUP_REMINDER: MessageCategory.MARKETING_LIKE,
    Message.CANCELLATION: MessageCategory.TRANSACTIONAL,
    Message.BACKORDER_DELAY: MessageCategory.TRANSACTIONAL,
    Message.REFUND_ISSUED: MessageCategory.TRANSACTIONAL,
    Message.PAYMENT_PROBLEM: MessageCategory.TRANSACTIONAL,
}

CARE_MESSAGES: Final = frozenset({Message.PAYMENT_PROBLEM})

MESSAGE_FOR_EVENT: Final[Mapping[str, Message]] = {
    "order.created": Message.ORDER_CONFIRMATION,
    "fulfillment.shipped": Message.SHIPPED,
    "fulfillment.ready_for_pickup": Message.READY_FOR_PICKUP,
    "fulfillment.pickup_reminder_due": Message.PICKUP_REMINDER,
    "order.cancelled": Message.CANCELLATION,
    "order.backorder_delayed": Message.BACKORDER_DELAY,
    "payment.refunded": Message.REFUND_ISSUED,
    "payment.declined": Message.PAYMENT_PROBLEM,
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LANGUAGE = re.compile(r"^[a-z]{2}$")


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise Invalid(f"'{email}' is not an email address")
    return email


def normalise_language(language: str) -> str:
    """'de-CH' -> 'de'; a two-letter ISO 639-1 code."""
    code = language.strip().lower().replace("_", "-").split("-")[0]
    if not _LANGUAGE.match(code):
        raise Invalid(f"'{language}' is not a language code such as 'en' or 'de'")
    return code


@dataclass(frozen=True)
class ContactPreferences:
    email: str
    email_enabled: bool = True
    marketing_opt_out: bool = False
    language: str | None = None


@dataclass(frozen=True)
class Decision:
    send: bool
    reason: str


def decide(message: Message, preferences: ContactPreferences | None) -> Decision:
    """Whether the customer gets this message by email."""
    if preferences is None:
        return Decision(True, "no preferences recorded: defaults apply")
    if not preferences.email_enabled:
        return Decision(False, "the customer turned the email channel off")
    if message.category is MessageCategory.MARKETING_LIKE and preferences.marketing_opt_out:
        return Decision(False, "the customer opted out of marketing-like messages")
    return Decision(True, f"{message.category} message, email channel on")


def choose_language(preferences: ContactPreferences | None, event_language: str | None) -> str:
    """The customer's preferred language, else the order's, else English."""
    for candidate in (preferences.language if preferences else None, event_language):
        if candidate:
            try:
                return normalise_language(candidate)
            except Invalid:
                continue
    return DEFAULT_LANGUAGE
