"""Payments: authorise, capture per shipment, void, refund, through a gateway, with every call
recorded and every call idempotent.

Other areas call these use cases from inside their own unit of work (pass ``uow=``): the ledger
rows, the gateway-call records and the payment events then commit together with their change,
or not at all. Idempotency keys are derived from the order, the shipment or refund reference and
what is already recorded, so a use case repeated after a rollback sends the same keys and the
gateway answers with its first result: money never moves twice.

A decline (or a gateway that stays silent after the retries) is not an exception: it comes back
as a :class:`PaymentOutcome` with ``needs_hold`` set and a ``payment.declined`` event, and the
caller puts the order on a payment hold; the event tells customer care.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any

from oms.domain.errors import Conflict, Invalid
from oms.domain.payments import (
    InvalidMoney,
    Money,
    PaymentAuthorised,
    PaymentCaptured,
    PaymentDeclined,
    PaymentLedger,
    PaymentNotFound,
    PaymentRefunded,
    PaymentVoided,
    Tender,
    TenderPolicy,
    assign_amounts,
    total,
)
from oms.services.ports import (
    Clock,
    GatewayCall,
    GatewayResult,
    GatewayTimeout,
    PaymentGateway,
    PaymentTransaction,
    StoredPaymentOrder,
    TransactionKind,
    UnitOfWork,
    UnitOfWorkFactory,
)


class PaymentStatus(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    UNAVAILABLE = "unavailable"
    """The gateway did not answer, even after retries with the same idempotency key."""


@dataclass(frozen=True)
class PaymentOutcome:
    order_ref: str
    operation: str
    status: PaymentStatus
    requested: Money
    processed: Money
    """What the gateway actually did in this call (all of ``requested`` when approved)."""
    decline_code: str | None = None
    message: str = ""
    tender_id: str | None = None
    references: tuple[str, ...] = ()

    @property
    def approved(self) -> bool:
        return self.status is PaymentStatus.APPROVED

    @property
    def needs_hold(self) -> bool:
        """True when the order should go on a payment hold (declined or gateway unavailable)."""
        return self.status is not PaymentStatus.APPROVED


@dataclass(frozen=True)
class TenderSummary:
    tender: Tender
    authorised_open: Money
    captured: Money
    refunded: Money


@dataclass(frozen=True)
class PaymentSummary:
    order_ref: str
    currency: str
    policy: TenderPolicy
    authorised_open: Money
    captured: Money
    refunded: Money
    net_captured: Money
    tenders: list[TenderSummary]
    transactions: list[PaymentTransaction] = field(default_factory=list)


class PaymentService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        gateway: PaymentGateway,
        clock: Clock,
        policy: TenderPolicy | None = None,
        max_attempts: int = 3,
        retry_backoff_seconds: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._uow = uow
        self._gateway = gateway
        self._clock = clock
        self._policy = policy or TenderPolicy()
        self._max_attempts = max_attempts
        self._backoff = retry_backoff_seconds
        self._sleep = sleep

    # -- use cases -----------------------------------------------------------------------------

    def authorise(
        self,
        order_ref: str,
        tenders: Sequence[Tender],
        amount: Money,
        *,
        customer: dict[str, str] | None = None,
        policy: TenderPolicy | None = None,
        uow: UnitOfWork | None = None,
    ) -> PaymentOutcome:
        """Authorise ``amount`` over ``tenders`` (new tenders; an order may add more later, e.g.
        another card after a decline). ``customer`` ({email, name, language}) is kept for the
        payment notifications (refund issued)."""
        _require_ref(order_ref, "order_ref")
        if not amount.is_positive():
            raise InvalidMoney(f"the amount to authorise must be positive, got {amount}")
        with self._unit(uow) as unit:
            stored = unit.payments.get_order(order_ref, for_update=True)
            if stored is None:
                stored = StoredPaymentOrder(
                    order_ref=order_ref,
                    currency=amount.currency,
                    policy=policy or self._policy,
                    customer=customer,
                    created_at=self._clock.now(),
                )
                unit.payments.add_order(stored)
                # just added: it has no tenders yet (no need to read them)
                ledger = PaymentLedger(order_ref, stored.currency, policy=stored.policy)
            else:
                ledger = self._ledger(unit, stored)
            if amount.currency != ledger.currency:
                raise InvalidMoney(
                    f"order '{order_ref}' is paid in {ledger.currency}, not {amount.currency}"
                )
            shares = assign_amounts(tenders, amount, policy=ledger.policy)
            position = len(ledger.accounts)
            for tender in tenders:
                ledger.add_tender(tender)
                unit.payments.add_tender(order_ref, tender, position=position)
                position += 1
            done = Money.zero(ledger.currency)
            references: list[str] = []
            for tender, share in shares:
                result = self._call(
                    unit,
                    order_ref=order_ref,
                    tender_id=tender.tender_id,
                    operation="authorise",
                    key=f"{order_ref}:authorise:{tender.tender_id}",
                    request={"token": tender.token, **_money_json(share)},
                    send=partial(self._gateway.authorise, token=tender.token, amount=share),
                )
                if result is None or not result.approved or result.reference is None:
                    return self._refused(
                        unit, order_ref, "authorise", amount, done, tender.tender_id, result
                    )
                now = self._clock.now()
                ledger.record_authorisation(
                    tender.tender_id,
                    reference=result.reference,
                    amount=share,
                    at=now,
                    expires_at=result.expires_at,
                )
                self._add(
                    unit,
                    order_ref,
                    tender.tender_id,
                    TransactionKind.AUTHORISATION,
                    result.reference,
                    None,
                    share,
                    now,
                    expires_at=result.expires_at,
                )
                done = done + share
                references.append(result.reference)
            unit.record(
                PaymentAuthorised(
                    order_ref=order_ref,
                    currency=ledger.currency,
                    amount=amount.amount,
                    tenders=[_share(t.tender_id, s) for t, s in shares],
                )
            )
            return PaymentOutcome(
                order_ref,
                "authorise",
                PaymentStatus.APPROVED,
                amount,
                done,
                references=tuple(references),
            )

    def capture(
        self, order_ref: str, amount: Money, shipment_ref: str, *, uow: UnitOfWork | None = None
    ) -> PaymentOutcome:
        """Capture the shipped ``amount`` for one shipment, tenders in capture order, renewing
        expired authorisations first. Capturing the same shipment again captures only what is
        missing (nothing, normally)."""
        outcome = self._capture(order_ref, amount, shipment_ref, uow=uow, if_paid=False)
        if outcome is None:  # pragma: no cover - without payments _load refuses first
            raise PaymentNotFound(f"order '{order_ref}' has no payments")
        return outcome

    def capture_if_paid(
        self, order_ref: str, amount: Money, shipment_ref: str, *, uow: UnitOfWork | None = None
    ) -> PaymentOutcome | None:
        """:meth:`capture` for an order that may have no payments (paid otherwise): None, and
        nothing done, when it has none. One read of the payment order, not a look first."""
        return self._capture(order_ref, amount, shipment_ref, uow=uow, if_paid=True)

    def _capture(
        self,
        order_ref: str,
        amount: Money,
        shipment_ref: str,
        *,
        uow: UnitOfWork | None,
        if_paid: bool,
    ) -> PaymentOutcome | None:
        _require_ref(order_ref, "order_ref")
        _require_ref(shipment_ref, "shipment_ref")
        with self._unit(uow) as unit:
            loaded = self._load_if_any(unit, order_ref) if if_paid else self._load(unit, order_ref)
            if loaded is None:
                return None
            _stored, ledger, transactions = loaded
            earlier = [
                t
                for t in transactions
                if t.kind is TransactionKind.CAPTURE and t.shipment_ref == shipment_ref
            ]
            remaining, done_before = _outstanding(
                order_ref,
                "capture",
                amount,
                ledger,
                earlier,
                overdone=(
                    f"shipment '{shipment_ref}' of order '{order_ref}' was already captured for"
                ),
            )
            if done_before is not None:
                return done_before
            steps = ledger.plan_capture(remaining, at=self._clock.now())
            done = Money.zero(ledger.currency)
            references: list[str] = []
            captured_by_tender: dict[str, Money] = {}
            for step in steps:
                account = ledger.account(step.tender_id)
                auth_ref = step.authorisation_reference
                if step.reauthorise:
                    old = account.authorisation(auth_ref)
                    renew = old.open_amount
                    result = self._call(
                        unit,
                        order_ref=order_ref,
                        tender_id=step.tender_id,
                        operation="authorise",
                        key=f"{order_ref}:reauthorise:{auth_ref}",
                        request={
                            "token": account.tender.token,
                            "renews": auth_ref,
                            **_money_json(renew),
                        },
                        send=partial(
                            self._gateway.authorise, token=account.tender.token, amount=renew
                        ),
                    )
                    if result is None or not result.approved or result.reference is None:
                        return self._refused(
                            unit,
                            order_ref,
                            "capture",
                            amount,
                            done,
                            step.tender_id,
                            result,
                            shipment_ref=shipment_ref,
                        )
                    now = self._clock.now()
                    ledger.record_authorisation(
                        step.tender_id,
                        reference=result.reference,
                        amount=renew,
                        at=now,
                        expires_at=result.expires_at,
                        replaces=auth_ref,
                    )
                    self._add(
                        unit,
                        order_ref,
                        step.tender_id,
                        TransactionKind.AUTHORISATION,
                        result.reference,
                        auth_ref,
                        renew,
                        now,
                        expires_at=result.expires_at,
                    )
                    auth_ref = result.reference
                key = f"{order_ref}:capture:{shipment_ref}:{auth_ref}:{len(earlier)}"
                result = self._call(
                    unit,
                    order_ref=order_ref,
                    tender_id=step.tender_id,
                    operation="capture",
                    key=key,
                    request={
                        "authorisation": auth_ref,
                        "shipment_ref": shipment_ref,
                        **_money_json(step.amount),
                    },
                    send=partial(self._gateway.capture, authorisation=auth_ref, amount=step.amount),
                )
                if result is None or not result.approved or result.reference is None:
                    if done.is_positive():
                        self._record_capture_event(
                            unit, ledger, order_ref, shipment_ref, done, captured_by_tender
                        )
                    return self._refused(
                        unit,
                        order_ref,
                        "capture",
                        amount,
                        done,
                        step.tender_id,
                        result,
                        shipment_ref=shipment_ref,
                    )
                now = self._clock.now()
                ledger.record_capture(
                    step.tender_id,
                    authorisation_reference=auth_ref,
                    reference=result.reference,
                    amount=step.amount,
                    at=now,
                    shipment_ref=shipment_ref,
                )
                self._add(
                    unit,
                    order_ref,
                    step.tender_id,
                    TransactionKind.CAPTURE,
                    result.reference,
                    auth_ref,
                    step.amount,
                    now,
                    shipment_ref=shipment_ref,
                )
                done = done + step.amount
                captured_by_tender[step.tender_id] = (
                    captured_by_tender.get(step.tender_id, Money.zero(ledger.currency))
                    + step.amount
                )
                references.append(result.reference)
            self._record_capture_event(
                unit, ledger, order_ref, shipment_ref, done, captured_by_tender
            )
            return PaymentOutcome(
                order_ref,
                "capture",
                PaymentStatus.APPROVED,
                amount,
                done,
                references=tuple(references),
            )

    def void_remaining(self, order_ref: str, *, uow: UnitOfWork | None = None) -> PaymentOutcome:
        """Release everything still authorised and not captured (the order is cancelled or
        complete)."""
        return self.void(order_ref, None, uow=uow)

    def void(
        self, order_ref: str, amount: Money | None, *, uow: UnitOfWork | None = None
    ) -> PaymentOutcome:
        """Release ``amount`` of what is authorised (a cancelled part of the order)."""
        _require_ref(order_ref, "order_ref")
        with self._unit(uow) as unit:
            _stored, ledger, transactions = self._load(unit, order_ref)
            steps = ledger.plan_void(amount)
            requested = amount or total((s.amount for s in steps), ledger.currency)
            done = Money.zero(ledger.currency)
            references: list[str] = []
            for step in steps:
                voids_so_far = sum(
                    1
                    for t in transactions
                    if t.kind is TransactionKind.VOID
                    and t.parent_reference == step.authorisation_reference
                )
                result = self._call(
                    unit,
                    order_ref=order_ref,
                    tender_id=step.tender_id,
                    operation="void",
                    key=f"{order_ref}:void:{step.authorisation_reference}:{voids_so_far}",
                    request={
                        "authorisation": step.authorisation_reference,
                        **_money_json(step.amount),
                    },
                    send=partial(
                        self._gateway.void,
                        authorisation=step.authorisation_reference,
                        amount=step.amount,
                    ),
                )
                if result is None or not result.approved:
                    return self._refused(
                        unit, order_ref, "void", requested, done, step.tender_id, result
                    )
                now = self._clock.now()
                ledger.record_void(
                    step.tender_id,
                    authorisation_reference=step.authorisation_reference,
                    amount=step.amount,
                    at=now,
                )
                reference = result.reference or f"void:{step.authorisation_reference}"
                self._add(
                    unit,
                    order_ref,
                    step.tender_id,
                    TransactionKind.VOID,
                    reference,
                    step.authorisation_reference,
                    step.amount,
                    now,
                )
                done = done + step.amount
                references.append(reference)
            if done.is_positive():
                unit.record(
                    PaymentVoided(order_ref=order_ref, currency=ledger.currency, amount=done.amount)
                )
            return PaymentOutcome(
                order_ref,
                "void",
                PaymentStatus.APPROVED,
                requested,
                done,
                references=tuple(references),
            )

    def refund(
        self,
        order_ref: str,
        amount: Money,
        reason: str,
        *,
        refund_ref: str,
        uow: UnitOfWork | None = None,
    ) -> PaymentOutcome:
        """Give ``amount`` back to the original tenders in the refund order. ``refund_ref`` names
        the refund (a return or an appeasement id): refunding the same reference again refunds
        only what is missing, so a retried return never pays out twice."""
        _require_ref(order_ref, "order_ref")
        _require_ref(refund_ref, "refund_ref")
        if not reason.strip():
            raise Invalid("a refund needs a reason")
        with self._unit(uow) as unit:
            stored, ledger, transactions = self._load(unit, order_ref)
            earlier = [
                t
                for t in transactions
                if t.kind is TransactionKind.REFUND and t.refund_ref == refund_ref
            ]
            remaining, done_before = _outstanding(
                order_ref,
                "refund",
                amount,
                ledger,
                earlier,
                overdone=f"refund '{refund_ref}' of order '{order_ref}' already paid back",
            )
            if done_before is not None:
                return done_before
            steps = ledger.plan_refund(remaining)
            done = Money.zero(ledger.currency)
            references: list[str] = []
            by_tender: dict[str, Money] = {}
            outcome: PaymentOutcome | None = None
            for step in steps:
                result = self._call(
                    unit,
                    order_ref=order_ref,
                    tender_id=step.tender_id,
                    operation="refund",
                    key=f"{order_ref}:refund:{refund_ref}:{step.capture_reference}:{len(earlier)}",
                    request={
                        "capture": step.capture_reference,
                        "refund_ref": refund_ref,
                        **_money_json(step.amount),
                    },
                    send=partial(
                        self._gateway.refund, capture=step.capture_reference, amount=step.amount
                    ),
                )
                if result is None or not result.approved or result.reference is None:
                    outcome = self._refused(
                        unit, order_ref, "refund", amount, done, step.tender_id, result
                    )
                    break
                now = self._clock.now()
                ledger.record_refund(
                    step.tender_id,
                    capture_reference=step.capture_reference,
                    reference=result.reference,
                    amount=step.amount,
                    reason=reason,
                    at=now,
                )
                self._add(
                    unit,
                    order_ref,
                    step.tender_id,
                    TransactionKind.REFUND,
                    result.reference,
                    step.capture_reference,
                    step.amount,
                    now,
                    refund_ref=refund_ref,
                    reason=reason,
                )
                done = done + step.amount
                by_tender[step.tender_id] = (
                    by_tender.get(step.tender_id, Money.zero(ledger.currency)) + step.amount
                )
                references.append(result.reference)
            if done.is_positive():
                unit.record(
                    PaymentRefunded(
                        order_ref=order_ref,
                        currency=ledger.currency,
                        refund_ref=refund_ref,
                        amount=done.amount,
                        reason=reason,
                        tenders=[_share(t, m) for t, m in by_tender.items()],
                        customer=stored.customer,
                    )
                )
            return outcome or PaymentOutcome(
                order_ref,
                "refund",
                PaymentStatus.APPROVED,
                amount,
                done,
                references=tuple(references),
            )

    # -- reading -------------------------------------------------------------------------------

    def summary(self, order_ref: str) -> PaymentSummary:
        with self._uow(read_only=True) as uow:
            _stored, ledger, transactions = self._load(uow, order_ref, lock=False)
        return PaymentSummary(
            order_ref=order_ref,
            currency=ledger.currency,
            policy=ledger.policy,
            authorised_open=ledger.authorised_open,
            captured=ledger.captured,
            refunded=ledger.refunded,
            net_captured=ledger.net_captured,
            tenders=[
                TenderSummary(a.tender, a.authorised_open, a.captured, a.refunded)
                for a in ledger.accounts.values()
            ],
            transactions=transactions,
        )

    def gateway_calls(self, order_ref: str) -> list[GatewayCall]:
        with self._uow(read_only=True) as uow:
            return uow.payments.gateway_calls(order_ref)

    # -- helpers -------------------------------------------------------------------------------

    @contextmanager
    def _unit(self, uow: UnitOfWork | None) -> Iterator[UnitOfWork]:
        """The caller's unit of work (it commits), or one of our own that we commit."""
        if uow is not None:
            yield uow
            return
        with self._uow() as own:
            yield own
            own.commit()

    def _ledger(self, uow: UnitOfWork, stored: StoredPaymentOrder) -> PaymentLedger:
        return PaymentLedger(
            stored.order_ref,
            stored.currency,
            policy=stored.policy,
            tenders=uow.payments.tenders(stored.order_ref),
        )

    def _load(
        self, uow: UnitOfWork, order_ref: str, *, lock: bool = True
    ) -> tuple[StoredPaymentOrder, PaymentLedger, list[PaymentTransaction]]:
        loaded = self._load_if_any(uow, order_ref, lock=lock)
        if loaded is None:
            raise PaymentNotFound(f"order '{order_ref}' has no payments")
        return loaded

    def _load_if_any(
        self, uow: UnitOfWork, order_ref: str, *, lock: bool = True
    ) -> tuple[StoredPaymentOrder, PaymentLedger, list[PaymentTransaction]] | None:
        stored = uow.payments.get_order(order_ref, for_update=lock)
        if stored is None:
            return None
        ledger = self._ledger(uow, stored)
        transactions = uow.payments.transactions(order_ref)
        for t in transactions:
            replay(ledger, t)
        return stored, ledger, transactions

    def _call(
        self,
        uow: UnitOfWork,
        *,
        order_ref: str,
        tender_id: str,
        operation: str,
        key: str,
        request: dict[str, Any],
        send: Callable[..., GatewayResult],
    ) -> GatewayResult | None:
        """Call the gateway, retrying a timeout with the SAME key; None if it never answered."""
        for attempt in range(1, self._max_attempts + 1):
            try:
                result = send(idempotency_key=key)
            except GatewayTimeout as error:
                self._record_call(
                    uow,
                    order_ref,
                    tender_id,
                    operation,
                    key,
                    attempt,
                    request,
                    "timeout",
                    {"error": str(error)},
                )
                if attempt < self._max_attempts:
                    self._sleep(self._backoff * 2 ** (attempt - 1))
                continue
            outcome = "approved" if result.approved else "declined"
            self._record_call(
                uow,
                order_ref,
                tender_id,
                operation,
                key,
                attempt,
                request,
                outcome,
                result.as_json(),
            )
            return result
        return None

    def _record_call(
        self,
        uow: UnitOfWork,
        order_ref: str,
        tender_id: str,
        operation: str,
        key: str,
        attempt: int,
        request: dict[str, Any],
        outcome: str,
        response: dict[str, Any] | None,
    ) -> None:
        uow.payments.add_gateway_call(
            GatewayCall(
                order_ref=order_ref,
                tender_id=tender_id,
                gateway=self._gateway.name,
                operation=operation,
                idempotency_key=key,
                attempt=attempt,
                request=request,
                outcome=outcome,
                response=response,
                at=self._clock.now(),
            )
        )

    def _add(
        self,
        uow: UnitOfWork,
        order_ref: str,
        tender_id: str,
        kind: TransactionKind,
        reference: str,
        parent_reference: str | None,
        amount: Money,
        at: datetime,
        **extra: Any,
    ) -> None:
        uow.payments.add_transaction(
            PaymentTransaction(
                order_ref=order_ref,
                tender_id=tender_id,
                kind=kind,
                reference=reference,
                parent_reference=parent_reference,
                amount=amount,
                at=at,
                **extra,
            )
        )

    def _record_capture_event(
        self,
        uow: UnitOfWork,
        ledger: PaymentLedger,
        order_ref: str,
        shipment_ref: str,
        done: Money,
        by_tender: dict[str, Money],
    ) -> None:
        uow.record(
            PaymentCaptured(
                order_ref=order_ref,
                currency=ledger.currency,
                amount=done.amount,
                shipment_ref=shipment_ref,
                tenders=[_share(t, m) for t, m in by_tender.items()],
            )
        )

    def _refused(
        self,
        uow: UnitOfWork,
        order_ref: str,
        operation: str,
        requested: Money,
        done: Money,
        tender_id: str,
        result: GatewayResult | None,
        *,
        shipment_ref: str | None = None,
    ) -> PaymentOutcome:
        if result is None:
            status, code = PaymentStatus.UNAVAILABLE, "gateway_unavailable"
            message = f"the gateway did not answer after {self._max_attempts} attempts"
        else:
            status, code = PaymentStatus.DECLINED, result.decline_code or "declined"
            message = result.message
        uow.record(
            PaymentDeclined(
                order_ref=order_ref,
                currency=requested.currency,
                operation=operation,
                amount=requested.amount,
                tender_id=tender_id,
                decline_code=code,
                message=message,
                shipment_ref=shipment_ref,
            )
        )
        return PaymentOutcome(
            order_ref,
            operation,
            status,
            requested,
            done,
            decline_code=code,
            message=message,
            tender_id=tender_id,
        )


def replay(ledger: PaymentLedger, t: PaymentTransaction) -> None:
    """Apply one stored ledger row to the ledger (the domain re-checks every rule)."""
    if t.kind is TransactionKind.AUTHORISATION:
        ledger.record_authorisation(
            t.tender_id,
            reference=t.reference,
            amount=t.amount,
            at=t.at,
            expires_at=t.expires_at,
            replaces=t.parent_reference,
        )
    elif t.kind is TransactionKind.CAPTURE:
        ledger.record_capture(
            t.tender_id,
            authorisation_reference=t.parent_reference or "",
            reference=t.reference,
            amount=t.amount,
            at=t.at,
            shipment_ref=t.shipment_ref,
        )
    elif t.kind is TransactionKind.VOID:
        ledger.record_void(
            t.tender_id,
            authorisation_reference=t.parent_reference or "",
            amount=t.amount,
            at=t.at,
        )
    else:
        ledger.record_refund(
            t.tender_id,
            capture_reference=t.parent_reference or "",
            reference=t.reference,
            amount=t.amount,
            reason=t.reason or "",
            at=t.at,
        )


def _require_ref(value: str, name: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise Invalid(f"'{name}' must be 1 to 64 characters")


def _money_json(amount: Money) -> dict[str, str]:
    return {"amount": str(amount.amount), "currency": amount.currency}


def _share(tender_id: str, amount: Money) -> dict[str, str]:
    return {"tender_id": tender_id, "amount": str(amount.amount)}


def _outstanding(
    order_ref: str,
    operation: str,
    amount: Money,
    ledger: PaymentLedger,
    earlier: Sequence[PaymentTransaction],
    *,
    overdone: str,
) -> tuple[Money, PaymentOutcome | None]:
    """What a capture or refund under one reference still has to move, given what ``earlier``
    transactions under that reference moved already: a retry moves only what is missing, and when
    nothing is, the outcome to return as it is. Asking for less than was already moved is refused
    (``overdone`` begins the message)."""
    already = total((t.amount for t in earlier), ledger.currency)
    remaining = ledger.in_currency(amount) - already
    if remaining.is_negative():
        raise Conflict(f"{overdone} {already}, more than {amount}")
    if remaining.is_zero():
        return remaining, PaymentOutcome(
            order_ref,
            operation,
            PaymentStatus.APPROVED,
            amount,
            Money.zero(amount.currency),
            references=tuple(t.reference for t in earlier),
        )
    return remaining, None
