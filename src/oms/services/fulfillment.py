"""Fulfillment execution: the steps a location takes, the order quantities and stock that move
with them, payment per shipment, and the customer notifications.

Every step is one unit of work: the fulfillment, the order (quantities, timeline, events), the
stock, the payment ledger and the process instance (a BPMN message, when the order runs one)
commit together or not at all.

=====================  =======================================  ================================
step                   order quantities                          stock
=====================  =======================================  ================================
release                allocated -> released (one fulfillment   (stays allocated)
                       per order, location and method)
reject                 released -> open, sourced again never    deallocated at the location
                       at this location (nothing: backordered)
pick (short part)      released -> open, sourced elsewhere       deallocated at the location
pick                   released -> picked
ship                   picked -> shipped                         consumed; payment captured
ship (ship_to_store)   (stays picked)                            consumed at the DC, in transit
                                                                 to the store (supply line)
receive                                                          received at the store, held
ready_for_pickup       picked -> ready_for_pickup
hand_over              ready_for_pickup -> collected             consumed; payment captured
cancel_remainder       ready_for_pickup -> cancelled             deallocated (back in ATP)
confirm_delivery       shipped -> delivered
=====================  =======================================  ================================

Units are recorded on the order at the location that was released (for ship-to-store the DC;
the store's stock is what the customer collects).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from oms.domain.access import SYSTEM, Principal
from oms.domain.errors import Forbidden
from oms.domain.fulfillment import (
    FINISHED,
    OPEN_STATES,
    Fulfillment,
    FulfillmentLine,
    FulfillmentNotFound,
    FulfillmentPickupReminderDue,
    FulfillmentReadyForPickup,
    FulfillmentShipped,
    FulfillmentStatus,
    FulfillmentStepRefused,
    InvalidFulfillmentStep,
    Package,
)
from oms.domain.inventory import DeltaKind, StockLine, SupplyLine
from oms.domain.invoices import DocumentKind, InvoiceLine
from oms.domain.money import quantize
from oms.domain.orders import DeliveryMethod, HoldType, Order, OrderNotFound
from oms.domain.orders import QuantityState as Q
from oms.domain.payments import Money
from oms.services.invoices import InvoiceService
from oms.services.orders import OrderService, PaymentRefusedAtCollection
from oms.services.payments import PaymentOutcome, PaymentService, PaymentStatus
from oms.services.ports import Clock, DeltaLine, Ids, LineRefusal, UnitOfWork, UnitOfWorkFactory

T = TypeVar("T")
S = FulfillmentStatus
OUTAGE_REJECTS = frozenset({"offline", "closed", "dark"})
"""Location statuses under which released, unpicked work is handed back (dark: walk-in only)."""
WALK_IN_METHODS = frozenset({"pickup", "curbside", "reserve_and_collect"})

PICKUP_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""No 0/O or 1/I: codes are read out at a counter."""


@dataclass(frozen=True)
class PickupPolicy:
    """How long a customer has to collect, and when to remind them."""

    collect_within: timedelta = timedelta(days=7)
    hold_within: timedelta = timedelta(days=3)
    """reserve_and_collect: the hold expires sooner."""
    remind_after: timedelta = timedelta(days=2)


@dataclass(frozen=True)
class DeadlineRun:
    reminded: int
    cancelled: int


class FulfillmentService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        ids: Ids,
        orders: OrderService,
        payments: PaymentService,
        policy: PickupPolicy | None = None,
        invoices: InvoiceService | None = None,
        seller: Mapping[str, str] | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._orders = orders
        self._payments = payments
        self.policy = policy or PickupPolicy()
        self._invoices = invoices
        self._seller = dict(seller or {})
        self.on_step: Callable[[UnitOfWork, str, str, Mapping[str, Any]], None] | None = None
        """Set by bootstrap: hands a finished step (``picked``, ``shipped``, ``checked_in``,
        ``received``, ``collected``, ``delivered``) to the order's process instance, in the
        step's unit of work, after the fulfillment and the order are saved."""
        self._steps: dict[int, list[tuple[str, str, dict[str, Any]]]] = {}
        self._shipping_first: dict[int, dict[str, bool]] = {}
        """Per step in progress (by unit of work): whether a fulfillment carries the shipping
        charge, asked up to four times per shipment (capture, invoice, the process's capture)."""
        self._captured: dict[int, dict[str, str]] = {}
        """Per step in progress (by unit of work): the fulfillments whose handover the step has
        captured in full, with the reference it was captured under. The process's capture of the
        same handover in the same step (``capture_in``) then knows that nothing is missing
        without reading the order's payments again; a nested step forgets it (as above)."""

    # -- release ------------------------------------------------------------------------------

    def released_in(
        self,
        uow: UnitOfWork,
        order: Order,
        releases: Sequence[Mapping[str, Any]],
        *,
        at: datetime,
        actor: str,
    ) -> list[Fulfillment]:
        """Open (or extend) one fulfillment per location and delivery method for what was
        released; called in the releasing unit of work."""
        groups: dict[tuple[str, str, str | None], list[FulfillmentLine]] = {}
        for release in releases:
            line = order.line(int(release["line_no"]))
            method = line.delivery.method.value
            destination = line.delivery.pickup_location_code if method == "ship_to_store" else None
            groups.setdefault((str(release["location_code"]), method, destination), []).append(
                FulfillmentLine(line.line_no, line.sku, int(release["quantity"]))
            )
        existing = uow.fulfillments.for_order(order.order_id)
        touched: list[Fulfillment] = []
        for (location_code, method, destination), lines in sorted(
            groups.items(), key=lambda item: (item[0][0], item[0][1])
        ):
            found = next(
                (
                    f
                    for f in existing
                    if f.location_code == location_code
                    and f.delivery_method == method
                    and f.status in OPEN_STATES
                    and not any(x.pick_confirmed for x in f.lines)
                ),
                None,
            )
            if found is not None:
                found.add_released(lines, at=at, actor=actor)
                uow.fulfillments.save(found)
                fulfillment = found
            else:
                fulfillment = Fulfillment.release(
                    id=self._ids.new_id(),
                    order_id=order.order_id,
                    order_number=order.order_number,
                    location_code=location_code,
                    delivery_method=method,
                    lines=lines,
                    at=at,
                    actor=actor,
                    destination_code=destination,
                    purchase_order=(
                        f"PO-{order.order_number}-{location_code}" if method == "dropship" else None
                    ),
                )
                uow.fulfillments.add(fulfillment)
            uow.record(*fulfillment.events)
            fulfillment.events.clear()
            touched.append(fulfillment)
        return touched

    def release(self, order_id: str, *, principal: Principal = SYSTEM) -> list[Fulfillment]:
        """Release an order's allocated units (the same as ``POST /orders/{id}/release``)."""
        self._orders.release(order_id, principal=principal)
        return self.for_order(order_id, principal=principal)

    # -- reads --------------------------------------------------------------------------------

    def get(self, fulfillment_id: str, *, principal: Principal = SYSTEM) -> Fulfillment:
        with self._uow(read_only=True) as uow:
            fulfillment = self._require(uow, fulfillment_id)
        _may_see(principal, fulfillment)
        return fulfillment

    def for_order(self, order_id: str, *, principal: Principal = SYSTEM) -> list[Fulfillment]:
        with self._uow(read_only=True) as uow:
            found = uow.fulfillments.for_order(order_id)
        return [f for f in found if _visible(principal, f)]

    def find(
        self,
        *,
        location_code: str | None = None,
        status: str | None = None,
        order_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
        principal: Principal = SYSTEM,
    ) -> list[Fulfillment]:
        codes: list[str] | None = None
        if location_code:
            principal.require_location(location_code)
            codes = [location_code]
        elif principal.is_location_bound:
            codes = sorted(principal.location_codes)
        if status:
            S(status)  # a clear 422 from the router's enum; here: ValueError guards misuse
        with self._uow(read_only=True) as uow:
            return uow.fulfillments.list(
                location_codes=codes, status=status, order_id=order_id, after=after, limit=limit
            )

    # -- steps --------------------------------------------------------------------------------

    def _run(
        self,
        fulfillment_id: str,
        principal: Principal,
        work: Callable[[UnitOfWork, Fulfillment, Order, datetime], T],
        *,
        at_handover: bool = False,
        uow: UnitOfWork | None = None,
    ) -> T:
        if uow is not None:
            return self._run_in(uow, fulfillment_id, principal, work, at_handover=at_handover)
        with self._uow() as unit:
            result = self._run_in(unit, fulfillment_id, principal, work, at_handover=at_handover)
            unit.commit()
        return result

    def _run_in(
        self,
        uow: UnitOfWork,
        fulfillment_id: str,
        principal: Principal,
        work: Callable[[UnitOfWork, Fulfillment, Order, datetime], T],
        *,
        at_handover: bool,
    ) -> T:
        fulfillment = self._require(uow, fulfillment_id, for_update=True)
        principal.require_location(
            fulfillment.handover_location if at_handover else fulfillment.location_code
        )
        order = uow.orders.get(fulfillment.order_id, for_update=True)
        if order is None:
            raise OrderNotFound(f"no order '{fulfillment.order_id}'")
        at = self._clock.now()
        self._steps[id(uow)] = []
        # a step may run inside another's (an activity of its process): what the outer step
        # learnt may change with it, so the memo starts afresh at both ends of each step
        outermost = id(uow) not in self._shipping_first
        self._shipping_first.setdefault(id(uow), {}).clear()
        self._captured.setdefault(id(uow), {}).clear()
        try:
            try:
                result = work(uow, fulfillment, order, at)
                uow.fulfillments.save(fulfillment)
                uow.record(*fulfillment.events)
                fulfillment.events.clear()
                uow.orders.save(order, at=at)
                uow.record(*order.events)
                order.events.clear()
                steps = self._steps.get(id(uow), [])
            finally:
                self._steps.pop(id(uow), None)
            if self.on_step is not None:
                for step, order_id, payload in steps:
                    self.on_step(uow, step, order_id, payload)
        finally:
            if outermost:
                self._shipping_first.pop(id(uow), None)
                self._captured.pop(id(uow), None)
            else:
                self._shipping_first[id(uow)].clear()
                self._captured[id(uow)].clear()
        return result

    @staticmethod
    def _require(uow: UnitOfWork, fulfillment_id: str, *, for_update: bool = False) -> Fulfillment:
        fulfillment = uow.fulfillments.get(fulfillment_id, for_update=for_update)
        if fulfillment is None:
            raise FulfillmentNotFound(
                f"no fulfillment '{fulfillment_id}'", fulfillment_id=fulfillment_id
            )
        return fulfillment

    def _message(
        self, uow: UnitOfWork, message: str, order: Order, payload: dict[str, Any]
    ) -> None:
        """Queue a step for the order's process; sent once the step's rows are saved."""
        self._steps.setdefault(id(uow), []).append((message, order.order_id, payload))

    def acknowledge(self, fulfillment_id: str, *, principal: Principal = SYSTEM) -> Fulfillment:
        def work(uow: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> Fulfillment:
            f.acknowledge(at=at, actor=principal.actor)
            return f

        return self._run(fulfillment_id, principal, work)

    def reject(
        self, fulfillment_id: str, reason: str, *, principal: Principal = SYSTEM
    ) -> Fulfillment:
        """The location cannot fulfil: its units are sourced again without it (backordered
        when no other location can serve them), and what was found elsewhere is released."""

        def work(uow: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> Fulfillment:
            given_back = f.reject(reason, at=at, actor=principal.actor)
            self._give_back(
                uow,
                order,
                f,
                [(line_no, sku, q) for line_no, sku, q in given_back],
                source=Q.RELEASED,
                at=at,
                actor=principal.actor,
                reason=f"rejected by {f.location_code}: {reason}",
                trigger="rejection",
            )
            return f

        return self._run(fulfillment_id, principal, work)

    def location_changed(self, code: str, old: str, new: str) -> list[str]:
        """A location that goes ``offline`` or ``closed`` will not fulfil what it was released
        and has not started picking: each such fulfillment is rejected on its behalf, so its
        units are sourced again without it (backordered when nothing else can serve them). A
        store gone ``dark`` keeps its shipping work and gives up only walk-in collections.
        Fulfillments with picks confirmed stay: the goods are in the building. Returns the
        ids of the fulfillments rejected."""
        if new not in OUTAGE_REJECTS:
            return []
        methods = WALK_IN_METHODS if new == "dark" else None
        waiting: list[str] = []
        with self._uow(read_only=True) as uow:
            for status in sorted(OPEN_STATES):
                after: str | None = None
                while True:
                    page = uow.fulfillments.list(
                        location_codes=[code], status=status.value, after=after, limit=500
                    )
                    waiting.extend(
                        f.id
                        for f in page
                        if f.location_code == code
                        and (methods is None or f.delivery_method in methods)
                        and not any(line.picked or line.short for line in f.lines)
                    )
                    if len(page) < 500:
                        break
                    after = page[-1].id
        rejected = []
        for fulfillment_id in sorted(waiting):
            try:
                self.reject(fulfillment_id, f"location {code} went {new}")
            except (FulfillmentStepRefused, InvalidFulfillmentStep):
                continue  # it moved on meanwhile (picked, cancelled): nothing to take back
            rejected.append(fulfillment_id)
        return rejected

    def confirm_pick(
        self,
        fulfillment_id: str,
        line_no: int,
        picked: int,
        *,
        reason: str | None = None,
        principal: Principal = SYSTEM,
    ) -> Fulfillment:
        """Confirm a line's pick: ``picked`` units found, the rest short (sourced elsewhere)."""

        def work(uow: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> Fulfillment:
            line = f.line(line_no)
            short = f.confirm_pick(line_no, picked, at=at, actor=principal.actor, reason=reason)
            if picked:
                order.move_quantity(
                    line_no,
                    picked,
                    source=Q.RELEASED,
                    target=Q.PICKED,
                    location_code=f.location_code,
                    actor=principal.actor,
                    at=at,
                )
            if short:
                self._give_back(
                    uow,
                    order,
                    f,
                    [(line_no, line.sku, short)],
                    source=Q.RELEASED,
                    at=at,
                    actor=principal.actor,
                    reason=f"short pick at {f.location_code}" + (f": {reason}" if reason else ""),
                    trigger="short_pick",
                )
            if f.status is S.PICKED:
                picked_total = sum(x.picked for x in f.lines)
                self._message(
                    uow, "picked", order, {"fulfillment_id": f.id, "picked_quantity": picked_total}
                )
            return f

        return self._run(fulfillment_id, principal, work)

    def _give_back(
        self,
        uow: UnitOfWork,
        order: Order,
        f: Fulfillment,
        lines: Sequence[tuple[int, str, int]],
        *,
        source: Q,
        at: datetime,
        actor: str,
        reason: str,
        trigger: str,
    ) -> None:
        """Units the location will not send (``trigger``: "rejection" or "short_pick") go back to
        open, its stock is freed, and they are sourced again without it."""
        for line_no, _sku, quantity in lines:
            order.move_quantity(
                line_no,
                quantity,
                source=source,
                target=Q.OPEN,
                location_code=f.location_code,
                actor=actor,
                reason=reason,
                at=at,
            )
        uow.inventory.deallocate(
            _stock(f.location_code, [(sku, q) for _n, sku, q in lines]), at=at, reason=reason
        )
        line_nos = {line_no for line_no, _s, _q in lines}
        # Remember the refusal for good: the sourcing engine and later re-plans (an outage, a
        # change) read these and never send the line back to this location.
        for line_no, _sku, quantity in lines:
            uow.order_refusals.add(
                LineRefusal(
                    order_id=order.order_id,
                    line_no=line_no,
                    location_code=f.location_code,
                    quantity=quantity,
                    reason=reason,
                    trigger=trigger,
                    refused_at=at,
                )
            )
        # never back to a location that already rejected or was short on these lines
        exclude = {f.location_code} | {
            other.location_code
            for other in uow.fulfillments.for_order(order.order_id)
            if any(
                x.line_no in line_nos and (other.status is S.REJECTED or x.short)
                for x in other.lines
            )
        }
        self._orders.resource_in(
            uow,
            order,
            sorted(line_nos),
            at=at,
            actor=actor,
            exclude=sorted(exclude),
            trigger=trigger,
        )
        if order.by_state().get(Q.ALLOCATED, 0) and not order.on_hold:
            self._orders.release_in(uow, order, at=at, actor=actor)

    def pack(
        self, fulfillment_id: str, packages: Sequence[Package], *, principal: Principal = SYSTEM
    ) -> Fulfillment:
        def work(uow: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> Fulfillment:
            f.pack(list(packages), at=at, actor=principal.actor)
            return f

        return self._run(fulfillment_id, principal, work)

    def ship(
        self,
        fulfillment_id: str,
        *,
        carrier: str,
        service: str,
        tracking: Mapping[str, str],
        expected_on: date | None = None,
        principal: Principal = SYSTEM,
    ) -> Fulfillment:
        """Hand the packed packages to the carrier. Consumes the stock, moves the units to
        shipped and captures the shipped amount; a ship-to-store transfer goes in transit."""

        def work(uow: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> Fulfillment:
            shipment_id = shipment_ref(f)
            f.ship(
                carrier=carrier,
                service=service,
                tracking=dict(tracking),
                shipment_id=shipment_id,
                at=at,
                actor=principal.actor,
            )
            picked = [(x.sku, x.picked) for x in f.picked_lines()]
            uow.inventory.consume(
                _stock(f.location_code, picked),
                at=at,
                reference=f"{order.order_number}/{shipment_id}",
            )
            if f.delivery_method == "ship_to_store":
                uow.inventory.add_supply(
                    [
                        SupplyLine(
                            reference=shipment_id,
                            kind="transfer",
                            sku=sku,
                            location_code=f.destination_code or "",
                            quantity=quantity,
                            expected_on=expected_on or (at + timedelta(days=2)).date(),
                            status="in_transit",
                        )
                        for sku, quantity in _merged(picked)
                    ],
                    at=at,
                )
                return f
            for line in f.picked_lines():
                order.move_quantity(
                    line.line_no,
                    line.picked,
                    source=Q.PICKED,
                    target=Q.SHIPPED,
                    location_code=f.location_code,
                    actor=principal.actor,
                    at=at,
                )
            numbers = [p.tracking_number or "" for p in f.packages]
            described = self._described(uow, f)
            uow.record(
                FulfillmentShipped(
                    fulfillment_id=f.id,
                    order_id=order.order_id,
                    order_number=order.order_number,
                    location_code=f.location_code,
                    customer=_customer(order),
                    shipment_id=shipment_id,
                    carrier=carrier,
                    service=service,
                    tracking_number=", ".join(numbers),
                    tracking_url=None,
                    packages=[p.describe() for p in f.packages],
                    lines=described,
                    expected_on=expected_on.isoformat() if expected_on else None,
                )
            )
            self._capture(uow, order, f, shipment_id)
            self._issue_document(
                uow, order, f, shipment_id, DocumentKind.INVOICE, described=described
            )
            self._message(
                uow,
                "shipped",
                order,
                {"fulfillment_id": f.id, "carrier": carrier, "tracking_numbers": numbers},
            )
            return f

        return self._run(fulfillment_id, principal, work)

    def receive(self, fulfillment_id: str, *, principal: Principal = SYSTEM) -> Fulfillment:
        """Ship-to-store: the store received the transfer; the units are held for the customer."""

        def work(uow: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> Fulfillment:
            f.receive(at=at, actor=principal.actor)
            store = f.handover_location
            picked = _merged([(x.sku, x.picked) for x in f.picked_lines()])
            uow.inventory.apply_deltas(
                [
                    DeltaLine(
                        source="transfer",
                        message_id=f"{f.transfer_id}:{sku}",
                        sku=sku,
                        location_code=store,
                        kind=DeltaKind.RECEIPT,
                        quantity=quantity,
                        occurred_at=at,
                        reason=f"transfer {f.transfer_id} for order {order.order_number}",
                    )
                    for sku, quantity in picked
                ],
                at=at,
            )
            # the transfer's units are this customer's: the store's safety stock does not apply
            uow.inventory.allocate(
                _stock(store, picked), at=at, reason=f"order {order.order_number}", earmarked=True
            )
            uow.inventory.add_supply(
                [
                    SupplyLine(
                        reference=f.transfer_id or "",
                        kind="transfer",
                        sku=sku,
                        location_code=store,
                        quantity=quantity,
                        expected_on=at.date(),
                        status="received",
                    )
                    for sku, quantity in picked
                ],
                at=at,
            )
            self._message(uow, "received", order, {"fulfillment_id": f.id})
            return f

        return self._run(fulfillment_id, principal, work, at_handover=True)

    def confirm_delivery(
        self, fulfillment_id: str, *, principal: Principal = SYSTEM
    ) -> Fulfillment:
        def work(uow: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> Fulfillment:
            f.confirm_delivery(at=at, actor=principal.actor)
            for line in f.picked_lines():
                order.move_quantity(
                    line.line_no,
                    line.picked,
                    source=Q.SHIPPED,
                    target=Q.DELIVERED,
                    location_code=f.location_code,
                    actor=principal.actor,
                    at=at,
                )
            self._message(uow, "delivered", order, {"fulfillment_id": f.id})
            return f

        return self._run(fulfillment_id, principal, work)

    def ready_for_pickup(
        self, fulfillment_id: str, *, principal: Principal = SYSTEM
    ) -> Fulfillment:
        """Picked (or received) and staged: the customer gets a pickup code by email."""

        def work(uow: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> Fulfillment:
            within = (
                self.policy.hold_within
                if f.delivery_method == "reserve_and_collect"
                else self.policy.collect_within
            )
            code = "".join(secrets.choice(PICKUP_CODE_ALPHABET) for _ in range(6))
            f.ready_for_pickup(
                pickup_code=code, collect_by=at + within, at=at, actor=principal.actor
            )
            for line in f.picked_lines():
                order.move_quantity(
                    line.line_no,
                    line.picked,
                    source=Q.PICKED,
                    target=Q.READY_FOR_PICKUP,
                    location_code=f.location_code,
                    actor=principal.actor,
                    at=at,
                )
            uow.record(
                FulfillmentReadyForPickup(
                    fulfillment_id=f.id,
                    order_id=order.order_id,
                    order_number=order.order_number,
                    location_code=f.location_code,
                    customer=_customer(order),
                    pickup_code=code,
                    collect_by=at + within,
                    location=_location(uow, f.handover_location),
                    lines=self._described(uow, f),
                )
            )
            return f

        return self._run(fulfillment_id, principal, work, at_handover=True)

    def check_in(
        self, fulfillment_id: str, details: Mapping[str, Any], *, principal: Principal = SYSTEM
    ) -> Fulfillment:
        """Curbside: the customer arrived (bay, car)."""

        def work(uow: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> Fulfillment:
            f.check_in(dict(details), at=at, actor=principal.actor)
            self._message(uow, "checked_in", order, {"fulfillment_id": f.id, **dict(details)})
            return f

        return self._run(fulfillment_id, principal, work, at_handover=True)

    def hand_over(
        self,
        fulfillment_id: str,
        *,
        pickup_code: str | None = None,
        override_reason: str | None = None,
        principal: Principal = SYSTEM,
    ) -> Fulfillment:
        """Give the goods to the customer with the right code (or an associate's override with
        a reason): stock consumed, payment captured, units collected. Reserve and collect pays
        now: the authorisation and capture happen here; a refused payment puts the order on a
        payment hold (committed) and the goods stay ready for pickup (409)."""
        refused: list[PaymentOutcome] = []

        def work(uow: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> Fulfillment:
            pays_now = f.delivery_method == DeliveryMethod.RESERVE_AND_COLLECT.value
            if pays_now:
                for line in f.picked_lines():
                    outcome = self._orders.collect_payment_in(
                        uow, order, line.line_no, line.picked, at=at, actor=principal.actor
                    )
                    if outcome is not None and outcome.needs_hold:
                        refused.append(outcome)
                        return f  # the hold commits; nothing is handed over
            f.hand_over(
                pickup_code=pickup_code,
                override_reason=override_reason,
                at=at,
                actor=principal.actor,
            )
            picked = _merged([(x.sku, x.picked) for x in f.picked_lines()])
            uow.inventory.consume(
                _stock(f.handover_location, picked),
                at=at,
                reference=f"{order.order_number}/collected",
            )
            for line in f.picked_lines():
                order.move_quantity(
                    line.line_no,
                    line.picked,
                    source=Q.READY_FOR_PICKUP,
                    target=Q.COLLECTED,
                    location_code=f.location_code,
                    actor=principal.actor,
                    reason=f"override: {override_reason}" if override_reason else None,
                    at=at,
                )
            if not pays_now:  # reserve and collect was captured line by line above
                self._capture(uow, order, f, collection_ref(f))
            self._issue_document(uow, order, f, collection_ref(f), DocumentKind.RECEIPT)
            self._message(
                uow,
                "collected",
                order,
                {
                    "fulfillment_id": f.id,
                    "pickup_code": pickup_code or f"override: {override_reason}",
                    "payment_reference": collection_ref(f),
                },
            )
            return f

        handed = self._run(fulfillment_id, principal, work, at_handover=True)
        if refused:
            raise PaymentRefusedAtCollection(
                f"fulfillment {fulfillment_id}: the payment at collection was refused "
                f"({refused[0].decline_code}); the order is on a payment hold",
                decline_code=refused[0].decline_code,
            )
        return handed

    def cancel_remainder(
        self,
        fulfillment_id: str,
        reason: str,
        *,
        principal: Principal = SYSTEM,
        uow: UnitOfWork | None = None,
    ) -> Fulfillment:
        """Not collected in time: the units are cancelled and go back on the shelf (ATP)."""

        def work(unit: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> Fulfillment:
            before = f.status
            lines = f.cancel_remainder(reason, at=at, actor=principal.actor)
            state = Q.PICKED if before in (S.PICKED, S.RECEIVED) else Q.READY_FOR_PICKUP
            for line in lines:
                order.move_quantity(
                    line.line_no,
                    line.picked,
                    source=state,
                    target=Q.CANCELLED,
                    location_code=f.location_code,
                    actor=principal.actor,
                    reason=reason,
                    at=at,
                )
            stock_at = f.location_code if before is S.PICKED else f.handover_location
            unit.inventory.deallocate(
                _stock(stock_at, _merged([(x.sku, x.picked) for x in lines])),
                at=at,
                reason=f"order {order.order_number}: {reason}",
            )
            amount = self._amount(order, f)
            if amount is not None and unit.payments.get_order(order.order_number) is not None:
                self._payments.void(order.order_number, amount, uow=unit)
            return f

        return self._run(fulfillment_id, principal, work, at_handover=True, uow=uow)

    # -- deadlines (the worker) ---------------------------------------------------------------

    def run_pickup_deadlines(self, *, limit: int = 100) -> DeadlineRun:
        """For orders without a process: remind customers who have not collected after
        ``remind_after``; cancel and restock what is still uncollected at its ``collect_by``.
        Each fulfillment in its own unit of work."""
        now = self._clock.now()
        with self._uow(read_only=True) as uow:
            # orders run by a BPMN process get their reminders and expiry from its timers
            waiting = [
                f
                for status in (S.READY_FOR_PICKUP, S.CHECKED_IN)
                for f in uow.fulfillments.list(status=status.value, limit=limit)
                if not uow.processes.running_instances(f.order_id)
            ]
        reminded = cancelled = 0
        for candidate in waiting:
            if candidate.collect_by is not None and candidate.collect_by <= now:
                self.cancel_remainder(candidate.id, "not_collected")
                cancelled += 1
                continue
            ready_at = next(
                (
                    datetime.fromisoformat(step["at"])
                    for step in candidate.history
                    if step["step"] == "ready_for_pickup"
                ),
                None,
            )
            already = any(step["step"] == "pickup_reminder" for step in candidate.history)
            if ready_at is None or already or now - ready_at < self.policy.remind_after:
                continue

            self.remind(candidate.id)
            reminded += 1
        return DeadlineRun(reminded=reminded, cancelled=cancelled)

    def remind(self, fulfillment_id: str, *, uow: UnitOfWork | None = None) -> bool:
        """Remind the customer of an uncollected pickup, once; whether a reminder went out."""

        def remind(unit: UnitOfWork, f: Fulfillment, order: Order, at: datetime) -> bool:
            if f.status not in (S.READY_FOR_PICKUP, S.CHECKED_IN) or any(
                step["step"] == "pickup_reminder" for step in f.history
            ):
                return False
            f.history.append({"at": at.isoformat(), "actor": "worker", "step": "pickup_reminder"})
            f.updated_at = at
            unit.record(
                FulfillmentPickupReminderDue(
                    fulfillment_id=f.id,
                    order_id=order.order_id,
                    order_number=order.order_number,
                    location_code=f.location_code,
                    customer=_customer(order),
                    pickup_code=f.pickup_code or "",
                    collect_by=f.collect_by or at,
                    location=_location(unit, f.handover_location),
                )
            )
            return True

        return self._run(fulfillment_id, SYSTEM, remind, at_handover=True, uow=uow)

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _described(uow: UnitOfWork, f: Fulfillment) -> list[dict[str, Any]]:
        items = uow.items.get_many(sorted({line.sku for line in f.lines}))
        return [
            {
                "line_no": line.line_no,
                "sku": line.sku,
                "description": items[line.sku].name if line.sku in items else line.sku,
                "quantity": line.picked,
            }
            for line in f.picked_lines()
        ]

    @staticmethod
    def _amount(order: Order, f: Fulfillment) -> Money | None:
        """What the customer pays for the units of this fulfillment (shipping with the first)."""
        total = Decimal("0")
        for line in f.picked_lines():
            ordered = order.line(line.line_no)
            share = Decimal(line.picked) / Decimal(ordered.quantity)
            total += ordered.amount * share
        amount = quantize(total, order.currency)
        if amount <= 0:
            return None
        return Money.of(amount, order.currency)

    def _carries_shipping(self, uow: UnitOfWork, order: Order, f: Fulfillment) -> bool:
        """The shipping charge goes with the order's first fulfillment that hands anything over
        (a fixed choice, so that capturing the same shipment again asks the same amount)."""
        known = self._shipping_first.get(id(uow))
        if known is not None and f.id in known:
            return known[f.id]
        carries = self._first_live(uow, order, f)
        if known is not None:
            known[f.id] = carries
        return carries

    @staticmethod
    def _first_live(uow: UnitOfWork, order: Order, f: Fulfillment) -> bool:
        if order.shipping_charge <= 0:  # nothing to carry: no need to read the others
            return False
        live = [
            other
            for other in uow.fulfillments.for_order(order.order_id)
            if other.status not in (S.REJECTED, S.CANCELLED)
        ]
        return bool(live) and min(live, key=lambda x: (x.created_at, x.id)).id == f.id

    def _charge(self, uow: UnitOfWork, order: Order, f: Fulfillment) -> Money | None:
        """What is captured for this fulfillment: its units, plus shipping on the first."""
        amount = self._amount(order, f)
        if amount is None:
            return None
        if self._carries_shipping(uow, order, f):
            amount = Money.of(amount.amount + order.shipping_charge, order.currency)
        return amount

    def _issue_document(
        self,
        uow: UnitOfWork,
        order: Order,
        f: Fulfillment,
        ref: str,
        kind: DocumentKind,
        *,
        described: list[dict[str, Any]] | None = None,
    ) -> None:
        """The invoice (shipment) or receipt (collection) of what left, in the step's unit of
        work, keyed by the order number (as the payments are) and the shipment reference;
        issuing it again returns the same document. Its gross total is exactly ``_charge``."""
        if self._invoices is None:
            return
        charged = self._charge(uow, order, f)
        if charged is None:
            return
        lines = self._invoice_lines(uow, order, f, charged, described)
        self._invoices.issue(
            order.order_number,
            ref,
            currency=order.currency,
            lines=lines,
            seller=self._seller,
            bill_to=_bill_to(order),
            prices_include_tax=False,
            kind=kind,
            uow=uow,
        )

    def _invoice_lines(
        self,
        uow: UnitOfWork,
        order: Order,
        f: Fulfillment,
        charged: Money,
        described: list[dict[str, Any]] | None = None,
    ) -> list[InvoiceLine]:
        """One invoice line per picked line: the shipped share of the order line's absolute
        discount and tax, each rounded to the minor unit; the rounding difference against what
        was charged (at most a few minor units, from partial shipments) goes on the tax of the last
        line shipped in part (or its discount when the tax cannot absorb it), so the document
        adds up exactly to the capture."""
        currency = order.currency
        descriptions = {
            d["line_no"]: d["description"] for d in described or self._described(uow, f)
        }
        parts: list[tuple[int, str, str, int, Decimal, Decimal, Decimal]] = []
        for line in f.picked_lines():
            ordered = order.line(line.line_no)
            share = Decimal(line.picked) / Decimal(ordered.quantity)
            parts.append(
                (
                    line.line_no,
                    line.sku,
                    str(descriptions.get(line.line_no, line.sku)),
                    line.picked,
                    ordered.unit_price,
                    quantize(ordered.discount * share, currency),
                    quantize(ordered.tax * share, currency),
                )
            )
        shipping = order.shipping_charge if self._carries_shipping(uow, order, f) else Decimal(0)
        stated = sum((q * p - d + t for _, _, _, q, p, d, t in parts), Decimal(0)) + shipping
        residual = charged.amount - stated
        if residual and parts:
            # only a line shipped in part rounds: the cent goes on the last such line
            partial = [i for i, part in enumerate(parts) if part[3] != order.line(part[0]).quantity]
            at = partial[-1] if partial else len(parts) - 1
            no, sku, text, q, p, d, t = parts[at]
            if t + residual >= 0:
                t += residual
            else:
                d -= residual
            parts[at] = (no, sku, text, q, p, d, t)
        lines = [
            InvoiceLine(
                sku,
                text,
                q,
                Money.of(p, currency),
                tax_amount=Money.of(t, currency),
                discount=Money.of(d, currency) if d else None,
            )
            for _, sku, text, q, p, d, t in parts
        ]
        if shipping:
            lines.append(
                InvoiceLine(
                    "SHIPPING",
                    "Shipping",
                    1,
                    Money.of(shipping, currency),
                    tax_amount=Money.zero(currency),
                )
            )
        return lines

    def capture_in(
        self, uow: UnitOfWork, order: Order, f: Fulfillment, *, hold: bool = False
    ) -> str | None:
        """Capture what this fulfillment handed over (again: only what is missing, so nothing
        twice); the outcome's status, or None without a payment or anything handed over."""
        if f.status in (S.SHIPPED, S.DELIVERED):
            ref = shipment_ref(f)
        elif f.status is S.COLLECTED:
            ref = collection_ref(f)
        else:
            return None
        if self._captured.get(id(uow), {}).get(f.id) == ref:
            return str(PaymentStatus.APPROVED)  # what capturing it again answers
        return self._capture(uow, order, f, ref, hold=hold)

    def captured_in_step(self, uow: UnitOfWork, fulfillment_id: str) -> str | None:
        """The status ``capture_in`` answers for this fulfillment when the step running in
        ``uow`` has just captured its handover in full (``approved``: nothing is missing);
        None when it has not (then call ``capture_in``)."""
        if fulfillment_id in self._captured.get(id(uow), {}):
            return str(PaymentStatus.APPROVED)
        return None

    def _capture(
        self, uow: UnitOfWork, order: Order, f: Fulfillment, ref: str, *, hold: bool = True
    ) -> str | None:
        """Capture the amount of what left the building, when the order has a payment."""
        amount = self._charge(uow, order, f)
        if amount is None:
            return None
        # Payments are kept under the order number (see OrderService._authorise); an order
        # without any (paid otherwise) has nothing to capture.
        outcome = self._payments.capture_if_paid(order.order_number, amount, ref, uow=uow)
        if outcome is None:
            return None
        captured = self._captured.get(id(uow))
        if captured is not None and outcome.approved:  # approved: all of the amount
            captured[f.id] = ref
        if (
            hold
            and outcome.needs_hold
            and not any(h.type is HoldType.PAYMENT for h in order.active_holds)
        ):
            order.place_hold(
                hold_id=self._ids.new_id(),
                type=HoldType.PAYMENT,
                reason=f"capture of {ref} {outcome.status}",
                actor="fulfillment",
                at=self._clock.now(),
            )
        return str(outcome.status)


def shipment_ref(f: Fulfillment) -> str:
    """The payment and invoice reference of a shipment: the whole fulfillment id. A prefix of
    it is not unique: ids are time-ordered, and two fulfillments of one order made in the same
    millisecond share their first twelve characters (the second capture was then refused as
    'already captured')."""
    return f"SHP-{f.id}"


def collection_ref(f: Fulfillment) -> str:
    return f"COL-{f.id}"


def _stock(location_code: str, lines: Sequence[tuple[str, int]]) -> list[StockLine]:
    return [StockLine(sku, location_code, quantity) for sku, quantity in _merged(lines) if quantity]


def _merged(lines: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    totals: dict[str, int] = {}
    for sku, quantity in lines:
        totals[sku] = totals.get(sku, 0) + quantity
    return sorted((sku, q) for sku, q in totals.items() if q > 0)


def _customer(order: Order) -> dict[str, Any]:
    return {"email": order.customer.email, "name": order.customer.name}


def _bill_to(order: Order) -> dict[str, str]:
    """The customer, and the first delivery address of the order when it has one."""
    found: dict[str, str] = {}
    customer = order.customer
    for key, value in (("name", customer.name), ("email", customer.email)):
        if value:
            found[key] = value
    address = next((x.delivery.address for x in order.lines if x.delivery.address), None)
    if address is not None:
        if "name" not in found:
            found["name"] = address.name
        found["address"] = ", ".join(
            v for v in (address.line1, address.line2, address.postal_code, address.city) if v
        )
        found["country"] = address.country
    if not found and customer.customer_id:
        found["customer_id"] = customer.customer_id
    return found


def _location(uow: UnitOfWork, code: str) -> dict[str, Any]:
    found = uow.locations.get_many([code]).get(code)
    if found is None:
        return {"code": code, "name": code, "address": None}
    address = ", ".join(str(v) for v in found.address.values() if v) or None
    return {"code": code, "name": found.name, "address": address}


def _visible(principal: Principal, f: Fulfillment) -> bool:
    return principal.can_access_location(f.location_code) or (
        f.destination_code is not None and principal.can_access_location(f.destination_code)
    )


def _may_see(principal: Principal, f: Fulfillment) -> None:
    if not _visible(principal, f):
        raise Forbidden(
            f"this key may not see fulfillment {f.id} of location '{f.location_code}'",
            location=f.location_code,
        )


__all__ = ["FINISHED", "DeadlineRun", "FulfillmentService", "PickupPolicy"]
