"""Fulfillments: the work one location does for one order.

A fulfillment is created when allocated units of an order are released to a location (one per
order and location while it is still open). The location (a DC, a 3PL, a store, a vendor) drives
it through the steps of its delivery method; every step checks the current state and records an
event. Quantities on the order move in step (see :mod:`oms.services.fulfillment`).

========================  ============================================================
method                    steps
========================  ============================================================
ship, dropship            released -> acknowledged -> picked -> packed -> shipped -> delivered
pickup,                   released -> acknowledged -> picked -> ready_for_pickup -> collected
reserve_and_collect
curbside                  ... ready_for_pickup -> checked_in -> collected
ship_to_store             (at the DC) released -> acknowledged -> picked -> packed ->
                          in_transit; (at the store) received -> ready_for_pickup -> collected
========================  ============================================================

Reject (before anything is picked) and short picks give units back for re-sourcing elsewhere;
``cancel_remainder`` (a pickup not collected in time) gives the units back to stock.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

from oms.domain.errors import Conflict, Invalid, NotFound
from oms.domain.events import DomainEvent, to_json_value


class FulfillmentStatus(StrEnum):
    RELEASED = "released"
    ACKNOWLEDGED = "acknowledged"
    PICKED = "picked"
    PACKED = "packed"
    SHIPPED = "shipped"
    IN_TRANSIT = "in_transit"
    RECEIVED = "received"
    READY_FOR_PICKUP = "ready_for_pickup"
    CHECKED_IN = "checked_in"
    DELIVERED = "delivered"
    COLLECTED = "collected"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


S = FulfillmentStatus
OPEN_STATES = frozenset({S.RELEASED, S.ACKNOWLEDGED})
"""States in which more released units may join the fulfillment."""
FINISHED = frozenset({S.DELIVERED, S.COLLECTED, S.REJECTED, S.CANCELLED})

SHIPPING_METHODS = frozenset({"ship", "dropship"})
COLLECTING_METHODS = frozenset({"pickup", "curbside", "reserve_and_collect", "ship_to_store"})


# --- refusals ---------------------------------------------------------------------------------


class FulfillmentNotFound(NotFound):
    slug = "fulfillment-not-found"
    title = "Fulfillment not found"


class FulfillmentStepRefused(Conflict):
    """The step does not fit the fulfillment's current state (no shipping an unpicked line)."""

    slug = "fulfillment-step-refused"
    title = "The fulfillment step is not allowed in its current state"


class PickupCodeMismatch(Conflict):
    slug = "pickup-code-mismatch"
    title = "The pickup code does not match"


class InvalidFulfillmentStep(Invalid):
    slug = "invalid-fulfillment-step"
    title = "The fulfillment step is not valid"


class FulfillmentChangedConcurrently(Conflict):
    slug = "fulfillment-changed-concurrently"
    title = "The fulfillment was changed by someone else: read it again"


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FulfillmentEvent(DomainEvent):
    fulfillment_id: str
    order_id: str
    order_number: str
    location_code: str

    @property
    def subject(self) -> str:
        return f"fulfillments/{self.fulfillment_id}"


@dataclass(frozen=True, kw_only=True)
class FulfillmentReleased(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.released"
    delivery_method: str
    lines: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class FulfillmentAcknowledged(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.acknowledged"


@dataclass(frozen=True, kw_only=True)
class FulfillmentRejected(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.rejected"
    reason: str
    lines: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class FulfillmentLinePicked(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.line_picked"
    line_no: int
    sku: str
    picked: int
    short: int


@dataclass(frozen=True, kw_only=True)
class FulfillmentPicked(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.picked"
    lines: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class FulfillmentPacked(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.packed"
    packages: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class FulfillmentShipped(FulfillmentEvent):
    """Carries what the shipped email needs (see :mod:`oms.services.notifications`)."""

    type: ClassVar[str] = "fulfillment.shipped"
    customer: dict[str, Any]
    shipment_id: str
    carrier: str
    service: str
    tracking_number: str
    tracking_url: str | None
    packages: list[dict[str, Any]]
    lines: list[dict[str, Any]]
    expected_on: str | None = None


@dataclass(frozen=True, kw_only=True)
class FulfillmentTransferShipped(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.transfer_shipped"
    destination_code: str
    transfer_id: str
    packages: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class FulfillmentReceived(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.received"
    destination_code: str
    transfer_id: str


@dataclass(frozen=True, kw_only=True)
class FulfillmentDelivered(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.delivered"


@dataclass(frozen=True, kw_only=True)
class FulfillmentReadyForPickup(FulfillmentEvent):
    """Carries what the ready-for-pickup email needs."""

    type: ClassVar[str] = "fulfillment.ready_for_pickup"
    customer: dict[str, Any]
    pickup_code: str
    collect_by: datetime
    location: dict[str, Any]
    lines: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class FulfillmentPickupReminderDue(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.pickup_reminder_due"
    customer: dict[str, Any]
    pickup_code: str
    collect_by: datetime
    location: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class FulfillmentCheckedIn(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.checked_in"
    details: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class FulfillmentCollected(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.collected"
    override_reason: str | None
    lines: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class FulfillmentCancelled(FulfillmentEvent):
    type: ClassVar[str] = "fulfillment.cancelled"
    reason: str
    lines: list[dict[str, Any]]


# --- the fulfillment --------------------------------------------------------------------------


@dataclass
class FulfillmentLine:
    line_no: int
    sku: str
    quantity: int
    """Units released to this location for the line."""
    picked: int = 0
    short: int = 0
    pick_confirmed: bool = False

    @property
    def open(self) -> int:
        return self.quantity - self.picked - self.short

    def describe(self) -> dict[str, Any]:
        return {
            "line_no": self.line_no,
            "sku": self.sku,
            "quantity": self.quantity,
            "picked": self.picked,
            "short": self.short,
            "pick_confirmed": self.pick_confirmed,
        }


@dataclass(frozen=True)
class Package:
    package_id: str
    weight_kg: Decimal
    length_cm: Decimal
    width_cm: Decimal
    height_cm: Decimal
    lines: dict[int, int]
    """line_no -> units in this package."""
    tracking_number: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "package_id": self.package_id,
            "weight_kg": str(self.weight_kg),
            "length_cm": str(self.length_cm),
            "width_cm": str(self.width_cm),
            "height_cm": str(self.height_cm),
            "lines": [{"line_no": n, "quantity": q} for n, q in sorted(self.lines.items())],
            "tracking_number": self.tracking_number,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Package:
        return cls(
            package_id=doc["package_id"],
            weight_kg=Decimal(doc["weight_kg"]),
            length_cm=Decimal(doc["length_cm"]),
            width_cm=Decimal(doc["width_cm"]),
            height_cm=Decimal(doc["height_cm"]),
            lines={int(entry["line_no"]): int(entry["quantity"]) for entry in doc["lines"]},
            tracking_number=doc.get("tracking_number"),
        )


@dataclass
class Fulfillment:
    id: str
    order_id: str
    order_number: str
    location_code: str
    delivery_method: str
    status: FulfillmentStatus
    lines: list[FulfillmentLine]
    created_at: datetime
    updated_at: datetime
    destination_code: str | None = None
    """ship_to_store: the store the transfer goes to (and where the customer collects)."""
    purchase_order: str | None = None
    """dropship: the purchase order number sent to the vendor."""
    packages: list[Package] = field(default_factory=list)
    carrier: str | None = None
    service: str | None = None
    shipment_id: str | None = None
    transfer_id: str | None = None
    pickup_code: str | None = None
    collect_by: datetime | None = None
    check_in_details: dict[str, Any] | None = None
    reason: str | None = None
    override_reason: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    version: int = 0
    events: list[DomainEvent] = field(default_factory=list)

    # -- basics -----------------------------------------------------------------------------

    @property
    def handover_location(self) -> str:
        """Where the customer collects, or the location that ships."""
        return self.destination_code or self.location_code

    def _ids(self) -> dict[str, str]:
        return {
            "fulfillment_id": self.id,
            "order_id": self.order_id,
            "order_number": self.order_number,
            "location_code": self.location_code,
        }

    def _step(self, at: datetime, actor: str, step: str, **details: Any) -> None:
        self.updated_at = at
        self.history.append(
            {"at": at.isoformat(), "actor": actor, "step": step, **to_json_value(details)}
        )

    def _require(self, step: str, *allowed: FulfillmentStatus) -> None:
        if self.status not in allowed:
            names = ", ".join(f"'{state}'" for state in allowed)
            raise FulfillmentStepRefused(
                f"fulfillment {self.id} is '{self.status}': '{step}' needs {names}",
                fulfillment_id=self.id,
                current_status=self.status.value,
                step=step,
            )

    def _require_method(self, step: str, methods: frozenset[str]) -> None:
        if self.delivery_method not in methods:
            raise FulfillmentStepRefused(
                f"fulfillment {self.id} is for '{self.delivery_method}': '{step}' does not apply",
                fulfillment_id=self.id,
                step=step,
            )

    def line(self, line_no: int) -> FulfillmentLine:
        for line in self.lines:
            if line.line_no == line_no:
                return line
        raise InvalidFulfillmentStep(
            f"fulfillment {self.id} has no order line {line_no}", line_no=line_no
        )

    def picked_lines(self) -> list[FulfillmentLine]:
        return [line for line in self.lines if line.picked > 0]

    def describe_lines(self, *, picked: bool = False) -> list[dict[str, Any]]:
        return [
            {
                "line_no": line.line_no,
                "sku": line.sku,
                "quantity": line.picked if picked else line.quantity,
            }
            for line in self.lines
            if (line.picked if picked else line.quantity) > 0
        ]

    # -- creation and release ---------------------------------------------------------------

    @classmethod
    def release(
        cls,
        *,
        id: str,
        order_id: str,
        order_number: str,
        location_code: str,
        delivery_method: str,
        lines: list[FulfillmentLine],
        at: datetime,
        actor: str,
        destination_code: str | None = None,
        purchase_order: str | None = None,
    ) -> Fulfillment:
        fulfillment = cls(
            id=id,
            order_id=order_id,
            order_number=order_number,
            location_code=location_code,
            delivery_method=delivery_method,
            status=S.RELEASED,
            lines=[],
            created_at=at,
            updated_at=at,
            destination_code=destination_code,
            purchase_order=purchase_order,
        )
        fulfillment.add_released(lines, at=at, actor=actor)
        return fulfillment

    def add_released(self, lines: list[FulfillmentLine], *, at: datetime, actor: str) -> None:
        """More released units of the same order at this location (e.g. a re-sourced line)."""
        self._require("release", *OPEN_STATES)
        for new in lines:
            existing = next((line for line in self.lines if line.line_no == new.line_no), None)
            if existing is None:
                self.lines.append(FulfillmentLine(new.line_no, new.sku, new.quantity))
            else:
                existing.quantity += new.quantity
                existing.pick_confirmed = False
        released = [{"line_no": x.line_no, "sku": x.sku, "quantity": x.quantity} for x in lines]
        self._step(at, actor, "released", lines=released)
        self.events.append(
            FulfillmentReleased(**self._ids(), delivery_method=self.delivery_method, lines=released)
        )

    # -- location steps ---------------------------------------------------------------------

    def acknowledge(self, *, at: datetime, actor: str) -> None:
        if self.status is S.ACKNOWLEDGED:
            return
        self._require("acknowledge", S.RELEASED)
        self.status = S.ACKNOWLEDGED
        self._step(at, actor, "acknowledged")
        self.events.append(FulfillmentAcknowledged(**self._ids()))

    def reject(self, reason: str, *, at: datetime, actor: str) -> list[tuple[int, str, int]]:
        """The location cannot do it: every released unit goes back for re-sourcing.
        Returns (line_no, sku, quantity) given back."""
        if not reason.strip():
            raise InvalidFulfillmentStep("a rejection needs a reason")
        self._require("reject", *OPEN_STATES)
        if any(line.picked or line.short for line in self.lines):
            raise FulfillmentStepRefused(
                f"fulfillment {self.id} has picks confirmed: confirm the rest short instead",
                fulfillment_id=self.id,
            )
        given_back = [(line.line_no, line.sku, line.quantity) for line in self.lines]
        self.status = S.REJECTED
        self.reason = reason
        self._step(at, actor, "rejected", reason=reason)
        self.events.append(
            FulfillmentRejected(
                **self._ids(),
                reason=reason,
                lines=[{"line_no": n, "sku": s, "quantity": q} for n, s, q in given_back],
            )
        )
        return given_back

    def confirm_pick(
        self, line_no: int, picked: int, *, at: datetime, actor: str, reason: str | None = None
    ) -> int:
        """Confirm the pick of one line: ``picked`` of its open units were found, the rest are
        short (given back for re-sourcing). Returns the short quantity."""
        self._require("pick", *OPEN_STATES)
        line = self.line(line_no)
        if line.pick_confirmed or line.open == 0:
            raise FulfillmentStepRefused(
                f"line {line_no} of fulfillment {self.id} is already picked",
                fulfillment_id=self.id,
                line_no=line_no,
            )
        if picked < 0 or picked > line.open:
            raise InvalidFulfillmentStep(
                f"line {line_no}: picked must be between 0 and {line.open}, got {picked}",
                line_no=line_no,
            )
        short = line.open - picked
        line.picked += picked
        line.short += short
        line.pick_confirmed = True
        self.status = S.ACKNOWLEDGED
        self._step(
            at, actor, "line_picked", line_no=line_no, picked=picked, short=short, reason=reason
        )
        self.events.append(
            FulfillmentLinePicked(
                **self._ids(), line_no=line_no, sku=line.sku, picked=picked, short=short
            )
        )
        if all(entry.pick_confirmed for entry in self.lines):
            if not any(entry.picked for entry in self.lines):
                self.status = S.CANCELLED
                self.reason = "nothing picked"
                self._step(at, actor, "cancelled", reason="nothing picked")
                self.events.append(
                    FulfillmentCancelled(**self._ids(), reason="nothing picked", lines=[])
                )
            else:
                self.status = S.PICKED
                self._step(at, actor, "picked")
                self.events.append(
                    FulfillmentPicked(**self._ids(), lines=self.describe_lines(picked=True))
                )
        return short

    def pack(self, packages: list[Package], *, at: datetime, actor: str) -> None:
        self._require_method("pack", SHIPPING_METHODS | {"ship_to_store"})
        self._require("pack", S.PICKED)
        if not packages:
            raise InvalidFulfillmentStep("packing needs at least one package")
        ids = [package.package_id for package in packages]
        if len(set(ids)) != len(ids):
            raise InvalidFulfillmentStep("package ids must be unique within a fulfillment")
        packed: dict[int, int] = {}
        for package in packages:
            if min(package.weight_kg, package.length_cm, package.width_cm, package.height_cm) <= 0:
                raise InvalidFulfillmentStep(
                    f"package {package.package_id}: weight and dimensions must be positive"
                )
            if not package.lines:
                raise InvalidFulfillmentStep(f"package {package.package_id} holds no lines")
            for line_no, quantity in package.lines.items():
                self.line(line_no)
                if quantity <= 0:
                    raise InvalidFulfillmentStep(
                        f"package {package.package_id}: line {line_no} quantity must be positive"
                    )
                packed[line_no] = packed.get(line_no, 0) + quantity
        for line in self.lines:
            if packed.get(line.line_no, 0) != line.picked:
                raise FulfillmentStepRefused(
                    f"line {line.line_no}: {line.picked} unit(s) are picked but "
                    f"{packed.get(line.line_no, 0)} are packed; pack exactly what was picked",
                    fulfillment_id=self.id,
                    line_no=line.line_no,
                )
        self.packages = list(packages)
        self.status = S.PACKED
        self._step(at, actor, "packed", packages=[p.describe() for p in packages])
        self.events.append(
            FulfillmentPacked(**self._ids(), packages=[p.describe() for p in packages])
        )

    def ship(
        self,
        *,
        carrier: str,
        service: str,
        tracking: dict[str, str],
        shipment_id: str,
        at: datetime,
        actor: str,
    ) -> None:
        """Hand the packages to the carrier: ``tracking`` maps each package id to its number."""
        self._require_method("ship", SHIPPING_METHODS | {"ship_to_store"})
        if self.status in (S.RELEASED, S.ACKNOWLEDGED):
            raise FulfillmentStepRefused(
                f"fulfillment {self.id} is '{self.status}': lines not picked cannot be shipped",
                fulfillment_id=self.id,
                unpicked=[line.line_no for line in self.lines if not line.pick_confirmed],
            )
        self._require("ship", S.PACKED)
        if not carrier.strip() or not service.strip():
            raise InvalidFulfillmentStep("shipping needs a carrier and a service")
        known = {package.package_id for package in self.packages}
        missing = sorted(known - set(tracking))
        unknown = sorted(set(tracking) - known)
        if missing or unknown:
            raise InvalidFulfillmentStep(
                "give one tracking number per package "
                f"(missing: {missing or 'none'}; unknown packages: {unknown or 'none'})"
            )
        if any(not number.strip() for number in tracking.values()):
            raise InvalidFulfillmentStep("tracking numbers must not be empty")
        self.packages = [
            Package(
                p.package_id,
                p.weight_kg,
                p.length_cm,
                p.width_cm,
                p.height_cm,
                p.lines,
                tracking[p.package_id],
            )
            for p in self.packages
        ]
        self.carrier, self.service, self.shipment_id = carrier, service, shipment_id
        if self.delivery_method == "ship_to_store":
            self.status = S.IN_TRANSIT
            self.transfer_id = shipment_id
            self._step(at, actor, "transfer_shipped", carrier=carrier, tracking=tracking)
            self.events.append(
                FulfillmentTransferShipped(
                    **self._ids(),
                    destination_code=self.destination_code or "",
                    transfer_id=shipment_id,
                    packages=[p.describe() for p in self.packages],
                )
            )
            return
        self.status = S.SHIPPED
        self._step(at, actor, "shipped", carrier=carrier, service=service, tracking=tracking)

    def receive(self, *, at: datetime, actor: str) -> None:
        self._require_method("receive", frozenset({"ship_to_store"}))
        self._require("receive", S.IN_TRANSIT)
        self.status = S.RECEIVED
        self._step(at, actor, "received", store=self.destination_code)
        self.events.append(
            FulfillmentReceived(
                **self._ids(),
                destination_code=self.destination_code or "",
                transfer_id=self.transfer_id or "",
            )
        )

    def confirm_delivery(self, *, at: datetime, actor: str) -> None:
        self._require_method("deliver", SHIPPING_METHODS)
        self._require("deliver", S.SHIPPED)
        self.status = S.DELIVERED
        self._step(at, actor, "delivered")
        self.events.append(FulfillmentDelivered(**self._ids()))

    def ready_for_pickup(
        self, *, pickup_code: str, collect_by: datetime, at: datetime, actor: str
    ) -> None:
        self._require_method("ready_for_pickup", COLLECTING_METHODS)
        needed = S.RECEIVED if self.delivery_method == "ship_to_store" else S.PICKED
        self._require("ready_for_pickup", needed)
        self.status = S.READY_FOR_PICKUP
        self.pickup_code = pickup_code
        self.collect_by = collect_by
        self._step(at, actor, "ready_for_pickup", collect_by=collect_by)

    def check_in(self, details: dict[str, Any], *, at: datetime, actor: str) -> None:
        self._require_method("check_in", frozenset({"curbside"}))
        self._require("check_in", S.READY_FOR_PICKUP)
        if not any(str(details.get(key) or "").strip() for key in ("bay", "car")):
            raise InvalidFulfillmentStep("a curbside check-in needs the bay or the car")
        self.status = S.CHECKED_IN
        self.check_in_details = details
        self._step(at, actor, "checked_in", details=details)
        self.events.append(FulfillmentCheckedIn(**self._ids(), details=details))

    def hand_over(
        self,
        *,
        pickup_code: str | None,
        override_reason: str | None,
        at: datetime,
        actor: str,
    ) -> None:
        """Give the goods to the customer: with the right pickup code, or an associate's
        override with a reason (an ID checked at the counter)."""
        self._require_method("hand_over", COLLECTING_METHODS)
        if self.delivery_method == "curbside":
            if self.status is S.READY_FOR_PICKUP:
                raise FulfillmentStepRefused(
                    f"fulfillment {self.id}: the customer has not checked in yet",
                    fulfillment_id=self.id,
                )
            self._require("hand_over", S.CHECKED_IN)
        else:
            self._require("hand_over", S.READY_FOR_PICKUP)
        override = (override_reason or "").strip()
        if not override:
            if not pickup_code:
                raise InvalidFulfillmentStep("give the pickup code, or an override with a reason")
            if not hmac.compare_digest(pickup_code.strip().upper(), (self.pickup_code or "")):
                raise PickupCodeMismatch(
                    f"the pickup code does not match fulfillment {self.id}",
                    fulfillment_id=self.id,
                )
        self.status = S.COLLECTED
        self.override_reason = override or None
        self._step(at, actor, "collected", override_reason=override or None)
        self.events.append(
            FulfillmentCollected(
                **self._ids(),
                override_reason=override or None,
                lines=self.describe_lines(picked=True),
            )
        )

    def cancel_remainder(self, reason: str, *, at: datetime, actor: str) -> list[FulfillmentLine]:
        """Not collected in time (or given up): the picked units go back to stock. Returns the
        lines whose picked units are given back."""
        self._require("cancel", S.READY_FOR_PICKUP, S.CHECKED_IN, S.PICKED, S.RECEIVED)
        given_back = self.picked_lines()
        self.status = S.CANCELLED
        self.reason = reason
        self._step(at, actor, "cancelled", reason=reason)
        self.events.append(
            FulfillmentCancelled(
                **self._ids(), reason=reason, lines=self.describe_lines(picked=True)
            )
        )
        return given_back

    # -- storage ----------------------------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        return {
            "lines": [line.describe() for line in self.lines],
            "packages": [package.describe() for package in self.packages],
            "carrier": self.carrier,
            "service": self.service,
            "shipment_id": self.shipment_id,
            "transfer_id": self.transfer_id,
            "purchase_order": self.purchase_order,
            "collect_by": self.collect_by.isoformat() if self.collect_by else None,
            "check_in": self.check_in_details,
            "reason": self.reason,
            "override_reason": self.override_reason,
            "history": self.history,
        }

    @classmethod
    def from_row(
        cls,
        *,
        id: str,
        order_id: str,
        order_number: str,
        location_code: str,
        destination_code: str | None,
        delivery_method: str,
        status: str,
        pickup_code: str | None,
        created_at: datetime,
        updated_at: datetime,
        version: int,
        document: dict[str, Any],
    ) -> Fulfillment:
        return cls(
            id=id,
            order_id=order_id,
            order_number=order_number,
            location_code=location_code,
            destination_code=destination_code,
            delivery_method=delivery_method,
            status=FulfillmentStatus(status),
            lines=[
                FulfillmentLine(
                    int(x["line_no"]),
                    x["sku"],
                    int(x["quantity"]),
                    int(x["picked"]),
                    int(x["short"]),
                    bool(x["pick_confirmed"]),
                )
                for x in document.get("lines", [])
            ],
            created_at=created_at,
            updated_at=updated_at,
            purchase_order=document.get("purchase_order"),
            packages=[Package.from_document(p) for p in document.get("packages", [])],
            carrier=document.get("carrier"),
            service=document.get("service"),
            shipment_id=document.get("shipment_id"),
            transfer_id=document.get("transfer_id"),
            pickup_code=pickup_code,
            collect_by=(
                datetime.fromisoformat(document["collect_by"])
                if document.get("collect_by")
                else None
            ),
            check_in_details=document.get("check_in"),
            reason=document.get("reason"),
            override_reason=document.get("override_reason"),
            history=list(document.get("history", [])),
            version=version,
        )
