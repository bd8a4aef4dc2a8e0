"""Return use cases: authorise (RMA), receive at a location, inspect with a disposition per unit,
refund to the original tenders or exchange (a new linked order).

Receiving moves the order's units to ``returned`` (the order domain's quantity rule, the one
:meth:`OrderService.move_quantity` applies) in the same transaction as the return and the stock:
``restock`` units come back on hand at the receiving location (an inventory ``return`` delta, so
ATP rises there), ``damaged`` units come back on hand and blocked, ``return_to_vendor`` units do
not come back into sellable stock. Refunds go through :class:`PaymentService` with the return's
id as the refund reference, so a repeated refund pays out only what is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

from oms.domain.access import SYSTEM, Principal
from oms.domain.inventory import DeltaKind
from oms.domain.locations import Capability
from oms.domain.orders import (
    Customer,
    Delivery,
    HoldType,
    LineRequest,
    Order,
    OrderNotFound,
    QuantityState,
)
from oms.domain.payments import Money, currency_exponent
from oms.domain.returns import (
    Disposition,
    InvalidReturn,
    Resolution,
    Return,
    ReturnLine,
    ReturnMethod,
    ReturnNotFound,
    ReturnReason,
    ReturnRefused,
    ReturnStatus,
    ReturnWindowClosed,
    window_closes,
)
from oms.services.orders import CaptureOrder, OrderService, public_number
from oms.services.payments import PaymentOutcome, PaymentService
from oms.services.ports import (
    Clock,
    DeltaLine,
    DuplicateRmaNumber,
    Ids,
    UnitOfWork,
    UnitOfWorkFactory,
)

Q = QuantityState
HANDED_OVER = (Q.DELIVERED, Q.COLLECTED, Q.SHIPPED)
"""States units can be returned from (latest first: delivered units are taken before shipped)."""

RMA_ATTEMPTS = 3
"""Tries at authorising a return whose RMA number another return has (see DuplicateRmaNumber)."""


@dataclass(frozen=True)
class ReturnLineRequest:
    line_no: int
    quantity: int
    reason: str


@dataclass(frozen=True)
class Refunded:
    return_: Return
    outcome: PaymentOutcome


E = TypeVar("E", bound=StrEnum)


def _enum(kind: type[E], value: str, pointer: str) -> E:
    try:
        return kind(value)
    except ValueError:
        options = ", ".join(v.value for v in kind)
        raise InvalidReturn(
            f"unknown {pointer.rsplit('/', 1)[-1]} '{value}': one of {options}", pointer=pointer
        ) from None


class ReturnService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        ids: Ids,
        orders: OrderService,
        payments: PaymentService,
        window_days: int = 30,
    ) -> None:
        if window_days < 0:
            raise ValueError("the return window cannot be negative")
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._orders = orders
        self._payments = payments
        self.window_days = window_days

    # -- authorise -----------------------------------------------------------------------------

    def authorise(
        self,
        order_id: str,
        lines: Sequence[ReturnLineRequest],
        *,
        method: str,
        location_code: str | None = None,
        resolution: str = "refund",
        allow_ship_before_return: bool = False,
        principal: Principal = SYSTEM,
    ) -> Return:
        """A return authorisation (RMA) for handed-over units inside the return window. An
        exchange captures its replacement order at once; unless the agent allows it to ship
        before the return arrives, the replacement waits on a manual hold until the receipt."""
        how = _enum(ReturnMethod, method, "#/method")
        resolved = _enum(Resolution, resolution, "#/resolution")
        if location_code:
            principal.require_location(location_code)
        # The RMA number is made from the return's id (50 random bits): should another return
        # have it, the authorisation is made again with a new id.
        for attempt in range(1, RMA_ATTEMPTS + 1):
            try:
                made, order = self._authorise_once(
                    order_id,
                    lines,
                    how,
                    resolved,
                    location_code,
                    allow_ship_before_return,
                    principal,
                )
                break
            except DuplicateRmaNumber:
                if attempt == RMA_ATTEMPTS:
                    raise
        if resolved is Resolution.EXCHANGE:
            made = self._exchange(made, order, principal=principal)
        return made

    def _authorise_once(
        self,
        order_id: str,
        lines: Sequence[ReturnLineRequest],
        how: ReturnMethod,
        resolved: Resolution,
        location_code: str | None,
        allow_ship_before_return: bool,
        principal: Principal,
    ) -> tuple[Return, Order]:
        with self._uow() as uow:
            at = self._clock.now()
            order = _load_order(uow, order_id)
            if location_code:
                self._accepting(uow, location_code)
            elif how is ReturnMethod.MAIL:
                raise InvalidReturn(
                    "a return by mail names the DC it is sent to", pointer="#/location_code"
                )
            handed_over = uow.care.handed_over_at(order.order_id)
            pending: dict[int, int] = {}
            for earlier in uow.care.returns_for_order(order.order_id):
                if earlier.status is ReturnStatus.AUTHORISED:
                    for expected in earlier.lines:
                        pending[expected.line_no] = pending.get(expected.line_no, 0) + (
                            expected.quantity - expected.received
                        )
            exponent = currency_exponent(order.currency)
            return_lines: list[ReturnLine] = []
            returnable: dict[int, int] = {}
            for request in lines:
                line = order.line(request.line_no)
                units = sum(line.quantity_in(state) for state in HANDED_OVER)
                returnable[line.line_no] = units - pending.get(line.line_no, 0)
                since = handed_over.get(line.line_no)
                if units and since is not None:
                    closes = window_closes(since, self.window_days)
                    if at > closes:
                        raise ReturnWindowClosed(
                            f"order {order.order_number} line {line.line_no} was handed over "
                            f"on {since.date()}: returns closed on {closes.date()} "
                            f"({self.window_days} days)",
                            line_no=line.line_no,
                            closed_at=closes.isoformat(),
                        )
                return_lines.append(
                    ReturnLine(
                        line_no=line.line_no,
                        sku=line.sku,
                        quantity=request.quantity,
                        reason=_enum(ReturnReason, request.reason, "#/lines/reason"),
                        unit_value=order.units_value(line.line_no, 1, exponent=exponent),
                    )
                )
            return_id = self._ids.new_id()
            made = Return.authorise(
                return_id=return_id,
                rma_number=public_number("RMA", return_id),
                order_id=order.order_id,
                order_number=order.order_number,
                customer_email=order.customer.email,
                method=how,
                location_code=location_code,
                resolution=resolved,
                currency=order.currency,
                lines=return_lines,
                returnable=returnable,
                actor=principal.actor,
                at=at,
                allow_ship_before_return=allow_ship_before_return,
            )
            uow.care.add_return(made)
            uow.record(*made.events)
            made.events.clear()
            uow.commit()
        return made, order

    def _exchange(self, made: Return, order: Order, *, principal: Principal) -> Return:
        """The replacement: a new order for the same items and delivery, sourced normally, at no
        charge (the returned units pay for it), linked to the return. Capturing it again (a
        retry) returns the same order: its channel reference is the RMA number."""
        replacement = self._orders.capture(
            CaptureOrder(
                channel=order.channel.value,
                channel_reference=f"exchange-{made.rma_number}",
                customer=Customer(
                    order.customer.customer_id,
                    order.customer.name,
                    order.customer.email,
                    order.customer.phone,
                ),
                currency=order.currency,
                lines=[
                    LineRequest(
                        sku=line.sku,
                        quantity=line.quantity,
                        unit_price=Decimal("0"),
                        delivery=_fresh(order.line(line.line_no).delivery),
                    )
                    for line in made.lines
                ],
                notes=f"exchange for return {made.rma_number} of order {order.order_number}",
                tags=["exchange"],
            ),
            principal=principal,
        ).order
        if not made.allow_ship_before_return and not any(
            hold.type is HoldType.MANUAL for hold in replacement.active_holds
        ):
            self._orders.place_hold(
                replacement.order_id,
                HoldType.MANUAL,
                reason=f"exchange: waits for return {made.rma_number} to arrive",
                principal=principal,
            )
        with self._uow() as uow:
            linked = self._load(uow, made.return_id, for_update=True)
            linked.link_exchange(replacement.order_id)
            uow.care.save_return(linked, at=self._clock.now())
            uow.commit()
        return linked

    # -- receive and inspect -------------------------------------------------------------------

    def receive(
        self,
        return_id: str,
        *,
        location_code: str,
        quantities: dict[int, int] | None = None,
        principal: Principal = SYSTEM,
    ) -> Return:
        """Units arrive at a location that accepts returns; the order's units move to
        ``returned``. An exchange waiting for them is released from its hold."""
        principal.require_location(location_code)
        with self._uow() as uow:
            at = self._clock.now()
            found = self._load(uow, return_id, for_update=True)
            self._accepting(uow, location_code)
            arrived = found.receive(quantities, location_code=location_code, actor=principal.actor)
            order = uow.orders.get(found.order_id, for_update=True)
            assert order is not None
            for line_no, quantity in sorted(arrived.items()):
                left = quantity
                line = order.line(line_no)
                for state in HANDED_OVER:
                    for bucket_location, units in line.at_locations(state):
                        take = min(left, units)
                        if take:
                            order.move_quantity(
                                line_no,
                                take,
                                source=state,
                                target=Q.RETURNED,
                                location_code=bucket_location,
                                actor=principal.actor,
                                reason=f"return {found.rma_number} received at {location_code}",
                                at=at,
                            )
                            left -= take
                if left:
                    raise ReturnRefused(
                        f"order {order.order_number} line {line_no} has no {left} more "
                        "handed-over unit(s) to take back"
                    )
            uow.orders.save(order, at=at)
            uow.record(*order.events)
            order.events.clear()
            uow.care.save_return(found, at=self._clock.now())
            uow.record(*found.events)
            found.events.clear()
            uow.commit()
        if found.exchange_order_id and not found.allow_ship_before_return:
            replacement = self._orders.get(found.exchange_order_id)
            if any(hold.type is HoldType.MANUAL for hold in replacement.active_holds):
                self._orders.release_hold(
                    replacement.order_id,
                    HoldType.MANUAL,
                    reason=f"return {found.rma_number} arrived",
                    principal=principal,
                )
        return found

    def inspect(
        self,
        return_id: str,
        dispositions: Sequence[tuple[int, str, int]],
        *,
        principal: Principal = SYSTEM,
    ) -> Return:
        """A disposition for every received unit: restock (back into ATP at the receiving
        location), damaged (on hand but blocked there), return_to_vendor (not sellable here)."""
        with self._uow() as uow:
            at = self._clock.now()
            found = self._load(uow, return_id, for_update=True)
            if found.location_code:
                principal.require_location(found.location_code)
            given = found.inspect(
                [
                    (line_no, _enum(Disposition, kind, "#/dispositions/disposition"), quantity)
                    for line_no, kind, quantity in dispositions
                ],
                actor=principal.actor,
            )
            location = found.location_code or ""
            deltas: list[DeltaLine] = []
            blocked: dict[str, int] = {}
            for (line_no, disposition), quantity in sorted(given.items()):
                if disposition is Disposition.RETURN_TO_VENDOR:
                    continue
                sku = found.line(line_no).sku
                deltas.append(
                    DeltaLine(
                        source="returns",
                        message_id=f"{found.rma_number}:{line_no}:{disposition.value}",
                        sku=sku,
                        location_code=location,
                        kind=DeltaKind.RETURN,
                        quantity=quantity,
                        occurred_at=at,
                        reason=f"return {found.rma_number}: {disposition.value}",
                    )
                )
                if disposition is Disposition.DAMAGED:
                    blocked[sku] = blocked.get(sku, 0) + quantity
            if deltas:
                uow.inventory.apply_deltas(deltas, at=at)
            for sku, quantity in sorted(blocked.items()):
                now_blocked = sum(
                    p.blocked
                    for p in uow.inventory.positions([sku], at=at, location_codes=[location])
                )
                uow.inventory.set_blocked(
                    sku,
                    location,
                    blocked=now_blocked + quantity,
                    at=at,
                    reason=f"return {found.rma_number}: damaged",
                )
            uow.care.save_return(found, at=self._clock.now())
            uow.record(*found.events)
            found.events.clear()
            uow.commit()
        return found

    # -- resolve -------------------------------------------------------------------------------

    def refund(self, return_id: str, *, principal: Principal = SYSTEM) -> Refunded:
        """Refund the received units (price incl. tax) minus what this return refunded before,
        to the original tenders in the refund order. The customer gets the "refund issued"
        email from the payment.refunded event."""
        with self._uow() as uow:
            found = self._load(uow, return_id, for_update=True)
            due = found.refund_due()
            if due <= 0:
                raise ReturnRefused(f"return {found.rma_number} has nothing left to refund")
            outcome = self._payments.refund(
                found.order_number,
                Money.of(found.received_value, found.currency),
                f"return {found.rma_number}",
                refund_ref=found.return_id,
                uow=uow,
            )
            if outcome.processed.is_positive():
                found.refunded(outcome.processed.amount, actor=principal.actor)
                uow.care.save_return(found, at=self._clock.now())
                uow.record(*found.events)
                found.events.clear()
            uow.commit()
        return Refunded(found, outcome)

    def close_exchange(self, return_id: str, *, principal: Principal = SYSTEM) -> Return:
        with self._uow() as uow:
            found = self._load(uow, return_id, for_update=True)
            if found.status not in (ReturnStatus.RECEIVED, ReturnStatus.INSPECTED):
                raise ReturnRefused(f"return {found.rma_number} is {found.status}")
            found.close_exchange(actor=principal.actor)
            uow.care.save_return(found, at=self._clock.now())
            uow.record(*found.events)
            found.events.clear()
            uow.commit()
        return found

    def cancel(self, return_id: str, *, reason: str, principal: Principal = SYSTEM) -> Return:
        with self._uow() as uow:
            found = self._load(uow, return_id, for_update=True)
            found.cancel(reason=reason, actor=principal.actor)
            uow.care.save_return(found, at=self._clock.now())
            uow.record(*found.events)
            found.events.clear()
            uow.commit()
        return found

    # -- reading -------------------------------------------------------------------------------

    def get(self, return_id: str) -> Return:
        with self._uow(read_only=True) as uow:
            return self._load(uow, return_id)

    def for_order(self, order_id: str) -> list[Return]:
        with self._uow(read_only=True) as uow:
            order = _load_order(uow, order_id)
            return uow.care.returns_for_order(order.order_id)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _load(uow: UnitOfWork, return_id: str, *, for_update: bool = False) -> Return:
        found = uow.care.get_return(return_id, for_update=for_update)
        if found is None:
            raise ReturnNotFound(f"no return '{return_id}'", return_id=return_id)
        return found

    @staticmethod
    def _accepting(uow: UnitOfWork, location_code: str) -> None:
        location = uow.locations.get_many([location_code]).get(location_code)
        if location is None:
            raise InvalidReturn(f"unknown location '{location_code}'", pointer="#/location_code")
        if not location.can(Capability.ACCEPT_RETURNS):
            raise InvalidReturn(
                f"location '{location_code}' does not accept returns", pointer="#/location_code"
            )


def _load_order(uow: UnitOfWork, order_id: str) -> Order:
    order = uow.orders.get(order_id)
    if order is None:
        found = uow.orders.id_for_number(order_id)
        order = uow.orders.get(found) if found else None
    if order is None:
        raise OrderNotFound(f"no order '{order_id}'", order_id=order_id)
    return order


def _fresh(delivery: Delivery) -> Delivery:
    """The original line's delivery for the replacement (no requested date from the past)."""
    return dataclasses.replace(delivery, requested_on=None)
