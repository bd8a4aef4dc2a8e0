"""Order use cases: capture from every channel, changes, holds, cancellations, progress and
backorders. Each is one unit of work: the order, its stock allocations and its events commit
together or not at all, so a refused change leaves order, reservations and allocations as they
were.

Sourcing sits behind one function, :func:`source_lines`, so that a real sourcing engine can take
its place without touching the use cases.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from oms.domain.access import SYSTEM, Principal
from oms.domain.errors import Conflict, Invalid
from oms.domain.inventory import NO_BUFFER, InsufficientStock, StockLine
from oms.domain.items import Item
from oms.domain.locations import Capability, Location, LocationStatus, LocationType, haversine_km
from oms.domain.orders import (
    AT_STORE,
    FROM_PICKUP_STORE,
    Address,
    Cancellation,
    CardNumberRejected,
    Channel,
    Customer,
    Delivery,
    DeliveryMethod,
    FieldErrors,
    Freed,
    Hold,
    HoldType,
    InvalidOrder,
    LineRequest,
    Order,
    OrderCancelled,
    OrderChangeRefused,
    OrderCreated,
    OrderLine,
    OrderNotFound,
    PaymentReference,
    QuantityState,
    Totals,
    card_number_pointers,
    field_error,
)
from oms.domain.payments import (
    CaptureExceedsAuthorisation,
    Money,
    Tender,
    TenderKind,
    currency_exponent,
)
from oms.services.payments import PaymentOutcome, PaymentService, PaymentStatus
from oms.services.ports import (
    Clock,
    DuplicateChannelReference,
    DuplicateOrderNumber,
    Ids,
    TransactionKind,
    UnitOfWork,
    UnitOfWorkFactory,
)

T = TypeVar("T")
Q = QuantityState

CAPTURE_ATTEMPTS = 3
"""A capture whose plan lost a race for the last units is planned again on fresh stock."""

CHANNEL_PREFIX: Mapping[Channel, str] = {
    Channel.WEB: "W",
    Channel.APP: "A",
    Channel.STORE: "S",
    Channel.CALL_CENTER: "C",
    Channel.MARKETPLACE: "M",
}
_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U


# --- commands and results -----------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureOrder:
    channel: str
    channel_reference: str
    customer: Customer
    currency: str
    lines: Sequence[LineRequest]
    shipping_charge: Decimal = Decimal("0")
    totals: Totals | None = None
    payments: Sequence[PaymentReference] = ()
    notes: str | None = None
    tags: Sequence[str] = ()


@dataclass(frozen=True)
class Captured:
    order: Order
    created: bool
    """False when the channel reference was captured before: the existing order is returned."""


# --- sourcing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourcingPlan:
    allocations: list[tuple[int, str, int]]
    """(line number, location code, quantity)"""
    backorders: list[tuple[int, int, date | None]]
    """(line number, quantity, expected date from future supply or None)"""
    allocation_channel: str | None = None
    """The channel whose buffer allocation must enforce (None: it has none)."""

    def stock_lines(self, lines: Mapping[int, OrderLine]) -> list[StockLine]:
        totals: dict[tuple[str, str], int] = {}
        for line_no, location_code, quantity in self.allocations:
            key = (lines[line_no].sku, location_code)
            totals[key] = totals.get(key, 0) + quantity
        return [StockLine(sku, code, quantity) for (sku, code), quantity in sorted(totals.items())]


SHIPPING_TYPES = frozenset(
    {
        LocationType.DC,
        LocationType.STORE,
        LocationType.DARK_STORE,
        LocationType.THIRD_PARTY_LOGISTICS,
    }
)
STORE_TYPES = frozenset({LocationType.STORE, LocationType.DARK_STORE})
WAREHOUSE_TYPES = frozenset({LocationType.DC, LocationType.THIRD_PARTY_LOGISTICS})


def can_serve(location: Location, line: OrderLine, item: Item | None) -> bool:
    """Whether ``location`` may fulfil ``line`` for its delivery method."""
    if not location.status.fulfills or not location.holds_stock:
        return False
    method = line.delivery.method
    if method in FROM_PICKUP_STORE:
        return location.code == line.delivery.pickup_location_code and (
            location.status is LocationStatus.ACTIVE
        )
    if method is DeliveryMethod.DROPSHIP:
        return location.type is LocationType.VENDOR and location.can(Capability.SHIP)
    if method is DeliveryMethod.SHIP_TO_STORE:
        return location.type in WAREHOUSE_TYPES and location.can(Capability.SHIP)
    # ship
    if location.type not in SHIPPING_TYPES or not location.can(Capability.SHIP):
        return False
    return not (
        location.type in STORE_TYPES and item is not None and not item.ship_from_store_allowed
    )


def _destination(line: OrderLine, by_code: Mapping[str, Location]) -> tuple[float, float] | None:
    address = line.delivery.address
    if address is not None and address.latitude is not None and address.longitude is not None:
        return (address.latitude, address.longitude)
    store = by_code.get(line.delivery.pickup_location_code or "")
    return (store.latitude, store.longitude) if store is not None else None


def candidates(line: OrderLine, item: Item | None, locations: Sequence[Location]) -> list[Location]:
    """Locations that can serve the line, nearest first (then by code)."""
    by_code = {location.code: location for location in locations}
    target = _destination(line, by_code)

    def distance(location: Location) -> float:
        if target is None:
            return 0.0
        return haversine_km(target[0], target[1], location.latitude, location.longitude)

    return sorted(
        (location for location in locations if can_serve(location, line, item)),
        key=lambda location: (distance(location), location.code),
    )


def source_lines(
    uow: UnitOfWork,
    lines: Sequence[tuple[OrderLine, int]],
    *,
    channel: str | None,
    items: Mapping[str, Item],
    locations: Sequence[Location],
    at: datetime,
    already_waiting: Mapping[str, int] | None = None,
    first_come_first_served: bool = False,
    order: Order | None = None,
    trigger: str = "capture",
    refused: Mapping[int, frozenset[str]] | None = None,
) -> SourcingPlan:
    """The simple rule until the sourcing engine takes over: each line from the nearest location
    that can serve it for its delivery method and has the units available to promise (split over
    the next nearest when none has them all), the rest backordered with the date future supply
    covers it (after ``already_waiting`` units of earlier orders). All lines are planned on one
    ATP snapshot: strictly in the order given when ``first_come_first_served``, otherwise lines
    with fewer possible locations first (a pickup line before a ship line). Locations in
    ``refused`` (line number -> codes) never serve that line; ``order`` and ``trigger`` are for
    engines that record their decisions."""
    if not lines:
        return SourcingPlan([], [], None)
    options = {
        line.line_no: [
            location
            for location in candidates(line, items.get(line.sku), locations)
            if location.code not in (refused or {}).get(line.line_no, frozenset())
        ]
        for line, _ in lines
    }
    codes = sorted({location.code for found in options.values() for location in found})
    skus = sorted({line.sku for line, _ in lines})
    # One buffer lookup: ATP is read raw and the channel's buffer applied here; allocation
    # enforces the buffer again (atomically) only when the channel has one.
    buffer = uow.inventory.channel_buffer(channel) if channel else NO_BUFFER
    buffered = buffer.percent > 0 or buffer.units > 0
    raw = uow.inventory.atp(skus, at=at, location_codes=codes) if codes else {}
    available = {
        sku: {code: buffer.apply(units) for code, units in by_location.items()}
        for sku, by_location in raw.items()
    }
    if not first_come_first_served:
        # lines that only one store can serve (pickup) choose before lines that many can
        lines = sorted(lines, key=lambda pair: len(options[pair[0].line_no]))
    allocations: list[tuple[int, str, int]] = []
    short: list[tuple[OrderLine, int]] = []
    for line, quantity in lines:
        stock = available.setdefault(line.sku, {})
        nearest = options[line.line_no]
        whole = next((loc for loc in nearest if stock.get(loc.code, 0) >= quantity), None)
        if whole is not None:
            allocations.append((line.line_no, whole.code, quantity))
            stock[whole.code] -= quantity
            continue
        left = quantity
        for location in nearest:
            take = min(left, stock.get(location.code, 0))
            if take > 0:
                allocations.append((line.line_no, location.code, take))
                stock[location.code] -= take
                left -= take
            if left == 0:
                break
        if left:
            short.append((line, left))
    backorders: list[tuple[int, int, date | None]] = []
    if short:
        short_skus = sorted({line.sku for line, _ in short})
        short_codes = sorted({loc.code for line, _ in short for loc in options[line.line_no]})
        supply = uow.inventory.supply(short_skus, location_codes=short_codes) if short_codes else []
        waiting = dict(
            already_waiting
            if already_waiting is not None
            else uow.orders.waiting_quantities(short_skus)
        )
        for line, quantity in short:
            served_by = {location.code for location in options[line.line_no]}
            need = waiting.get(line.sku, 0) + quantity
            expected_on: date | None = None
            covered = 0
            for supply_line in sorted(supply, key=lambda s: (s.expected_on, s.location_code)):
                if supply_line.sku != line.sku or supply_line.location_code not in served_by:
                    continue
                covered += supply_line.quantity
                if covered >= need:
                    expected_on = supply_line.expected_on
                    break
            waiting[line.sku] = need
            backorders.append((line.line_no, quantity, expected_on))
    return SourcingPlan(allocations, backorders, channel if buffered else None)


class CaptureListener(Protocol):
    """Returns whether it changed the order (it is then read again)."""

    def __call__(self, uow: UnitOfWork, order: Order, *, at: datetime, actor: str) -> bool: ...


class ReleaseListener(Protocol):
    def __call__(
        self,
        uow: UnitOfWork,
        order: Order,
        releases: Sequence[Mapping[str, Any]],
        *,
        at: datetime,
        actor: str,
    ) -> object: ...


class ReleasableListener(Protocol):
    """An order that waited may be released now (backordered units were allocated, a hold was
    lifted) or was released by hand; called in that unit of work once the order is saved."""

    def __call__(self, uow: UnitOfWork, order: Order, *, at: datetime) -> object: ...


class PaymentRefusedAtCollection(Conflict):
    slug = "payment-refused-at-collection"
    title = "The payment was refused when the customer came to collect"


class LineSourcing(Protocol):
    """The signature of :func:`source_lines`; a sourcing engine offering it can replace it."""

    def __call__(
        self,
        uow: UnitOfWork,
        lines: Sequence[tuple[OrderLine, int]],
        *,
        channel: str | None,
        items: Mapping[str, Item],
        locations: Sequence[Location],
        at: datetime,
        already_waiting: Mapping[str, int] | None = None,
        first_come_first_served: bool = False,
        order: Order | None = None,
        trigger: str = "capture",
        refused: Mapping[int, frozenset[str]] | None = None,
    ) -> SourcingPlan: ...


# --- the service ----------------------------------------------------------------------------------


def _order_number(channel: Channel, raw: str) -> str:
    return public_number(CHANNEL_PREFIX[channel], raw)


def public_number(prefix: str, raw: str) -> str:
    """A short number people can read out (order, RMA): ten Crockford base-32 digits of the
    id's lowest 50 bits. Those are random in a version 4 and a version 7 UUID alike; the leading
    digits of a version 7 UUID are its creation time, shared by ids made together."""
    number = uuid.UUID(raw).int if _is_uuid(raw) else int.from_bytes(raw.encode()[:16], "big")
    chars = []
    for _ in range(10):
        number, digit = divmod(number, 32)
        chars.append(_BASE32[digit])
    return f"{prefix}-{''.join(chars)}"


def _is_uuid(raw: str) -> bool:
    try:
        uuid.UUID(raw)
    except ValueError:
        return False
    return True


def parse_channel(value: str) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        raise InvalidOrder(
            f"unknown channel '{value}'",
            errors=[field_error("#/channel", f"one of {', '.join(c.value for c in Channel)}")],
        ) from None


class OrderService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        ids: Ids,
        sourcing: LineSourcing | None = None,
        payments: PaymentService | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._payments = payments
        """Authorise at capture, void what is cancelled, capture what ships (None: no money)."""
        self._source_lines: LineSourcing = sourcing or source_lines
        """Where sourcing decisions come from: the sourcing engine plugs in here."""
        self.on_capture: CaptureListener | None = None
        """Called in the capture's unit of work once the order is stored (fulfillment starts
        the delivery method's process there); wired in bootstrap."""
        self.on_release: ReleaseListener | None = None
        """Called in the releasing unit of work with what was released (fulfillment creates
        its fulfillments there); wired in bootstrap."""
        self.on_releasable: ReleasableListener | None = None
        """Called when an order that waited may go on (backorders allocated, a hold lifted, a
        release by hand): the order's process releases it and carries on; wired with the
        processes."""

    # -- capture ---------------------------------------------------------------------------------

    def capture(self, command: CaptureOrder, *, principal: Principal = SYSTEM) -> Captured:
        """Validate, source, allocate and store a new order, or return the order the channel
        reference already names."""
        channel = parse_channel(command.channel)
        pointers = card_number_pointers(command)
        if pointers:
            raise CardNumberRejected(
                "the request carries a payment card number: send the payment service's token",
                errors=[
                    field_error(pointer, "looks like a card number; send a token instead")
                    for pointer in pointers
                ],
            )
        for attempt in range(1, CAPTURE_ATTEMPTS + 1):
            try:
                return self._capture_once(command, channel, principal.actor)
            except DuplicateChannelReference:
                existing = self.find_by_channel_reference(channel, command.channel_reference)
                if existing is not None:
                    return Captured(existing, created=False)
            except (InsufficientStock, DuplicateOrderNumber):
                if attempt == CAPTURE_ATTEMPTS:
                    raise
        raise RuntimeError("unreachable")  # pragma: no cover

    def _capture_once(self, command: CaptureOrder, channel: Channel, actor: str) -> Captured:
        with self._uow() as uow:
            existing_id = uow.orders.id_for_channel_reference(
                channel.value, command.channel_reference
            )
            if existing_id is not None:
                existing = uow.orders.get(existing_id)
                assert existing is not None
                return Captured(existing, created=False)
            at = self._clock.now()
            skus = sorted({line.sku for line in command.lines})
            items = uow.items.get_many(skus)
            locations = uow.locations.list()
            by_code = {location.code: location for location in locations}
            problems = self._lookup_problems(command.lines, items, by_code)
            order_id = self._ids.new_id()
            order = Order.capture(
                order_id=order_id,
                order_number=_order_number(channel, order_id),
                channel=channel,
                channel_reference=command.channel_reference,
                customer=_clean_customer(command.customer),
                currency=command.currency,
                lines=command.lines,
                at=at,
                actor=actor,
                shipping_charge=command.shipping_charge,
                totals=command.totals,
                payments=command.payments,
                notes=command.notes,
                tags=command.tags,
                problems=problems,
            )
            plan = self._source_lines(
                uow,
                order.to_source(),
                channel=channel.value,
                items=items,
                locations=locations,
                at=at,
                order=order,
                refused={},  # a new order: no location has refused any of its lines yet
            )
            order.apply_sourcing(
                allocations=plan.allocations, backorders=plan.backorders, actor=actor, at=at
            )
            # The order rows go first: a duplicate channel reference fails before any stock is
            # touched, and the stock rows stay locked only for the allocation and the commit.
            uow.orders.add(order, at=at)
            stock = plan.stock_lines({line.line_no: line for line in order.lines})
            if stock:
                uow.inventory.allocate(
                    stock,
                    at=at,
                    channel=plan.allocation_channel,
                    reason=f"order {order.order_number}",
                )
            self._authorise(uow, order, at=at, actor=actor)
            self._describe(uow, order, items)
            uow.record(*order.events)
            order.events.clear()
            if self.on_capture is not None and self.on_capture(uow, order, at=at, actor=actor):
                order = self._load(uow, order_id)  # its process may have released it
            uow.commit()
        return Captured(order, created=True)

    @staticmethod
    def _lookup_problems(
        lines: Sequence[LineRequest], items: Mapping[str, Item], by_code: Mapping[str, Location]
    ) -> FieldErrors:
        found: FieldErrors = []
        for index, line in enumerate(lines):
            pointer = f"#/lines/{index}"
            item = items.get(line.sku)
            if item is None and line.sku.strip():
                found.append(field_error(f"{pointer}/sku", f"unknown SKU '{line.sku}'"))
            found.extend(
                pickup_problems(line.delivery, item, by_code, pointer=f"{pointer}/delivery")
            )
        return found

    # -- reading ---------------------------------------------------------------------------------

    def get(self, order_id: str) -> Order:
        with self._uow(read_only=True) as uow:
            return self._load(uow, order_id)

    def find_by_channel_reference(self, channel: Channel | str, reference: str) -> Order | None:
        with self._uow(read_only=True) as uow:
            found = uow.orders.id_for_channel_reference(str(channel), reference)
            return uow.orders.get(found) if found else None

    @staticmethod
    def _load(uow: UnitOfWork, order_id: str, *, for_update: bool = False) -> Order:
        order = uow.orders.get(order_id, for_update=for_update)
        if order is None:
            found = uow.orders.id_for_number(order_id)
            order = uow.orders.get(found, for_update=for_update) if found else None
        if order is None:
            raise OrderNotFound(f"no order '{order_id}'", order_id=order_id)
        return order

    # -- changes ---------------------------------------------------------------------------------

    def _change(
        self,
        order_id: str,
        work: Callable[[UnitOfWork, Order, datetime], T],
        *,
        releasable: bool = False,
    ) -> T:
        with self._uow() as uow:
            order = self._load(uow, order_id, for_update=True)
            at = self._clock.now()
            result = work(uow, order, at)
            uow.orders.save(order, at=at)
            self._describe(uow, order)
            uow.record(*order.events)
            order.events.clear()
            if releasable and self.on_releasable is not None:
                self.on_releasable(uow, order, at=at)
            uow.commit()
        return result

    @staticmethod
    def _free(uow: UnitOfWork, freed: Sequence[Freed], *, at: datetime, reason: str) -> None:
        totals: dict[tuple[str, str], int] = {}
        for item in freed:
            key = (item.sku, item.location_code)
            totals[key] = totals.get(key, 0) + item.quantity
        if totals:
            uow.inventory.deallocate(
                [
                    StockLine(sku, code, quantity)
                    for (sku, code), quantity in sorted(totals.items())
                ],
                at=at,
                reason=reason,
            )

    def _resource(
        self,
        uow: UnitOfWork,
        order: Order,
        line_nos: Sequence[int],
        *,
        at: datetime,
        actor: str,
        waiting_before: Mapping[int, int] | None = None,
        exclude: Sequence[str] = (),
        trigger: str = "change",
    ) -> None:
        """Source the open units of these lines again. With ``waiting_before``, a line that would
        wait for more units than it did before the change refuses the change. Locations in
        ``exclude`` are not considered (the one that rejected or was short)."""
        wanted = [
            (line, quantity) for line, quantity in order.to_source() if line.line_no in line_nos
        ]
        if not wanted:
            return
        items = uow.items.get_many(sorted({line.sku for line, _ in wanted}))
        locations = [loc for loc in uow.locations.list() if loc.code not in exclude]
        plan = self._source_lines(
            uow,
            wanted,
            channel=order.channel.value,
            items=items,
            locations=locations,
            at=at,
            order=order,
            trigger=trigger,
        )
        if waiting_before is not None:
            for line_no, quantity, _expected in plan.backorders:
                if quantity > waiting_before.get(line_no, 0):
                    line = order.line(line_no)
                    where = line.delivery.pickup_location_code or "any location that can ship it"
                    raise OrderChangeRefused(
                        f"line {line_no} ({line.sku}): only "
                        f"{line.quantity_in(Q.OPEN) - quantity} of {line.quantity_in(Q.OPEN)} "
                        f"unit(s) are available at {where} for '{line.delivery.method}'",
                        line_no=line_no,
                        sku=line.sku,
                    )
        stock = plan.stock_lines({line.line_no: line for line in order.lines})
        if stock:
            uow.inventory.allocate(
                stock, at=at, channel=plan.allocation_channel, reason=f"order {order.order_number}"
            )
        order.apply_sourcing(
            allocations=plan.allocations, backorders=plan.backorders, actor=actor, at=at
        )

    def cancel(
        self,
        order_id: str,
        *,
        reason: str,
        line_no: int | None = None,
        quantity: int | None = None,
        principal: Principal = SYSTEM,
    ) -> Cancellation:
        """Cancel the order, a line or part of one (see :meth:`Order.cancel`)."""

        def work(uow: UnitOfWork, order: Order, at: datetime) -> Cancellation:
            result = order.cancel(
                actor=principal.actor,
                reason=reason,
                at=at,
                new_request_id=self._new_ids(),
                line_no=line_no,
                quantity=quantity,
            )
            self._free(uow, result.freed, at=at, reason=f"order {order.order_number} cancelled")
            self._void_cancelled(uow, order, before)
            return result

        before: dict[int, int] = {}
        return self._change(order_id, self._counting_cancelled(before, work))

    def _new_ids(self) -> Iterator[str]:
        while True:
            yield self._ids.new_id()

    def decide_cancel_request(
        self,
        order_id: str,
        request_id: str,
        *,
        confirm: bool,
        reason: str | None = None,
        principal: Principal = SYSTEM,
    ) -> Order:
        """The fulfilling location confirms (units cancelled, stock freed) or refuses."""

        def work(uow: UnitOfWork, order: Order, at: datetime) -> Order:
            request = next((r for r in order.cancel_requests if r.request_id == request_id), None)
            if request is not None:
                principal.require_location(request.location_code)
            if confirm:
                freed = order.confirm_cancel_request(
                    request_id, actor=principal.actor, at=at, reason=reason
                )
                self._free(uow, freed, at=at, reason=f"order {order.order_number} cancelled")
                self._void_cancelled(uow, order, before)
            else:
                order.refuse_cancel_request(
                    request_id, actor=principal.actor, reason=reason or "", at=at
                )
            return order

        before: dict[int, int] = {}
        return self._change(order_id, self._counting_cancelled(before, work))

    def change_ship_address(
        self,
        order_id: str,
        address: Address,
        *,
        line_nos: Sequence[int] | None = None,
        reason: str | None = None,
        principal: Principal = SYSTEM,
    ) -> Order:
        """New ship-to address for the order's ship and dropship lines (or the given ones)."""

        def work(uow: UnitOfWork, order: Order, at: datetime) -> Order:
            targets = (
                list(line_nos)
                if line_nos
                else [
                    line.line_no
                    for line in order.lines
                    if line.delivery.method in (DeliveryMethod.SHIP, DeliveryMethod.DROPSHIP)
                    and line.live_quantity
                ]
            )
            for line_no in targets:
                line = order.line(line_no)
                if line.delivery.method not in (DeliveryMethod.SHIP, DeliveryMethod.DROPSHIP):
                    raise OrderChangeRefused(
                        f"line {line_no} is '{line.delivery.method}', not shipped to an address; "
                        "switch its delivery method instead",
                        line_no=line_no,
                    )
            if not targets:
                raise OrderChangeRefused(
                    f"order {order.order_number} has no lines shipped to an address"
                )
            for line_no in targets:
                line = order.line(line_no)
                self._redeliver(
                    uow,
                    order,
                    [line_no],
                    dataclasses.replace(line.delivery, address=address),
                    change="ship_address_changed",
                    reason=reason,
                    principal=principal,
                    at=at,
                )
            return order

        return self._change(order_id, work)

    def change_pickup_location(
        self,
        order_id: str,
        line_no: int,
        location_code: str,
        *,
        reason: str | None = None,
        principal: Principal = SYSTEM,
    ) -> Order:
        def work(uow: UnitOfWork, order: Order, at: datetime) -> Order:
            line = order.line(line_no)
            if line.delivery.method not in AT_STORE:
                raise OrderChangeRefused(
                    f"line {line_no} is '{line.delivery.method}', not collected at a store",
                    line_no=line_no,
                )
            self._redeliver(
                uow,
                order,
                [line_no],
                dataclasses.replace(line.delivery, pickup_location_code=location_code),
                change="pickup_location_changed",
                reason=reason,
                principal=principal,
                at=at,
            )
            return order

        return self._change(order_id, work)

    def change_delivery(
        self,
        order_id: str,
        line_no: int,
        delivery: Delivery,
        *,
        reason: str | None = None,
        principal: Principal = SYSTEM,
    ) -> Order:
        """Switch a line's delivery (for example from ship to pickup, or back)."""

        def work(uow: UnitOfWork, order: Order, at: datetime) -> Order:
            self._redeliver(
                uow,
                order,
                [line_no],
                delivery,
                change="delivery_changed",
                reason=reason,
                principal=principal,
                at=at,
            )
            return order

        return self._change(order_id, work)

    def _redeliver(
        self,
        uow: UnitOfWork,
        order: Order,
        line_nos: Sequence[int],
        delivery: Delivery,
        *,
        change: str,
        reason: str | None,
        principal: Principal,
        at: datetime,
    ) -> None:
        lines = [order.line(line_no) for line_no in line_nos]
        if delivery.method in AT_STORE:
            items = uow.items.get_many(sorted({line.sku for line in lines}))
            codes = [delivery.pickup_location_code or ""]
            by_code = uow.locations.get_many(codes)
            problems: FieldErrors = []
            for line in lines:
                problems.extend(
                    pickup_problems(delivery, items.get(line.sku), by_code, pointer="#/delivery")
                )
            if problems:
                raise InvalidOrder(
                    "; ".join(f"{p['pointer']}: {p['detail']}" for p in problems[:3]),
                    errors=problems,
                )
        waiting_before = {line.line_no: line.quantity_in(Q.BACKORDERED) for line in lines}
        freed = order.change_delivery(
            line_nos, delivery, change=change, actor=principal.actor, reason=reason, at=at
        )
        self._free(uow, freed, at=at, reason=f"order {order.order_number} re-sourced")
        self._resource(
            uow, order, line_nos, at=at, actor=principal.actor, waiting_before=waiting_before
        )

    def add_line(
        self,
        order_id: str,
        line: LineRequest,
        *,
        reason: str | None = None,
        principal: Principal = SYSTEM,
    ) -> Order:
        """A new line, sourced like a captured one (it may wait as a backorder)."""

        def work(uow: UnitOfWork, order: Order, at: datetime) -> Order:
            if card_number_pointers(line):
                raise CardNumberRejected("the line carries a payment card number")
            items = uow.items.get_many([line.sku])
            by_code = uow.locations.get_many([line.delivery.pickup_location_code or ""])
            problems = (
                [field_error("#/sku", f"unknown SKU '{line.sku}'")] if line.sku not in items else []
            ) + pickup_problems(line.delivery, items.get(line.sku), by_code, pointer="#/delivery")
            if problems:
                raise InvalidOrder(
                    "; ".join(f"{p['pointer']}: {p['detail']}" for p in problems), errors=problems
                )
            added = order.add_line(line, actor=principal.actor, reason=reason, at=at)
            self._resource(uow, order, [added.line_no], at=at, actor=principal.actor)
            return order

        return self._change(order_id, work)

    def change_quantity(
        self,
        order_id: str,
        line_no: int,
        quantity: int,
        *,
        reason: str | None = None,
        principal: Principal = SYSTEM,
    ) -> Order:
        def work(uow: UnitOfWork, order: Order, at: datetime) -> Order:
            freed = order.change_quantity(
                line_no, quantity, actor=principal.actor, reason=reason, at=at
            )
            self._free(uow, freed, at=at, reason=f"order {order.order_number} quantity changed")
            self._resource(uow, order, [line_no], at=at, actor=principal.actor)
            return order

        return self._change(order_id, work)

    # -- holds, release and progress ---------------------------------------------------------------

    def place_hold(
        self,
        order_id: str,
        hold_type: HoldType | str,
        *,
        reason: str,
        principal: Principal = SYSTEM,
    ) -> Hold:
        kind = _hold_type(hold_type)

        def work(uow: UnitOfWork, order: Order, at: datetime) -> Hold:
            return order.place_hold(
                hold_id=self._ids.new_id(), type=kind, reason=reason, actor=principal.actor, at=at
            )

        return self._change(order_id, work)

    def release_hold(
        self,
        order_id: str,
        hold_type: HoldType | str,
        *,
        reason: str,
        principal: Principal = SYSTEM,
    ) -> Hold:
        kind = _hold_type(hold_type)

        def work(uow: UnitOfWork, order: Order, at: datetime) -> Hold:
            return order.release_hold(type=kind, reason=reason, actor=principal.actor, at=at)

        return self._change(order_id, work, releasable=True)

    def release(self, order_id: str, *, principal: Principal = SYSTEM) -> list[dict[str, Any]]:
        """Hand the allocated units to their locations (refused while on hold)."""

        def work(uow: UnitOfWork, order: Order, at: datetime) -> list[dict[str, Any]]:
            return self.release_in(uow, order, at=at, actor=principal.actor)

        return self._change(order_id, work, releasable=True)

    def release_in(
        self, uow: UnitOfWork, order: Order, *, at: datetime, actor: str
    ) -> list[dict[str, Any]]:
        """Release in the caller's unit of work (the caller saves the order)."""
        releases = order.release(actor=actor, at=at)
        if self.on_release is not None:
            self.on_release(uow, order, releases, at=at, actor=actor)
        return releases

    def resource_in(
        self,
        uow: UnitOfWork,
        order: Order,
        line_nos: Sequence[int],
        *,
        at: datetime,
        actor: str,
        exclude: Sequence[str] = (),
        trigger: str = "change",
    ) -> None:
        """Source the open units of these lines again, in the caller's unit of work, never at
        the ``exclude`` locations (fulfillment: a rejection or a short pick)."""
        self._resource(uow, order, line_nos, at=at, actor=actor, exclude=exclude, trigger=trigger)

    def move_quantity(
        self,
        order_id: str,
        line_no: int,
        quantity: int,
        *,
        source: QuantityState | str,
        target: QuantityState | str,
        location_code: str | None,
        reason: str | None = None,
        principal: Principal = SYSTEM,
    ) -> Order:
        """Fulfillment progress reported by a location. Units leaving the building (shipped,
        collected) are consumed from its stock; units given up (back to open, cancelled) are
        freed, and units back to open are sourced again."""
        source_state, target_state = _state(source, "#/from_state"), _state(target, "#/to_state")
        if location_code:
            principal.require_location(location_code)

        declined: list[PaymentOutcome] = []

        def work(uow: UnitOfWork, order: Order, at: datetime) -> Order:
            line = order.line(line_no)
            if (
                target_state is Q.COLLECTED
                and line.delivery.method is DeliveryMethod.RESERVE_AND_COLLECT
            ):
                outcome = self._collect_payment(
                    uow, order, line_no, quantity, at=at, actor=principal.actor
                )
                if outcome is not None and outcome.needs_hold:
                    declined.append(outcome)
                    return order  # the hold commits; the units stay where they are
            order.move_quantity(
                line_no,
                quantity,
                source=source_state,
                target=target_state,
                location_code=location_code,
                actor=principal.actor,
                reason=reason,
                at=at,
            )
            sku = order.line(line_no).sku
            held = source_state in (Q.ALLOCATED, Q.RELEASED, Q.PICKED, Q.READY_FOR_PICKUP)
            if location_code and held and target_state in (Q.SHIPPED, Q.COLLECTED):
                uow.inventory.consume(
                    [StockLine(sku, location_code, quantity)],
                    at=at,
                    reference=f"order {order.order_number}",
                )
            elif location_code and held and target_state in (Q.OPEN, Q.CANCELLED):
                self._free(
                    uow,
                    [Freed(line_no, sku, location_code, quantity)],
                    at=at,
                    reason=f"order {order.order_number}: {target_state}",
                )
                if target_state is Q.OPEN:
                    self._resource(
                        uow, order, [line_no], at=at, actor=principal.actor, trigger="short_pick"
                    )
            return order

        moved = self._change(order_id, work)
        if declined:
            raise PaymentRefusedAtCollection(
                f"order {moved.order_number}: the payment at collection was refused "
                f"({declined[0].decline_code}); the order is on a payment hold",
                decline_code=declined[0].decline_code,
            )
        return moved

    # -- backorders ------------------------------------------------------------------------------

    def allocate_waiting_backorders(self, skus: Sequence[str] | None = None) -> int:
        """Allocate waiting lines of these SKUs (default: every SKU with backorders), one unit of
        work per SKU; returns how many lines received stock. The worker runs it as a safety net
        for receipts whose after-commit hook did not run (a process that died in between)."""
        with self._uow(read_only=True) as uow:
            if skus is None:
                skus = uow.orders.waiting_skus()
            else:
                # A count can raise thousands of SKUs, of which few, if any, have backorders:
                # the SKUs that wait are read first (one read, usually short); only when more
                # SKUs wait than were raised are the raised ones looked up, a thousand a read.
                given = sorted(set(skus))
                waiting = uow.orders.waiting_skus(limit=len(given) + 1)
                if len(waiting) <= len(given):
                    skus = sorted(set(waiting).intersection(given))
                else:
                    skus = [
                        sku
                        for start in range(0, len(given), 1000)
                        for sku in sorted(
                            uow.orders.waiting_quantities(given[start : start + 1000])
                        )
                    ]
        return sum(len(self.allocate_backorders(sku)) for sku in skus)

    def allocate_backorders(
        self, sku: str, *, principal: Principal = SYSTEM
    ) -> list[dict[str, Any]]:
        """Supply arrived for ``sku``: allocate the waiting lines first come first served (oldest
        order first) and give those still waiting a new expected date. Call it after receipts."""
        with self._uow() as uow:
            at = self._clock.now()
            waiting = uow.orders.waiting_lines(sku)
            if not waiting:
                return []
            loaded: dict[str, Order] = {}
            wanted: list[tuple[OrderLine, int]] = []
            owners: list[tuple[Order, OrderLine]] = []
            for entry in waiting:
                order = loaded.get(entry.order_id)
                if order is None:
                    order = self._load(uow, entry.order_id, for_update=True)
                    loaded[entry.order_id] = order
                line = order.line(entry.line_no)
                if line.quantity_in(Q.BACKORDERED) == 0:
                    continue
                # line numbers repeat across orders: number the waiting lines 0.. for the plan
                wanted.append(
                    (
                        dataclasses.replace(line, line_no=len(owners)),
                        line.quantity_in(Q.BACKORDERED),
                    )
                )
                owners.append((order, line))
            items = uow.items.get_many([sku])
            locations = uow.locations.list()
            plan = self._source_lines(
                uow,
                wanted,
                channel=None,
                items=items,
                locations=locations,
                at=at,
                already_waiting={},
                first_come_first_served=True,
            )
            allocations: list[dict[str, Any]] = []
            stock: dict[tuple[str, str], int] = {}
            for index, location_code, quantity in plan.allocations:
                order, line = owners[index]
                order.allocate_backordered(
                    line.line_no,
                    location_code=location_code,
                    quantity=quantity,
                    actor=principal.actor,
                    at=at,
                )
                stock[(line.sku, location_code)] = (
                    stock.get((line.sku, location_code), 0) + quantity
                )
                allocations.append(
                    {
                        "order_id": order.order_id,
                        "order_number": order.order_number,
                        "line_no": line.line_no,
                        "location_code": location_code,
                        "quantity": quantity,
                    }
                )
            for index, _quantity, expected_on in plan.backorders:
                order, line = owners[index]
                order.repromise(line.line_no, expected_on, actor=principal.actor, at=at)
            if stock:
                uow.inventory.allocate(
                    [StockLine(s, code, q) for (s, code), q in sorted(stock.items())],
                    at=at,
                    reason="backorders allocated",
                )
            allocated = {allocation["order_id"] for allocation in allocations}
            for order in loaded.values():
                if order.events or order.timeline:
                    uow.orders.save(order, at=at)
                    uow.record(*order.events)
                    order.events.clear()
            if self.on_releasable is not None:
                for order in loaded.values():
                    if order.order_id in allocated:
                        self.on_releasable(uow, order, at=at)
            uow.commit()
        return allocations

    # -- payments --------------------------------------------------------------------------------

    def capture_for_shipment(
        self,
        order_id: str,
        shipment_ref: str,
        lines: Sequence[tuple[int, int]] | None = None,
        *,
        amount: Money | None = None,
        principal: Principal = SYSTEM,
    ) -> PaymentOutcome | None:
        """Capture what one shipment carries: ``lines`` as (line number, units) valued at the
        line's price incl. tax (the shipping charge goes with the order's first capture), or an
        explicit ``amount``. An expired authorisation is renewed first (PaymentService). A
        declined or unanswered capture puts the order on a ``payment`` hold and tells customer
        care (the ``payment.declined`` event). Capturing the same shipment again captures only
        what is missing. Returns None when the order has no payments to capture (none given at
        capture, e.g. paid at the till)."""
        if (lines is None) == (amount is None):
            raise Invalid("give the shipped lines or an amount, not both")

        def work(uow: UnitOfWork, order: Order, at: datetime) -> PaymentOutcome | None:
            if self._payments is None or uow.payments.get_order(order.order_number) is None:
                return None
            value = amount
            if value is None:
                assert lines is not None
                exponent = currency_exponent(order.currency)
                shipped = sum(
                    (order.units_value(n, units, exponent=exponent) for n, units in lines),
                    Decimal("0"),
                )
                captured_before = any(  # by another shipment: a retry of this one keeps it
                    t.kind is TransactionKind.CAPTURE and t.shipment_ref != shipment_ref
                    for t in uow.payments.transactions(order.order_number)
                )
                if not captured_before:
                    shipped += order.shipping_charge
                value = Money.of(shipped, order.currency)
            outcome = self._payments.capture(order.order_number, value, shipment_ref, uow=uow)
            if outcome.needs_hold:
                self._payment_hold(
                    order,
                    f"capture of {value} for shipment {shipment_ref} failed: "
                    f"{outcome.decline_code}",
                    actor=principal.actor,
                    at=at,
                )
            return outcome

        return self._change(order_id, work)

    def _tenders(self, order: Order, prefix: str) -> list[Tender]:
        """The order's payment references as tenders: gift cards and store credit pay up to
        their amount, the first card takes the rest, further cards pay their amount."""
        tenders: list[Tender] = []
        open_ended = False
        for index, payment in enumerate(order.payments, start=1):
            try:
                kind = TenderKind(payment.method)
            except ValueError:
                kind = TenderKind.CARD  # "credit_card", "paypal", ...: a token that is charged
            limit = Money.of(payment.amount, order.currency) if payment.amount is not None else None
            if kind is TenderKind.CARD and not open_ended:
                limit, open_ended = None, True
            elif limit is None and not open_ended:
                open_ended = True
            elif limit is None:
                raise Invalid(f"payment {index} needs an amount: another tender takes the rest")
            tenders.append(Tender(f"{prefix}{index}", kind, payment.token, limit))
        return tenders

    def _authorise(self, uow: UnitOfWork, order: Order, *, at: datetime, actor: str) -> None:
        """Authorise the order at capture (reserve-and-collect lines wait for the collection);
        a decline puts the order on a payment hold."""
        if self._payments is None or not order.payments:
            return
        exponent = currency_exponent(order.currency)
        later = sum(
            (
                order.units_value(line.line_no, line.quantity, exponent=exponent)
                for line in order.lines
                if line.delivery.method is DeliveryMethod.RESERVE_AND_COLLECT
            ),
            Decimal("0"),
        )
        value = Money.of(order.total, order.currency) - Money.of(later, order.currency)
        if not value.is_positive():
            return
        try:
            tenders = self._tenders(order, "T")
            outcome = self._payments.authorise(
                order.order_number, tenders, value, customer=order.customer_contact(), uow=uow
            )
            problem = None if outcome.approved else outcome.decline_code
        except Invalid as error:  # tenders that cannot pay the order: it waits for payment
            problem = str(error)
        if problem is not None:
            self._payment_hold(
                order, f"authorisation of {value} failed: {problem}", actor=actor, at=at
            )
            uow.orders.save(order, at=at)

    def collect_payment_in(
        self,
        uow: UnitOfWork,
        order: Order,
        line_no: int,
        quantity: int,
        *,
        at: datetime,
        actor: str,
    ) -> PaymentOutcome | None:
        """Reserve and collect, in the caller's unit of work (fulfillment's hand-over)."""
        return self._collect_payment(uow, order, line_no, quantity, at=at, actor=actor)

    def _collect_payment(
        self,
        uow: UnitOfWork,
        order: Order,
        line_no: int,
        quantity: int,
        *,
        at: datetime,
        actor: str,
    ) -> PaymentOutcome | None:
        """Reserve and collect: authorise the reserved lines when the customer first collects,
        then capture the units handed over."""
        if self._payments is None or not order.payments:
            return None
        exponent = currency_exponent(order.currency)
        stored = uow.payments.get_order(order.order_number)
        reserved = [
            t
            for t in (uow.payments.tenders(order.order_number) if stored else [])
            if t.tender_id.startswith("R")
        ]
        if not reserved:
            value = sum(
                (
                    order.units_value(line.line_no, line.live_quantity, exponent=exponent)
                    for line in order.lines
                    if line.delivery.method is DeliveryMethod.RESERVE_AND_COLLECT
                ),
                Decimal("0"),
            )
            try:
                outcome = self._payments.authorise(
                    order.order_number,
                    self._tenders(order, "R"),
                    Money.of(value, order.currency),
                    customer=order.customer_contact(),
                    uow=uow,
                )
            except Invalid as error:
                outcome = PaymentOutcome(
                    order.order_number,
                    "authorise",
                    PaymentStatus.DECLINED,
                    Money.of(value, order.currency),
                    Money.zero(order.currency),
                    decline_code=str(error),
                )
            if outcome.needs_hold:
                self._payment_hold(
                    order,
                    f"authorisation at collection failed: {outcome.decline_code}",
                    actor=actor,
                    at=at,
                )
                return outcome
        collected = order.line(line_no).quantity_in(Q.COLLECTED)
        outcome = self._payments.capture(
            order.order_number,
            Money.of(order.units_value(line_no, quantity, exponent=exponent), order.currency),
            f"collect-{line_no}-{collected + quantity}",
            uow=uow,
        )
        if outcome.needs_hold:
            self._payment_hold(
                order, f"capture at collection failed: {outcome.decline_code}", actor=actor, at=at
            )
        return outcome

    def _payment_hold(self, order: Order, reason: str, *, actor: str, at: datetime) -> None:
        if any(hold.type is HoldType.PAYMENT for hold in order.active_holds):
            return
        if order.status == "cancelled":
            return
        order.place_hold(
            hold_id=self._ids.new_id(), type=HoldType.PAYMENT, reason=reason, actor=actor, at=at
        )

    @staticmethod
    def _counting_cancelled(
        before: dict[int, int], work: Callable[[UnitOfWork, Order, datetime], T]
    ) -> Callable[[UnitOfWork, Order, datetime], T]:
        """Remember each line's cancelled units before ``work``, for :meth:`_void_cancelled`."""

        def counted(uow: UnitOfWork, order: Order, at: datetime) -> T:
            before.update({line.line_no: line.quantity_in(Q.CANCELLED) for line in order.lines})
            return work(uow, order, at)

        return counted

    def _void_cancelled(self, uow: UnitOfWork, order: Order, before: Mapping[int, int]) -> None:
        """Release the authorisation for what was just cancelled (all that is left when the
        whole order is cancelled); the cancellation email says how much."""
        if self._payments is None or uow.payments.get_order(order.order_number) is None:
            return
        exponent = currency_exponent(order.currency)
        if order.status == "cancelled":
            outcome = self._payments.void_remaining(order.order_number, uow=uow)
        else:
            value = sum(
                (
                    order.units_value(
                        line.line_no,
                        line.quantity_in(Q.CANCELLED) - before.get(line.line_no, 0),
                        exponent=exponent,
                    )
                    for line in order.lines
                    if line.delivery.method is not DeliveryMethod.RESERVE_AND_COLLECT
                ),
                Decimal("0"),
            )
            if value <= 0:
                return
            try:
                outcome = self._payments.void(
                    order.order_number, Money.of(value, order.currency), uow=uow
                )
            except CaptureExceedsAuthorisation:  # less is open (a decline, a capture): all of it
                outcome = self._payments.void_remaining(order.order_number, uow=uow)
        if outcome.processed.is_positive():
            order.events[:] = [
                dataclasses.replace(event, refund_amount=str(outcome.processed.amount))
                if isinstance(event, OrderCancelled)
                else event
                for event in order.events
            ]

    @staticmethod
    def _describe(uow: UnitOfWork, order: Order, items: Mapping[str, Item] | None = None) -> None:
        """Item names into the events customer emails are written from."""
        wanted = [e for e in order.events if isinstance(e, OrderCreated | OrderCancelled)]
        if not wanted:
            return
        if items is None:
            items = uow.items.get_many(sorted({line.sku for line in order.lines}))
        names = {sku: item.name for sku, item in items.items()}

        def described(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{**line, "description": names.get(line["sku"], line["sku"])} for line in lines]

        order.events[:] = [
            dataclasses.replace(event, lines=described(event.lines))
            if isinstance(event, OrderCreated | OrderCancelled)
            else event
            for event in order.events
        ]


def _state(value: QuantityState | str, pointer: str) -> QuantityState:
    try:
        return QuantityState(value)
    except ValueError:
        raise InvalidOrder(
            f"unknown quantity state '{value}'",
            errors=[field_error(pointer, f"one of {', '.join(s.value for s in QuantityState)}")],
        ) from None


def _hold_type(value: HoldType | str) -> HoldType:
    try:
        return HoldType(value)
    except ValueError:
        raise InvalidOrder(
            f"unknown hold type '{value}'",
            errors=[field_error("#/type", f"one of {', '.join(h.value for h in HoldType)}")],
        ) from None


def _clean_customer(customer: Customer) -> Customer:
    """Emails compare case-insensitively and phones without spacing, so search finds them."""
    phone = customer.phone
    if phone:
        phone = "".join(char for char in phone if char.isdigit() or char == "+")
    email = customer.email.strip().lower() if customer.email else None
    return dataclasses.replace(customer, email=email or None, phone=phone or None)


def pickup_problems(
    delivery: Delivery,
    item: Item | None,
    by_code: Mapping[str, Location],
    *,
    pointer: str,
) -> FieldErrors:
    """A line collected at a store needs an active store with the capability for its method."""
    if delivery.method not in AT_STORE or not delivery.pickup_location_code:
        return []
    code = delivery.pickup_location_code
    store = by_code.get(code)
    where = f"{pointer}/pickup_location_code"
    if store is None:
        return [field_error(where, f"unknown location '{code}'")]
    found: FieldErrors = []
    needed = (
        Capability.CURBSIDE if delivery.method is DeliveryMethod.CURBSIDE else Capability.PICKUP
    )
    if not store.can(needed):
        found.append(field_error(where, f"location '{code}' has no '{needed}' capability"))
    if store.status is not LocationStatus.ACTIVE:
        found.append(field_error(where, f"location '{code}' is {store.status}, not active"))
    if item is not None and not item.pickup_allowed:
        found.append(field_error(where, f"'{item.sku}' cannot be collected at a store"))
    return found
