"""Customer care: appeasements (goodwill refunds or credits) with per-role limits and supervisor
approval, and notes on orders and customers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, ClassVar

from oms.domain.errors import Conflict, Forbidden, Invalid, NotFound
from oms.domain.events import DomainEvent


class AppeasementKind(StrEnum):
    REFUND = "refund"
    """Money back to the original tenders (through the payment gateway)."""
    CREDIT = "credit"
    """Store credit for a later purchase (no money moves now)."""


class AppeasementReason(StrEnum):
    LATE_DELIVERY = "late_delivery"
    DAMAGED_PACKAGING = "damaged_packaging"
    MISSING_ITEM = "missing_item"
    PRICE_ADJUSTMENT = "price_adjustment"
    SERVICE_FAILURE = "service_failure"
    GOODWILL = "goodwill"
    OTHER = "other"


class AppeasementStatus(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    ISSUED = "issued"
    REJECTED = "rejected"
    FAILED = "failed"
    """The gateway refused the refund (the payment.declined event tells care)."""


class AppeasementNotFound(NotFound):
    slug = "appeasement-not-found"
    title = "No such appeasement"


class InvalidAppeasement(Invalid):
    slug = "invalid-appeasement"
    title = "The appeasement is not valid"


class AppeasementRefused(Conflict):
    slug = "appeasement-refused"
    title = "The appeasement cannot be done"


class ApprovalNotAllowed(Forbidden):
    slug = "approval-not-allowed"
    title = "Only a supervisor may decide this"


def appeasement_amount(
    *,
    amount: Decimal | None,
    percent: Decimal | None,
    base: Decimal,
    exponent: int,
) -> Decimal:
    """The amount of an appeasement given as an amount, or as a percent of ``base`` (the line's
    or the order's value), rounded half up to the currency's minor unit. Never more than
    ``base``."""
    if (amount is None) == (percent is None):
        raise InvalidAppeasement("give an amount or a percent, not both")
    quantum = Decimal(1).scaleb(-exponent)
    if percent is not None:
        if not Decimal(0) < percent <= Decimal(100):
            raise InvalidAppeasement(f"a percent is more than 0 and at most 100, got {percent}")
        value = (base * percent / Decimal(100)).quantize(quantum, rounding=ROUND_HALF_UP)
    else:
        assert amount is not None
        if amount.as_tuple().exponent < -exponent:  # type: ignore[operator]
            raise InvalidAppeasement(f"{amount} has more decimals than the currency")
        value = amount
    if value <= 0:
        raise InvalidAppeasement(f"an appeasement must be positive, got {value}")
    if value > base:
        raise InvalidAppeasement(f"{value} is more than the {base} it is given on")
    return value


def needs_approval(amount: Decimal, limit: Decimal | None) -> bool:
    """``limit`` None: the role is unlimited."""
    return limit is not None and amount > limit


@dataclass
class Appeasement:
    appeasement_id: str
    order_id: str
    order_number: str
    customer_email: str | None
    kind: AppeasementKind
    reason_code: AppeasementReason
    note: str | None
    currency: str
    amount: Decimal
    basis: dict[str, Any]
    """How it was asked: {amount | percent, line_no (None: the order)}."""
    requested_by: str
    requested_role: str
    requested_at: datetime
    status: AppeasementStatus = AppeasementStatus.PENDING_APPROVAL
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None
    version: int = 0
    events: list[DomainEvent] = field(default_factory=list)

    def _ids(self) -> dict[str, Any]:
        return {
            "appeasement_id": self.appeasement_id,
            "order_id": self.order_id,
            "order_number": self.order_number,
        }

    def requested(self) -> None:
        self.events.append(
            AppeasementRequested(
                **self._ids(),
                kind=self.kind.value,
                reason_code=self.reason_code.value,
                amount=str(self.amount),
                currency=self.currency,
                actor=self.requested_by,
            )
        )

    def approve(self, *, actor: str, reason: str | None, at: datetime) -> None:
        if self.status is not AppeasementStatus.PENDING_APPROVAL:
            raise AppeasementRefused(f"appeasement {self.appeasement_id} is {self.status}")
        self.decided_by, self.decided_at, self.decision_reason = actor, at, reason
        self.events.append(AppeasementApproved(**self._ids(), actor=actor, reason=reason))

    def reject(self, *, actor: str, reason: str, at: datetime) -> None:
        if self.status is not AppeasementStatus.PENDING_APPROVAL:
            raise AppeasementRefused(f"appeasement {self.appeasement_id} is {self.status}")
        if not reason.strip():
            raise InvalidAppeasement("a rejection needs a reason")
        self.status = AppeasementStatus.REJECTED
        self.decided_by, self.decided_at, self.decision_reason = actor, at, reason
        self.events.append(AppeasementRejected(**self._ids(), actor=actor, reason=reason))

    def issued(self) -> None:
        self.status = AppeasementStatus.ISSUED
        self.events.append(
            AppeasementIssued(
                **self._ids(),
                kind=self.kind.value,
                amount=str(self.amount),
                currency=self.currency,
            )
        )

    def failed(self, why: str) -> None:
        self.status = AppeasementStatus.FAILED
        self.decision_reason = why


@dataclass(frozen=True)
class Note:
    note_id: str
    text: str
    author: str
    created_at: datetime
    order_id: str | None = None
    customer_key: str | None = None


def new_note(
    *,
    note_id: str,
    text: str,
    author: str,
    at: datetime,
    order_id: str | None = None,
    customer_key: str | None = None,
) -> Note:
    text = text.strip()
    if not text:
        raise Invalid("a note needs text")
    if len(text) > 4000:
        raise Invalid("a note is at most 4000 characters")
    if (order_id is None) == (customer_key is None):
        raise Invalid("a note is on an order or on a customer")
    return Note(note_id, text, author, at, order_id, customer_key)


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AppeasementEvent(DomainEvent):
    appeasement_id: str
    order_id: str
    order_number: str

    @property
    def subject(self) -> str:
        return f"orders/{self.order_id}"


@dataclass(frozen=True, kw_only=True)
class AppeasementRequested(AppeasementEvent):
    type: ClassVar[str] = "appeasement.requested"
    kind: str
    reason_code: str
    amount: str
    currency: str
    actor: str


@dataclass(frozen=True, kw_only=True)
class AppeasementApproved(AppeasementEvent):
    type: ClassVar[str] = "appeasement.approved"
    actor: str
    reason: str | None


@dataclass(frozen=True, kw_only=True)
class AppeasementRejected(AppeasementEvent):
    type: ClassVar[str] = "appeasement.rejected"
    actor: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class AppeasementIssued(AppeasementEvent):
    type: ClassVar[str] = "appeasement.issued"
    kind: str
    amount: str
    currency: str
