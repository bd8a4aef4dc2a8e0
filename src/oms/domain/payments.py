"""Money and the payment ledger of an order: tenders, authorisations, captures, voids, refunds.

Rules kept here (the gateway is not trusted to keep them for us):

* Money is a :class:`~decimal.Decimal` in one ISO 4217 currency with that currency's minor unit
  (JPY 0 decimals, USD 2, BHD 3); arithmetic mixes no currencies and never uses float.
* A capture never exceeds what is open on a live authorisation; an expired authorisation must be
  re-authorised (a new authorisation replaces it) before it is captured.
* A refund never exceeds what was captured (and not yet refunded) on that tender and capture.
* Split tenders: captures take the tenders in the configured capture order (gift cards first or
  last); refunds and appeasements go back to the original tenders in the configured refund order.

:class:`PaymentLedger` decides and records; it never talks to a gateway. The payment service asks
it for a plan (:meth:`PaymentLedger.plan_capture`, ...), calls the gateway for each step and
records what the gateway did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from oms.domain.errors import Conflict, Invalid, NotFound
from oms.domain.events import DomainEvent
from oms.domain.money import MINOR_UNITS

# --- money ------------------------------------------------------------------------------------

CURRENCY_EXPONENTS: Final[Mapping[str, int]] = MINOR_UNITS
"""ISO 4217 minor units: the one table of :mod:`oms.domain.money`, shared with orders, so that any
currency an order is taken in can also be paid in."""


class InvalidMoney(Invalid):
    slug = "invalid-money"
    title = "The amount of money is not valid"


class CurrencyMismatch(Invalid):
    slug = "currency-mismatch"
    title = "Amounts in different currencies cannot be combined"


def currency_exponent(currency: str) -> int:
    """Number of decimals of the currency's minor unit (ISO 4217)."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise InvalidMoney(
            f"unknown currency '{currency}': use an ISO 4217 code such as EUR, USD, JPY, BHD",
            currency=currency,
        ) from None


@dataclass(frozen=True)
class Money:
    """An exact amount in one currency, kept at the currency's minor unit."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal) or isinstance(self.amount, bool):
            raise InvalidMoney(
                f"money must be a Decimal, not {type(self.amount).__name__} ({self.amount!r})"
            )
        if not self.amount.is_finite():
            raise InvalidMoney(f"money must be finite, not {self.amount}")
        exponent = currency_exponent(self.currency)
        quantum = Decimal(1).scaleb(-exponent)
        try:
            exact = self.amount.quantize(quantum)
        except InvalidOperation:
            raise InvalidMoney(f"{self.amount} is too large an amount") from None
        if exact != self.amount:
            raise InvalidMoney(
                f"{self.amount} {self.currency} has more than {exponent} decimal"
                f"{'s' if exponent != 1 else ''} (the currency's minor unit)",
                currency=self.currency,
            )
        object.__setattr__(self, "amount", exact)

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        """Money from a Decimal, an int or a decimal string; floats are refused."""
        if isinstance(amount, float | bool):
            raise InvalidMoney(f"money is never a float or bool: got {amount!r}")
        if isinstance(amount, str):
            try:
                amount = Decimal(amount.strip())
            except InvalidOperation:
                raise InvalidMoney(f"'{amount}' is not a decimal amount") from None
        return cls(Decimal(amount), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @property
    def exponent(self) -> int:
        return currency_exponent(self.currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(
                f"cannot combine {self.currency} with {other.currency}",
                currencies=[self.currency, other.currency],
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def times(self, quantity: int) -> Money:
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise InvalidMoney(f"a quantity must be a whole number, not {quantity!r}")
        return Money(self.amount * quantity, self.currency)

    def percent(self, rate: Decimal) -> Money:
        """``rate`` percent of this amount, rounded half up to the minor unit."""
        if not isinstance(rate, Decimal):
            raise InvalidMoney(f"a percentage must be a Decimal, not {type(rate).__name__}")
        raw = self.amount * rate / Decimal(100)
        return Money(raw.quantize(Decimal(1).scaleb(-self.exponent), ROUND_HALF_UP), self.currency)

    def is_zero(self) -> bool:
        return self.amount == 0

    def is_positive(self) -> bool:
        return self.amount > 0

    def is_negative(self) -> bool:
        return self.amount < 0

    def min(self, other: Money) -> Money:
        return self if self <= other else other

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def total(amounts: Iterable[Money], currency: str) -> Money:
    """The exact sum of amounts that must all be in ``currency`` (zero for none)."""
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result


# --- tenders ----------------------------------------------------------------------------------


class TenderKind(StrEnum):
    CARD = "card"
    GIFT_CARD = "gift_card"
    STORE_CREDIT = "store_credit"

    @property
    def is_stored_value(self) -> bool:
        """Gift cards and store credit: the "gift card" side of a split tender."""
        return self is not TenderKind.CARD


class SplitTenderOrder(StrEnum):
    GIFT_CARD_FIRST = "gift_card_first"
    GIFT_CARD_LAST = "gift_card_last"


@dataclass(frozen=True)
class TenderPolicy:
    """In which order split tenders are charged and refunded.

    The default charges the gift card first (it is money the customer already gave) and refunds
    it last (money goes back to the card before it goes back onto a gift card).
    """

    capture_order: SplitTenderOrder = SplitTenderOrder.GIFT_CARD_FIRST
    refund_order: SplitTenderOrder = SplitTenderOrder.GIFT_CARD_LAST


@dataclass(frozen=True)
class Tender:
    """One means of payment on an order.

    ``limit`` is the most this tender pays (a gift card's share); ``None`` means it takes the
    rest of the amount (the card of a split tender). At most one tender may take the rest.
    """

    tender_id: str
    kind: TenderKind
    token: str
    limit: Money | None = None


def in_order(tenders: Sequence[Tender], order: SplitTenderOrder) -> list[Tender]:
    """The tenders with gift cards first or last; otherwise in the order the customer gave."""
    stored = [t for t in tenders if t.kind.is_stored_value]
    cards = [t for t in tenders if not t.kind.is_stored_value]
    return stored + cards if order is SplitTenderOrder.GIFT_CARD_FIRST else cards + stored


class InsufficientTender(Invalid):
    slug = "insufficient-tender"
    title = "The tenders do not cover the amount"


def assign_amounts(
    tenders: Sequence[Tender], amount: Money, *, policy: TenderPolicy
) -> list[tuple[Tender, Money]]:
    """How much of ``amount`` each tender is authorised for.

    Tenders with a limit get up to their limit (in capture order); the one tender without a
    limit takes the rest. Tenders assigned nothing are left out.
    """
    if not tenders:
        raise InsufficientTender("an order needs at least one tender to pay with")
    ids = [t.tender_id for t in tenders]
    if len(set(ids)) != len(ids):
        raise Invalid(f"tender ids must be unique, got {ids}")
    open_ended = [t for t in tenders if t.limit is None]
    if len(open_ended) > 1:
        raise Invalid("only one tender may take the rest of the amount (no limit)")
    for tender in tenders:
        if tender.limit is not None:
            tender.limit._same(amount)
            if not tender.limit.is_positive():
                raise InvalidMoney(f"tender '{tender.tender_id}' needs a positive limit")
    remaining = amount
    shares: dict[str, Money] = {}
    for tender in in_order(tenders, policy.capture_order):
        if tender.limit is not None:
            share = tender.limit.min(remaining)
            shares[tender.tender_id] = share
            remaining = remaining - share
    if open_ended:
        shares[open_ended[0].tender_id] = remaining
    elif remaining.is_positive():
        raise InsufficientTender(
            f"the tenders cover {amount - remaining} of {amount}: add a card or raise a limit",
            missing=str(remaining.amount),
        )
    return [
        (t, shares[t.tender_id])
        for t in in_order(tenders, policy.capture_order)
        if shares[t.tender_id].is_positive()
    ]


# --- the ledger -------------------------------------------------------------------------------


class CaptureExceedsAuthorisation(Conflict):
    slug = "capture-exceeds-authorisation"
    title = "The capture is more than what is authorised"


class AuthorisationExpired(Conflict):
    slug = "authorisation-expired"
    title = "The authorisation has expired and must be renewed first"


class RefundExceedsCaptured(Conflict):
    slug = "refund-exceeds-captured"
    title = "The refund is more than what was captured"


class PaymentNotFound(NotFound):
    slug = "payment-not-found"
    title = "No such payment"


@dataclass
class Authorisation:
    reference: str
    amount: Money
    authorised_at: datetime
    expires_at: datetime | None
    captured: Money
    released: Money
    """Voided, or given up when a re-authorisation replaced it."""
    replaced_by: str | None = None

    @property
    def open_amount(self) -> Money:
        return self.amount - self.captured - self.released

    def is_expired(self, at: datetime) -> bool:
        return self.expires_at is not None and at >= self.expires_at


@dataclass
class Capture:
    reference: str
    authorisation_reference: str
    amount: Money
    shipment_ref: str | None
    captured_at: datetime
    refunded: Money

    @property
    def refundable(self) -> Money:
        return self.amount - self.refunded


@dataclass(frozen=True)
class Refund:
    reference: str
    capture_reference: str
    amount: Money
    reason: str
    refunded_at: datetime


@dataclass(frozen=True)
class Void:
    authorisation_reference: str
    amount: Money
    voided_at: datetime


@dataclass
class TenderAccount:
    """What happened on one tender of an order."""

    tender: Tender
    currency: str
    authorisations: list[Authorisation] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    voids: list[Void] = field(default_factory=list)

    @property
    def authorised_open(self) -> Money:
        return total((a.open_amount for a in self.authorisations), self.currency)

    @property
    def captured(self) -> Money:
        return total((c.amount for c in self.captures), self.currency)

    @property
    def refunded(self) -> Money:
        return total((r.amount for r in self.refunds), self.currency)

    @property
    def refundable(self) -> Money:
        return self.captured - self.refunded

    def authorisation(self, reference: str) -> Authorisation:
        for auth in self.authorisations:
            if auth.reference == reference:
                return auth
        raise PaymentNotFound(f"no authorisation '{reference}' on tender '{self.tender.tender_id}'")

    def capture(self, reference: str) -> Capture:
        for capture in self.captures:
            if capture.reference == reference:
                return capture
        raise PaymentNotFound(f"no capture '{reference}' on tender '{self.tender.tender_id}'")


@dataclass(frozen=True)
class CaptureStep:
    tender_id: str
    authorisation_reference: str
    amount: Money
    reauthorise: bool
    """The authorisation has expired: authorise ``amount`` again before capturing it."""


@dataclass(frozen=True)
class VoidStep:
    tender_id: str
    authorisation_reference: str
    amount: Money


@dataclass(frozen=True)
class RefundStep:
    tender_id: str
    capture_reference: str
    amount: Money


class PaymentLedger:
    """The payment side of one order, per tender."""

    def __init__(
        self,
        order_ref: str,
        currency: str,
        *,
        policy: TenderPolicy | None = None,
        tenders: Iterable[Tender] = (),
    ) -> None:
        currency_exponent(currency)
        self.order_ref = order_ref
        self.currency = currency
        self.policy = policy or TenderPolicy()
        self.accounts: dict[str, TenderAccount] = {}
        for tender in tenders:
            self.add_tender(tender)

    # -- reading -------------------------------------------------------------------------------

    def add_tender(self, tender: Tender) -> TenderAccount:
        if tender.tender_id in self.accounts:
            raise Conflict(f"tender '{tender.tender_id}' is already on order '{self.order_ref}'")
        if tender.limit is not None:
            self.in_currency(tender.limit)
        account = TenderAccount(tender, self.currency)
        self.accounts[tender.tender_id] = account
        return account

    def account(self, tender_id: str) -> TenderAccount:
        try:
            return self.accounts[tender_id]
        except KeyError:
            raise PaymentNotFound(f"no tender '{tender_id}' on order '{self.order_ref}'") from None

    def _ordered(self, order: SplitTenderOrder) -> list[TenderAccount]:
        tenders = in_order([a.tender for a in self.accounts.values()], order)
        return [self.accounts[t.tender_id] for t in tenders]

    def in_currency(self, amount: Money, *, positive: bool = True) -> Money:
        if not isinstance(amount, Money):
            raise InvalidMoney(f"expected Money, got {type(amount).__name__}")
        if amount.currency != self.currency:
            raise CurrencyMismatch(
                f"order '{self.order_ref}' is paid in {self.currency}, not {amount.currency}"
            )
        if positive and not amount.is_positive():
            raise InvalidMoney(f"the amount must be positive, got {amount}")
        return amount

    @property
    def authorised_open(self) -> Money:
        return total((a.authorised_open for a in self.accounts.values()), self.currency)

    @property
    def captured(self) -> Money:
        return total((a.captured for a in self.accounts.values()), self.currency)

    @property
    def refunded(self) -> Money:
        return total((a.refunded for a in self.accounts.values()), self.currency)

    @property
    def net_captured(self) -> Money:
        """What the merchant holds: captured minus refunded."""
        return self.captured - self.refunded

    def all_amounts(self) -> list[Money]:
        """Every amount in the ledger (for checks that nothing strays from the currency)."""
        amounts: list[Money] = []
        for account in self.accounts.values():
            for auth in account.authorisations:
                amounts += [auth.amount, auth.captured, auth.released]
            for capture in account.captures:
                amounts += [capture.amount, capture.refunded]
            amounts += [r.amount for r in account.refunds]
            amounts += [v.amount for v in account.voids]
        return amounts

    # -- planning ------------------------------------------------------------------------------

    def plan_capture(self, amount: Money, *, at: datetime) -> list[CaptureStep]:
        """Which authorisations pay ``amount``, in capture order; expired ones are marked for
        re-authorisation. Refuses more than is open on all authorisations together."""
        self.in_currency(amount)
        if amount > self.authorised_open:
            raise CaptureExceedsAuthorisation(
                f"cannot capture {amount} on order '{self.order_ref}': only "
                f"{self.authorised_open} is authorised and not yet captured",
                requested=str(amount.amount),
                authorised=str(self.authorised_open.amount),
            )
        steps: list[CaptureStep] = []
        remaining = amount
        for account in self._ordered(self.policy.capture_order):
            for auth in account.authorisations:
                if not remaining.is_positive():
                    break
                if not auth.open_amount.is_positive():
                    continue
                share = auth.open_amount.min(remaining)
                steps.append(
                    CaptureStep(
                        account.tender.tender_id, auth.reference, share, auth.is_expired(at)
                    )
                )
                remaining = remaining - share
        return steps

    def plan_void(self, amount: Money | None = None) -> list[VoidStep]:
        """Release ``amount`` (all that is open when None) of the authorisations, taking it from
        the tenders that would be captured last."""
        open_total = self.authorised_open
        if amount is None:
            amount = open_total
        else:
            self.in_currency(amount)
            if amount > open_total:
                raise CaptureExceedsAuthorisation(
                    f"cannot release {amount} on order '{self.order_ref}': only {open_total} "
                    "is authorised and not yet captured"
                )
        steps: list[VoidStep] = []
        remaining = amount
        for account in reversed(self._ordered(self.policy.capture_order)):
            for auth in reversed(account.authorisations):
                if not remaining.is_positive():
                    break
                if auth.open_amount.is_positive():
                    share = auth.open_amount.min(remaining)
                    steps.append(VoidStep(account.tender.tender_id, auth.reference, share))
                    remaining = remaining - share
        return steps

    def plan_refund(self, amount: Money) -> list[RefundStep]:
        """Which captures give ``amount`` back, tenders in refund order, latest capture first.
        Refuses more than was captured and not yet refunded."""
        self.in_currency(amount)
        refundable = total((a.refundable for a in self.accounts.values()), self.currency)
        if amount > refundable:
            raise RefundExceedsCaptured(
                f"cannot refund {amount} on order '{self.order_ref}': only {refundable} was "
                "captured and not yet refunded",
                requested=str(amount.amount),
                refundable=str(refundable.amount),
            )
        steps: list[RefundStep] = []
        remaining = amount
        for account in self._ordered(self.policy.refund_order):
            for capture in reversed(account.captures):
                if not remaining.is_positive():
                    break
                if capture.refundable.is_positive():
                    share = capture.refundable.min(remaining)
                    steps.append(RefundStep(account.tender.tender_id, capture.reference, share))
                    remaining = remaining - share
        return steps

    # -- recording what the gateway did --------------------------------------------------------

    def record_authorisation(
        self,
        tender_id: str,
        *,
        reference: str,
        amount: Money,
        at: datetime,
        expires_at: datetime | None,
        replaces: str | None = None,
    ) -> Authorisation:
        account = self.account(tender_id)
        self.in_currency(amount)
        if any(a.reference == reference for a in account.authorisations):
            raise Conflict(f"authorisation '{reference}' is already recorded")
        if replaces is not None:
            old = account.authorisation(replaces)
            if amount > old.open_amount:
                raise CaptureExceedsAuthorisation(
                    f"a re-authorisation of '{replaces}' may renew at most its open "
                    f"{old.open_amount}, not {amount}"
                )
            old.released = old.released + old.open_amount
            old.replaced_by = reference
        elif account.tender.limit is not None:
            committed = account.authorised_open + account.captured
            if committed + amount > account.tender.limit:
                raise CaptureExceedsAuthorisation(
                    f"tender '{tender_id}' pays at most {account.tender.limit}"
                )
        auth = Authorisation(
            reference, amount, at, expires_at, Money.zero(self.currency), Money.zero(self.currency)
        )
        account.authorisations.append(auth)
        return auth

    def record_capture(
        self,
        tender_id: str,
        *,
        authorisation_reference: str,
        reference: str,
        amount: Money,
        at: datetime,
        shipment_ref: str | None = None,
    ) -> Capture:
        account = self.account(tender_id)
        self.in_currency(amount)
        auth = account.authorisation(authorisation_reference)
        if auth.is_expired(at):
            raise AuthorisationExpired(
                f"authorisation '{auth.reference}' expired at {auth.expires_at}: re-authorise "
                "before capturing",
                authorisation=auth.reference,
            )
        if amount > auth.open_amount:
            raise CaptureExceedsAuthorisation(
                f"cannot capture {amount} on authorisation '{auth.reference}': only "
                f"{auth.open_amount} is open",
                requested=str(amount.amount),
                authorised=str(auth.open_amount.amount),
            )
        if any(c.reference == reference for c in account.captures):
            raise Conflict(f"capture '{reference}' is already recorded")
        auth.captured = auth.captured + amount
        capture = Capture(
            reference, auth.reference, amount, shipment_ref, at, Money.zero(self.currency)
        )
        account.captures.append(capture)
        return capture

    def record_void(
        self, tender_id: str, *, authorisation_reference: str, amount: Money, at: datetime
    ) -> Void:
        account = self.account(tender_id)
        self.in_currency(amount)
        auth = account.authorisation(authorisation_reference)
        if amount > auth.open_amount:
            raise CaptureExceedsAuthorisation(
                f"cannot void {amount} of authorisation '{auth.reference}': only "
                f"{auth.open_amount} is open"
            )
        auth.released = auth.released + amount
        void = Void(auth.reference, amount, at)
        account.voids.append(void)
        return void

    def record_refund(
        self,
        tender_id: str,
        *,
        capture_reference: str,
        reference: str,
        amount: Money,
        reason: str,
        at: datetime,
    ) -> Refund:
        account = self.account(tender_id)
        self.in_currency(amount)
        capture = account.capture(capture_reference)
        if amount > capture.refundable:
            raise RefundExceedsCaptured(
                f"cannot refund {amount} on capture '{capture.reference}' of tender "
                f"'{tender_id}': only {capture.refundable} is refundable",
                requested=str(amount.amount),
                refundable=str(capture.refundable.amount),
            )
        capture.refunded = capture.refunded + amount
        refund = Refund(reference, capture.reference, amount, reason, at)
        account.refunds.append(refund)
        return refund


# --- what the customer keeps ------------------------------------------------------------------


class Settlement(StrEnum):
    """Things that happen to an order's value after it is placed."""

    SHIPPED = "shipped"
    CANCELLED = "cancelled"
    RETURNED = "returned"
    APPEASED = "appeased"


@dataclass(frozen=True)
class ValueChange:
    kind: Settlement
    amount: Money


def customer_keeps(currency: str, changes: Iterable[ValueChange]) -> Money:
    """The value the customer ends up paying for: goods shipped, less goods returned, less
    goodwill (appeasements). Cancelled goods were never charged and do not count.

    The ledger must agree: captured - refunded == customer_keeps(...).
    """
    kept = Money.zero(currency)
    for change in changes:
        if change.kind is Settlement.SHIPPED:
            kept = kept + change.amount
        elif change.kind in (Settlement.RETURNED, Settlement.APPEASED):
            kept = kept - change.amount
    return kept


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _PaymentEvent(DomainEvent):
    order_ref: str
    currency: str

    @property
    def subject(self) -> str:
        return f"orders/{self.order_ref}"


@dataclass(frozen=True, kw_only=True)
class PaymentAuthorised(_PaymentEvent):
    type = "payment.authorised"
    amount: Decimal
    tenders: list[dict[str, str]]


@dataclass(frozen=True, kw_only=True)
class PaymentDeclined(_PaymentEvent):
    """A gateway refused (or could not be reached for) an authorisation or a capture: the order
    goes on a payment hold and customer care is told."""

    type = "payment.declined"
    operation: str
    amount: Decimal
    tender_id: str
    decline_code: str
    message: str
    shipment_ref: str | None = None


@dataclass(frozen=True, kw_only=True)
class PaymentCaptured(_PaymentEvent):
    type = "payment.captured"
    amount: Decimal
    shipment_ref: str | None
    tenders: list[dict[str, str]]


@dataclass(frozen=True, kw_only=True)
class PaymentVoided(_PaymentEvent):
    type = "payment.voided"
    amount: Decimal


@dataclass(frozen=True, kw_only=True)
class PaymentRefunded(_PaymentEvent):
    """Money went back to the customer; notifications send "refund issued" from it."""

    type = "payment.refunded"
    refund_ref: str
    amount: Decimal
    reason: str
    tenders: list[dict[str, str]]
    customer: dict[str, str] | None = None
