"""Returns from any channel: a return authorisation (RMA) names the order lines and units coming
back with a reason code, where they come back (by mail to a DC, in a store, at a drop-off point)
and how the customer is made whole (a refund to the original tenders, or an exchange: a new,
linked order). Units are received at a location that accepts returns, inspected, and each unit
gets a disposition: ``restock`` (back into ATP there), ``damaged`` (into blocked stock) or
``return_to_vendor``.

The rules live here; :mod:`oms.services.returns` moves stock, quantities and money.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

from oms.domain.errors import Conflict, Invalid, NotFound
from oms.domain.events import DomainEvent


class ReturnMethod(StrEnum):
    MAIL = "mail"
    """By mail (or carrier) to a DC."""
    IN_STORE = "in_store"
    """Bought online, returned in store (BORIS)."""
    DROP_OFF = "drop_off"
    """Handed in at a drop-off point (a parcel shop, a locker)."""


class ReturnReason(StrEnum):
    DAMAGED = "damaged"
    DEFECTIVE = "defective"
    WRONG_ITEM = "wrong_item"
    NOT_AS_DESCRIBED = "not_as_described"
    SIZE_OR_FIT = "size_or_fit"
    NO_LONGER_NEEDED = "no_longer_needed"
    ARRIVED_LATE = "arrived_late"
    OTHER = "other"


class Disposition(StrEnum):
    RESTOCK = "restock"
    DAMAGED = "damaged"
    RETURN_TO_VENDOR = "return_to_vendor"


class Resolution(StrEnum):
    REFUND = "refund"
    EXCHANGE = "exchange"


class ReturnStatus(StrEnum):
    AUTHORISED = "authorised"
    RECEIVED = "received"
    INSPECTED = "inspected"
    REFUNDED = "refunded"
    EXCHANGED = "exchanged"
    CANCELLED = "cancelled"


class ReturnNotFound(NotFound):
    slug = "return-not-found"
    title = "No such return"


class ReturnRefused(Conflict):
    slug = "return-refused"
    title = "The return cannot be done"


class InvalidReturn(Invalid):
    slug = "invalid-return"
    title = "The return request is not valid"


class ReturnWindowClosed(Conflict):
    slug = "return-window-closed"
    title = "The return window has closed"


def window_closes(handed_over_at: datetime, window_days: int) -> datetime:
    """The last moment a return may be authorised: ``window_days`` after the delivery."""
    return handed_over_at + timedelta(days=window_days)


@dataclass
class ReturnLine:
    line_no: int
    sku: str
    quantity: int
    reason: ReturnReason
    unit_value: Decimal
    """What one unit cost the customer, tax included (the refund per unit)."""
    received: int = 0
    dispositions: dict[Disposition, int] = field(default_factory=dict)

    @property
    def inspected(self) -> int:
        return sum(self.dispositions.values())

    def describe(self) -> dict[str, Any]:
        return {
            "line_no": self.line_no,
            "sku": self.sku,
            "quantity": self.quantity,
            "reason": self.reason.value,
            "unit_value": str(self.unit_value),
            "received": self.received,
            "dispositions": {d.value: n for d, n in sorted(self.dispositions.items()) if n},
        }

    @classmethod
    def from_description(cls, data: dict[str, Any]) -> ReturnLine:
        return cls(
            line_no=int(data["line_no"]),
            sku=str(data["sku"]),
            quantity=int(data["quantity"]),
            reason=ReturnReason(data["reason"]),
            unit_value=Decimal(str(data["unit_value"])),
            received=int(data.get("received", 0)),
            dispositions={
                Disposition(name): int(n) for name, n in (data.get("dispositions") or {}).items()
            },
        )


@dataclass
class Return:
    return_id: str
    rma_number: str
    order_id: str
    order_number: str
    customer_email: str | None
    method: ReturnMethod
    location_code: str | None
    resolution: Resolution
    currency: str
    lines: list[ReturnLine]
    created_by: str
    created_at: datetime
    status: ReturnStatus = ReturnStatus.AUTHORISED
    allow_ship_before_return: bool = False
    exchange_order_id: str | None = None
    refunded_amount: Decimal = Decimal("0")
    version: int = 0
    events: list[DomainEvent] = field(default_factory=list)

    def line(self, line_no: int) -> ReturnLine:
        for line in self.lines:
            if line.line_no == line_no:
                return line
        raise InvalidReturn(f"return {self.rma_number} has no order line {line_no}")

    @property
    def received_value(self) -> Decimal:
        return sum((line.unit_value * line.received for line in self.lines), Decimal("0"))

    def _ids(self) -> dict[str, Any]:
        return {
            "return_id": self.return_id,
            "rma_number": self.rma_number,
            "order_id": self.order_id,
            "order_number": self.order_number,
        }

    @classmethod
    def authorise(
        cls,
        *,
        return_id: str,
        rma_number: str,
        order_id: str,
        order_number: str,
        customer_email: str | None,
        method: ReturnMethod,
        location_code: str | None,
        resolution: Resolution,
        currency: str,
        lines: list[ReturnLine],
        returnable: dict[int, int],
        actor: str,
        at: datetime,
        allow_ship_before_return: bool = False,
    ) -> Return:
        """A return authorisation; ``returnable`` is per order line how many units were handed
        over and are not already on another return."""
        if not lines:
            raise InvalidReturn("a return needs at least one line")
        seen: set[int] = set()
        for line in lines:
            if line.line_no in seen:
                raise InvalidReturn(f"order line {line.line_no} appears twice")
            seen.add(line.line_no)
            if line.quantity <= 0:
                raise InvalidReturn(f"line {line.line_no}: quantity must be at least 1")
            can = returnable.get(line.line_no, 0)
            if line.quantity > can:
                raise ReturnRefused(
                    f"order {order_number} line {line.line_no}: only {can} unit(s) were handed "
                    f"over and are not on another return, {line.quantity} asked",
                    line_no=line.line_no,
                    returnable=can,
                )
        if method is not ReturnMethod.MAIL and not location_code:
            raise InvalidReturn(f"a '{method}' return names the location it is handed in at")
        if resolution is not Resolution.EXCHANGE and allow_ship_before_return:
            raise InvalidReturn("only an exchange can ship before the return arrives")
        made = cls(
            return_id=return_id,
            rma_number=rma_number,
            order_id=order_id,
            order_number=order_number,
            customer_email=customer_email,
            method=method,
            location_code=location_code,
            resolution=resolution,
            currency=currency,
            lines=lines,
            created_by=actor,
            created_at=at,
            allow_ship_before_return=allow_ship_before_return,
        )
        made.events.append(
            ReturnAuthorised(
                **made._ids(),
                method=method.value,
                location_code=location_code,
                resolution=resolution.value,
                lines=[line.describe() for line in lines],
                actor=actor,
            )
        )
        return made

    def link_exchange(self, order_id: str) -> None:
        if self.resolution is not Resolution.EXCHANGE:
            raise ReturnRefused(f"return {self.rma_number} is a refund, not an exchange")
        self.exchange_order_id = order_id

    def receive(
        self, quantities: dict[int, int] | None, *, location_code: str, actor: str
    ) -> dict[int, int]:
        """Units arrive at ``location_code``; all that are expected unless ``quantities`` (order
        line -> units). Returns what arrived now per order line."""
        if self.status is not ReturnStatus.AUTHORISED:
            raise ReturnRefused(f"return {self.rma_number} is {self.status}, not awaiting units")
        wanted = quantities or {line.line_no: line.quantity - line.received for line in self.lines}
        arrived: dict[int, int] = {}
        for line_no, quantity in wanted.items():
            line = self.line(line_no)
            if quantity < 0 or quantity > line.quantity - line.received:
                raise InvalidReturn(
                    f"line {line_no}: {quantity} unit(s) received, "
                    f"{line.quantity - line.received} expected"
                )
            if quantity:
                line.received += quantity
                arrived[line_no] = quantity
        if not arrived:
            raise InvalidReturn("nothing was received")
        self.status = ReturnStatus.RECEIVED
        self.location_code = location_code
        self.events.append(
            ReturnReceived(
                **self._ids(),
                location_code=location_code,
                lines=[{"line_no": n, "quantity": q} for n, q in sorted(arrived.items())],
                actor=actor,
            )
        )
        return arrived

    def inspect(
        self, dispositions: list[tuple[int, Disposition, int]], *, actor: str
    ) -> dict[tuple[int, Disposition], int]:
        """A disposition per received unit: every received unit gets exactly one."""
        if self.status is not ReturnStatus.RECEIVED:
            raise ReturnRefused(f"return {self.rma_number} is {self.status}, not received")
        given: dict[tuple[int, Disposition], int] = {}
        for line_no, disposition, quantity in dispositions:
            self.line(line_no)
            if quantity <= 0:
                raise InvalidReturn(f"line {line_no}: a disposition covers at least one unit")
            given[(line_no, disposition)] = given.get((line_no, disposition), 0) + quantity
        for line in self.lines:
            covered = sum(q for (n, _), q in given.items() if n == line.line_no)
            if covered != line.received:
                raise InvalidReturn(
                    f"line {line.line_no}: {line.received} unit(s) received, "
                    f"{covered} given a disposition; each unit needs exactly one"
                )
        for (line_no, disposition), quantity in given.items():
            line = self.line(line_no)
            line.dispositions[disposition] = line.dispositions.get(disposition, 0) + quantity
        self.status = ReturnStatus.INSPECTED
        self.events.append(
            ReturnInspected(
                **self._ids(),
                location_code=self.location_code,
                dispositions=[
                    {"line_no": n, "disposition": d.value, "quantity": q}
                    for (n, d), q in sorted(given.items())
                ],
                actor=actor,
            )
        )
        return given

    def refund_due(self) -> Decimal:
        """What the received units cost, tax included, minus what was refunded already."""
        if self.resolution is not Resolution.REFUND:
            raise ReturnRefused(f"return {self.rma_number} is an exchange: nothing to refund")
        if self.status not in (ReturnStatus.RECEIVED, ReturnStatus.INSPECTED):
            raise ReturnRefused(
                f"return {self.rma_number} is {self.status}: refunds follow the receipt"
            )
        return self.received_value - self.refunded_amount

    def refunded(self, amount: Decimal, *, actor: str) -> None:
        self.refunded_amount += amount
        self.status = ReturnStatus.REFUNDED
        self.events.append(
            ReturnRefunded(**self._ids(), amount=str(amount), currency=self.currency, actor=actor)
        )

    def close_exchange(self, *, actor: str) -> None:
        if self.resolution is not Resolution.EXCHANGE:
            raise ReturnRefused(f"return {self.rma_number} is a refund, not an exchange")
        self.status = ReturnStatus.EXCHANGED
        self.events.append(
            ReturnExchanged(**self._ids(), exchange_order_id=self.exchange_order_id, actor=actor)
        )

    def cancel(self, *, reason: str, actor: str) -> None:
        if self.status is not ReturnStatus.AUTHORISED:
            raise ReturnRefused(f"return {self.rma_number} is {self.status}: too late to cancel")
        if not reason.strip():
            raise InvalidReturn("cancelling a return needs a reason")
        self.status = ReturnStatus.CANCELLED
        self.events.append(ReturnCancelled(**self._ids(), reason=reason, actor=actor))


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReturnEvent(DomainEvent):
    return_id: str
    rma_number: str
    order_id: str
    order_number: str

    @property
    def subject(self) -> str:
        return f"returns/{self.return_id}"


@dataclass(frozen=True, kw_only=True)
class ReturnAuthorised(ReturnEvent):
    type: ClassVar[str] = "return.authorised"
    method: str
    location_code: str | None
    resolution: str
    lines: list[dict[str, Any]]
    actor: str


@dataclass(frozen=True, kw_only=True)
class ReturnReceived(ReturnEvent):
    type: ClassVar[str] = "return.received"
    location_code: str
    lines: list[dict[str, Any]]
    actor: str


@dataclass(frozen=True, kw_only=True)
class ReturnInspected(ReturnEvent):
    type: ClassVar[str] = "return.inspected"
    location_code: str | None
    dispositions: list[dict[str, Any]]
    actor: str


@dataclass(frozen=True, kw_only=True)
class ReturnRefunded(ReturnEvent):
    type: ClassVar[str] = "return.refunded"
    amount: str
    currency: str
    actor: str


@dataclass(frozen=True, kw_only=True)
class ReturnExchanged(ReturnEvent):
    type: ClassVar[str] = "return.exchanged"
    exchange_order_id: str | None
    actor: str


@dataclass(frozen=True, kw_only=True)
class ReturnCancelled(ReturnEvent):
    type: ClassVar[str] = "return.cancelled"
    reason: str
    actor: str
