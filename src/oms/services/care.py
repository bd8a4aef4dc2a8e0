"""Customer-care use cases: appeasements with per-role limits and supervisor approval, and notes
on orders and customers. The read side (customer search and view) is
:mod:`oms.queries.care`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from oms.domain.access import SYSTEM, Principal, Role
from oms.domain.care import (
    Appeasement,
    AppeasementKind,
    AppeasementNotFound,
    AppeasementReason,
    AppeasementStatus,
    ApprovalNotAllowed,
    InvalidAppeasement,
    Note,
    appeasement_amount,
    needs_approval,
    new_note,
)
from oms.domain.orders import Order, OrderNotFound
from oms.domain.payments import Money, currency_exponent
from oms.services.payments import PaymentOutcome, PaymentService
from oms.services.ports import Clock, Ids, UnitOfWork, UnitOfWorkFactory

SUPERVISOR_ROLES = frozenset({Role.ADMIN})
"""Who approves appeasements above an agent's limit."""


@dataclass(frozen=True)
class AppeasementResult:
    appeasement: Appeasement
    outcome: PaymentOutcome | None = None
    """The refund's outcome when money moved (None: a credit, or waiting for approval)."""


class CareService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        ids: Ids,
        payments: PaymentService,
        limits: Mapping[Role, Decimal | None],
    ) -> None:
        """``limits``: per role, the most one appeasement may be without approval, in the
        order's currency (None: unlimited). A role not listed needs approval for any amount."""
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._payments = payments
        self._limits = dict(limits)

    def limit_for(self, role: Role) -> Decimal | None:
        return self._limits.get(role, Decimal("0"))

    # -- appeasements --------------------------------------------------------------------------

    def appease(
        self,
        order_id: str,
        *,
        kind: str,
        reason_code: str,
        amount: Decimal | None = None,
        percent: Decimal | None = None,
        line_no: int | None = None,
        note: str | None = None,
        principal: Principal = SYSTEM,
    ) -> AppeasementResult:
        """A goodwill refund or credit on an order or one line, as an amount or a percent of
        its value. Within the caller's limit it is issued at once (a refund through the
        payment gateway); above it, it waits for a supervisor."""
        try:
            how = AppeasementKind(kind)
        except ValueError:
            raise InvalidAppeasement(
                f"unknown kind '{kind}': one of {', '.join(k.value for k in AppeasementKind)}"
            ) from None
        try:
            why = AppeasementReason(reason_code)
        except ValueError:
            raise InvalidAppeasement(
                f"unknown reason code '{reason_code}': one of "
                + ", ".join(r.value for r in AppeasementReason)
            ) from None
        with self._uow() as uow:
            at = self._clock.now()
            order = _load_order(uow, order_id)
            exponent = currency_exponent(order.currency)
            base = order.line(line_no).amount if line_no is not None else order.total
            value = appeasement_amount(amount=amount, percent=percent, base=base, exponent=exponent)
            made = Appeasement(
                appeasement_id=self._ids.new_id(),
                order_id=order.order_id,
                order_number=order.order_number,
                customer_email=order.customer.email,
                kind=how,
                reason_code=why,
                note=note,
                currency=order.currency,
                amount=value,
                basis={
                    "amount": str(amount) if amount is not None else None,
                    "percent": str(percent) if percent is not None else None,
                    "line_no": line_no,
                    "of": str(base),
                },
                requested_by=principal.actor,
                requested_role=principal.role.value,
                requested_at=at,
            )
            made.requested()
            uow.care.add_appeasement(made)
            outcome = None
            if not needs_approval(value, self.limit_for(principal.role)):
                outcome = self._issue(uow, made)
                uow.care.save_appeasement(made)
            uow.record(*made.events)
            made.events.clear()
            uow.commit()
        return AppeasementResult(made, outcome)

    def approve(
        self, appeasement_id: str, *, reason: str | None = None, principal: Principal = SYSTEM
    ) -> AppeasementResult:
        self._supervisor(principal)
        with self._uow() as uow:
            found = self._load(uow, appeasement_id)
            found.approve(actor=principal.actor, reason=reason, at=self._clock.now())
            outcome = self._issue(uow, found)
            uow.care.save_appeasement(found)
            uow.record(*found.events)
            found.events.clear()
            uow.commit()
        return AppeasementResult(found, outcome)

    def reject(
        self, appeasement_id: str, *, reason: str, principal: Principal = SYSTEM
    ) -> Appeasement:
        self._supervisor(principal)
        with self._uow() as uow:
            found = self._load(uow, appeasement_id)
            found.reject(actor=principal.actor, reason=reason, at=self._clock.now())
            uow.care.save_appeasement(found)
            uow.record(*found.events)
            found.events.clear()
            uow.commit()
        return found

    def get(self, appeasement_id: str) -> Appeasement:
        with self._uow(read_only=True) as uow:
            found = uow.care.get_appeasement(appeasement_id)
        if found is None:
            raise AppeasementNotFound(f"no appeasement '{appeasement_id}'")
        return found

    def list(
        self, *, order_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Appeasement]:
        if status is not None and status not in {s.value for s in AppeasementStatus}:
            raise InvalidAppeasement(f"unknown status '{status}'")
        with self._uow(read_only=True) as uow:
            if order_id is not None:
                order_id = _load_order(uow, order_id).order_id
            return uow.care.appeasements(order_id=order_id, status=status, limit=limit)

    def _issue(self, uow: UnitOfWork, made: Appeasement) -> PaymentOutcome | None:
        if made.kind is AppeasementKind.CREDIT:
            made.issued()
            return None
        outcome = self._payments.refund(
            made.order_number,
            Money.of(made.amount, made.currency),
            f"appeasement: {made.reason_code.value}",
            refund_ref=made.appeasement_id,
            uow=uow,
        )
        if outcome.approved:
            made.issued()
        else:
            made.failed(f"refund {outcome.status}: {outcome.decline_code}")
        return outcome

    @staticmethod
    def _supervisor(principal: Principal) -> None:
        if principal.role not in SUPERVISOR_ROLES:
            raise ApprovalNotAllowed(
                f"role '{principal.role}' may not decide appeasements: a supervisor (admin) does"
            )

    @staticmethod
    def _load(uow: UnitOfWork, appeasement_id: str) -> Appeasement:
        found = uow.care.get_appeasement(appeasement_id, for_update=True)
        if found is None:
            raise AppeasementNotFound(f"no appeasement '{appeasement_id}'")
        return found

    # -- notes ---------------------------------------------------------------------------------

    def add_note(
        self,
        text: str,
        *,
        order_id: str | None = None,
        customer_key: str | None = None,
        principal: Principal = SYSTEM,
    ) -> Note:
        """A note on an order (by id or number) or on a customer (email, phone or id)."""
        with self._uow() as uow:
            if order_id is not None:
                order_id = _load_order(uow, order_id).order_id
            note = new_note(
                note_id=self._ids.new_id(),
                text=text,
                author=principal.actor,
                at=self._clock.now(),
                order_id=order_id,
                customer_key=_customer_key(customer_key) if customer_key else None,
            )
            uow.care.add_note(note)
            uow.commit()
        return note


def _load_order(uow: UnitOfWork, order_id: str) -> Order:
    order = uow.orders.get(order_id)
    if order is None:
        found = uow.orders.id_for_number(order_id)
        order = uow.orders.get(found) if found else None
    if order is None:
        raise OrderNotFound(f"no order '{order_id}'", order_id=order_id)
    return order


def _customer_key(key: str) -> str:
    """Emails compare case-insensitively and phones without spacing, like orders store them."""
    key = key.strip()
    if "@" in key:
        return key.lower()
    if key and all(ch.isdigit() or ch in "+-() ." for ch in key):
        return "".join(ch for ch in key if ch.isdigit() or ch == "+")
    return key
