"""Orders: lines, deliveries, quantity states, holds, changes, the timeline and order events.

A line's ordered quantity is split across quantity states (``open``, ``allocated``, ``shipped``,
...), each allocated-or-later bucket at the location that holds or fulfils it. Quantities move only
along :data:`TRANSITIONS`; line and order statuses are derived from the buckets, never set by hand.
Every change appends a :class:`TimelineEntry` (actor, reason, old and new values) and records
domain events; the services persist both in one transaction.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, ClassVar, Final

from oms.domain.errors import Conflict, Invalid, NotFound
from oms.domain.events import DomainEvent, to_json_value
from oms.domain.money import has_at_most_minor_units, is_currency, quantize

# --- vocabulary -------------------------------------------------------------------------------


class Channel(StrEnum):
    WEB = "web"
    APP = "app"
    STORE = "store"
    CALL_CENTER = "call_center"
    MARKETPLACE = "marketplace"


class DeliveryMethod(StrEnum):
    SHIP = "ship"
    PICKUP = "pickup"
    CURBSIDE = "curbside"
    RESERVE_AND_COLLECT = "reserve_and_collect"
    SHIP_TO_STORE = "ship_to_store"
    DROPSHIP = "dropship"


TO_ADDRESS: Final = frozenset({DeliveryMethod.SHIP, DeliveryMethod.DROPSHIP})
"""Methods that deliver to the customer's address."""
AT_STORE: Final = frozenset(
    {
        DeliveryMethod.PICKUP,
        DeliveryMethod.CURBSIDE,
        DeliveryMethod.RESERVE_AND_COLLECT,
        DeliveryMethod.SHIP_TO_STORE,
    }
)
"""Methods where the customer collects at a store (the line's pickup location)."""
FROM_PICKUP_STORE: Final = frozenset(
    {DeliveryMethod.PICKUP, DeliveryMethod.CURBSIDE, DeliveryMethod.RESERVE_AND_COLLECT}
)
"""Methods whose stock must be at the pickup store itself (ship_to_store is sent from elsewhere)."""


class QuantityState(StrEnum):
    OPEN = "open"
    BACKORDERED = "backordered"
    ALLOCATED = "allocated"
    RELEASED = "released"
    PICKED = "picked"
    SHIPPED = "shipped"
    READY_FOR_PICKUP = "ready_for_pickup"
    DELIVERED = "delivered"
    COLLECTED = "collected"
    CANCELLED = "cancelled"
    RETURNED = "returned"


Q = QuantityState

TRANSITIONS: Final[Mapping[QuantityState, frozenset[QuantityState]]] = {
    Q.OPEN: frozenset({Q.ALLOCATED, Q.BACKORDERED, Q.CANCELLED}),
    Q.BACKORDERED: frozenset({Q.ALLOCATED, Q.OPEN, Q.CANCELLED}),
    Q.ALLOCATED: frozenset({Q.RELEASED, Q.OPEN, Q.BACKORDERED, Q.CANCELLED}),
    # released: the location picks it, gives it back for re-sourcing, or confirms a cancel request
    Q.RELEASED: frozenset({Q.PICKED, Q.OPEN, Q.CANCELLED}),
    # picked: short picks and lost units go back to open; a confirmed cancel puts it back
    Q.PICKED: frozenset({Q.SHIPPED, Q.READY_FOR_PICKUP, Q.OPEN, Q.CANCELLED}),
    Q.SHIPPED: frozenset({Q.DELIVERED, Q.RETURNED}),
    # not collected in time: the units go back to the shelf and the quantity is cancelled
    Q.READY_FOR_PICKUP: frozenset({Q.COLLECTED, Q.CANCELLED}),
    Q.DELIVERED: frozenset({Q.RETURNED}),
    Q.COLLECTED: frozenset({Q.RETURNED}),
    Q.CANCELLED: frozenset(),
    Q.RETURNED: frozenset(),
}
"""The whole quantity lifecycle on one screen: state -> the states its units may move to."""

AT_LOCATION: Final = frozenset(
    {Q.ALLOCATED, Q.RELEASED, Q.PICKED, Q.SHIPPED, Q.READY_FOR_PICKUP, Q.DELIVERED, Q.COLLECTED}
)
"""States whose units belong to one location (the one holding or fulfilling them)."""

IMMEDIATELY_CANCELLABLE: Final = (Q.OPEN, Q.BACKORDERED, Q.ALLOCATED)
"""Before release a cancel takes effect at once (in this order of preference)."""
CANCEL_BY_REQUEST: Final = (Q.RELEASED, Q.PICKED)
"""After release the fulfilling location must confirm a cancel request."""
BEFORE_RELEASE: Final = frozenset({Q.OPEN, Q.BACKORDERED, Q.ALLOCATED, Q.CANCELLED})

STATUS_PROGRESS: Final = (
    Q.OPEN,
    Q.BACKORDERED,
    Q.ALLOCATED,
    Q.RELEASED,
    Q.PICKED,
    Q.READY_FOR_PICKUP,
    Q.SHIPPED,
    Q.COLLECTED,
    Q.DELIVERED,
    Q.RETURNED,
)
"""How far each state is along the way, for deriving ``partially_<state>`` statuses."""


def derive_status(quantities: Mapping[QuantityState, int]) -> str:
    """The status of a line or order from its quantities.

    Cancelled units are ignored unless everything is cancelled (``cancelled``). All remaining units
    in one state give that state's name (``allocated``, ``shipped``, ...); all of them handed to
    the customer in a mix of ways is ``completed``; otherwise ``partially_<furthest state>``,
    e.g. 2 shipped and 3 allocated is ``partially_shipped``.
    """
    live = {
        state for state, quantity in quantities.items() if quantity > 0 and state != Q.CANCELLED
    }
    if not live:
        return "cancelled"
    if len(live) == 1:
        return next(iter(live)).value
    if live <= {Q.DELIVERED, Q.COLLECTED}:
        return "completed"
    furthest = max(live, key=STATUS_PROGRESS.index)
    return f"partially_{furthest.value}"


class HoldType(StrEnum):
    FRAUD = "fraud"
    PAYMENT = "payment"
    MANUAL = "manual"


class CancelRequestStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REFUSED = "refused"


# --- refusals ---------------------------------------------------------------------------------


class OrderNotFound(NotFound):
    slug = "order-not-found"
    title = "No such order"


class InvalidOrder(Invalid):
    """The order request breaks a rule; ``errors`` lists each field with a JSON pointer."""

    slug = "invalid-order"
    title = "The order is not valid"


class OrderChangeRefused(Conflict):
    """The order's current state no longer allows this change; ``detail`` says why."""

    slug = "order-change-refused"
    title = "The order can no longer be changed this way"


class OrderChangedConcurrently(Conflict):
    """Another request changed the order first; read it again and retry."""

    slug = "order-changed-concurrently"
    title = "The order was changed by another request"


class OrderOnHold(Conflict):
    slug = "order-on-hold"
    title = "The order is on hold"


class QuantityTransitionRefused(Conflict):
    """Units may only move along the quantity lifecycle, and only units that are there."""

    slug = "quantity-transition-refused"
    title = "The quantity cannot move that way"


class CardNumberRejected(Invalid):
    """A payment card number was sent: the OMS accepts payment tokens only."""

    slug = "card-number-rejected"
    title = "Card numbers are not accepted"


# --- values -----------------------------------------------------------------------------------

FieldErrors = list[dict[str, str]]


def field_error(pointer: str, detail: str) -> dict[str, str]:
    return {"pointer": pointer, "detail": detail}


@dataclass(frozen=True)
class Address:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str | None = None
    region: str | None = None
    phone: str | None = None
    latitude: float | None = None
    longitude: float | None = None

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "line1", "city", "postal_code", "country")

    def problems(self, pointer: str) -> FieldErrors:
        found = [
            field_error(f"{pointer}/{name}", "required for delivery to an address")
            for name in self.REQUIRED
            if not str(getattr(self, name) or "").strip()
        ]
        if self.country and not re.fullmatch(r"[A-Z]{2}", self.country):
            found.append(
                field_error(f"{pointer}/country", "an ISO 3166-1 alpha-2 code such as 'US'")
            )
        if (self.latitude is None) != (self.longitude is None):
            found.append(field_error(f"{pointer}/latitude", "give latitude and longitude together"))
        return found


@dataclass(frozen=True)
class Delivery:
    method: DeliveryMethod
    address: Address | None = None
    pickup_location_code: str | None = None
    requested_on: date | None = None
    gift: bool = False
    gift_message: str | None = None

    def problems(self, pointer: str) -> FieldErrors:
        found: FieldErrors = []
        if self.method in TO_ADDRESS:
            if self.address is None:
                found.append(field_error(f"{pointer}/address", f"required for '{self.method}'"))
            else:
                found.extend(self.address.problems(f"{pointer}/address"))
            if self.pickup_location_code:
                found.append(
                    field_error(f"{pointer}/pickup_location_code", f"not used for '{self.method}'")
                )
        if self.method in AT_STORE and not (self.pickup_location_code or "").strip():
            found.append(
                field_error(f"{pointer}/pickup_location_code", f"required for '{self.method}'")
            )
        if self.gift_message and not self.gift:
            found.append(field_error(f"{pointer}/gift_message", "only for gifts (gift: true)"))
        return found

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method.value,
            "address": to_json_value(self.address) if self.address else None,
            "pickup_location_code": self.pickup_location_code,
            "requested_on": self.requested_on.isoformat() if self.requested_on else None,
        }


@dataclass(frozen=True)
class Customer:
    customer_id: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class PaymentReference:
    """A tender as the channel's payment service knows it: never a card number."""

    method: str
    token: str
    amount: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    actor: str
    action: str
    reason: str | None = None
    line_no: int | None = None
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None


@dataclass(frozen=True)
class Hold:
    hold_id: str
    type: HoldType
    reason: str
    placed_by: str
    placed_at: datetime
    released_by: str | None = None
    released_at: datetime | None = None
    release_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None


@dataclass(frozen=True)
class CancelRequest:
    request_id: str
    line_no: int
    location_code: str
    quantity: int
    reason: str
    requested_by: str
    requested_at: datetime
    status: CancelRequestStatus = CancelRequestStatus.PENDING
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None


@dataclass(frozen=True)
class Freed:
    """Allocated units given back to a location's stock (the service deallocates them)."""

    line_no: int
    sku: str
    location_code: str
    quantity: int


@dataclass(frozen=True)
class Cancellation:
    cancelled: int
    freed: list[Freed]
    requests: list[CancelRequest]


# --- card numbers -----------------------------------------------------------------------------

_CARD_SHAPES = re.compile(
    r"(?<![\d-])(?:"
    r"\d{13,19}"  # written without separators
    r"|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?"  # 4-4-4-4, 4-4-4-4-3
    r"|\d{4}([ -])\d{6}\2\d{4,5}"  # 4-6-5 (American Express), 4-6-4 (Diners)
    r")(?![\d-])"
)
"""How people write card numbers; other dash-separated numbers (order references, dates) are
not card numbers, however their digits add up."""

# Issuer prefixes (IIN ranges) and lengths of the card brands in use.
_BRANDS: tuple[tuple[re.Pattern[str], frozenset[int]], ...] = (
    (re.compile(r"4"), frozenset({13, 16, 19})),  # Visa
    (re.compile(r"5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)"), frozenset({16})),  # Mastercard
    (re.compile(r"3[47]"), frozenset({15})),  # American Express
    (re.compile(r"6(?:011|5|4[4-9])"), frozenset({16, 17, 18, 19})),  # Discover
    (re.compile(r"35(?:2[89]|[3-8]\d)"), frozenset({16, 17, 18, 19})),  # JCB
    (re.compile(r"3(?:0[0-5]|[689])"), frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    (re.compile(r"62"), frozenset({16, 17, 18, 19})),  # UnionPay
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def looks_like_card_number(text: str) -> bool:
    """True when ``text`` holds a payment card number: written the way cards are (all digits, or
    groups of 4 separated by spaces or dashes), with a card brand's prefix and length, passing
    the Luhn check."""
    for match in _CARD_SHAPES.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if not _luhn_ok(digits):
            continue
        if any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _BRANDS):
            return True
    return False


_CANNOT_CARRY = (bool, int, float, Decimal, date)
"""The leaves that cannot carry a card number, most of a command."""
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
"""Field names per dataclass type (``dataclasses.fields`` is slow on a hot path)."""


def card_number_pointers(value: Any, pointer: str = "#") -> list[str]:
    """JSON pointers of every string (or key) in a nested document that carries a card number."""
    found: list[str] = []
    _scan_for_cards(value, pointer, found)
    return found


def _scan_for_cards(value: Any, pointer: str, found: list[str]) -> None:
    if value is None or isinstance(value, _CANNOT_CARRY):
        return
    if isinstance(value, str):
        if len(value) >= 13 and looks_like_card_number(value):
            found.append(pointer)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if looks_like_card_number(str(key)):
                found.append(f"{pointer}/{key}")
            _scan_for_cards(item, f"{pointer}/{key}", found)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _scan_for_cards(item, f"{pointer}/{index}", found)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value)
        names = _FIELD_NAMES.get(kind)
        if names is None:
            names = _FIELD_NAMES[kind] = tuple(item.name for item in dataclasses.fields(value))
        for name in names:
            _scan_for_cards(getattr(value, name), f"{pointer}/{name}", found)


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OrderEvent(DomainEvent):
    order_id: str
    order_number: str

    @property
    def subject(self) -> str:
        return f"orders/{self.order_id}"


@dataclass(frozen=True, kw_only=True)
class OrderCreated(OrderEvent):
    type: ClassVar[str] = "order.created"
    channel: str
    channel_reference: str
    customer_id: str | None
    currency: str
    total: Decimal
    lines: list[dict[str, Any]]
    customer: dict[str, Any] = field(default_factory=dict)
    """{email, name, language}: who the order confirmation goes to."""
    totals: dict[str, Any] = field(default_factory=dict)
    """{subtotal, discount, shipping, tax, total} as decimal strings."""


@dataclass(frozen=True, kw_only=True)
class OrderAllocated(OrderEvent):
    type: ClassVar[str] = "order.allocated"
    allocations: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class OrderBackordered(OrderEvent):
    type: ClassVar[str] = "order.backordered"
    lines: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class OrderReleased(OrderEvent):
    type: ClassVar[str] = "order.released"
    releases: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class OrderCancelled(OrderEvent):
    type: ClassVar[str] = "order.cancelled"
    reason: str
    actor: str
    customer: dict[str, Any] = field(default_factory=dict)
    currency: str = ""
    lines: list[dict[str, Any]] = field(default_factory=list)
    """[{sku, description, quantity}]: what was cancelled (description filled by the service)."""
    refund_amount: str | None = None
    """What of the authorised payment was released, when the service released it."""


@dataclass(frozen=True, kw_only=True)
class OrderLineCancelled(OrderEvent):
    type: ClassVar[str] = "order.line.cancelled"
    line_no: int
    sku: str
    quantity: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class OrderCancelRequested(OrderEvent):
    type: ClassVar[str] = "order.cancel_requested"
    request_id: str
    line_no: int
    location_code: str
    quantity: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class OrderCancelRequestConfirmed(OrderEvent):
    type: ClassVar[str] = "order.cancel_request.confirmed"
    request_id: str
    line_no: int
    location_code: str
    quantity: int


@dataclass(frozen=True, kw_only=True)
class OrderCancelRequestRefused(OrderEvent):
    type: ClassVar[str] = "order.cancel_request.refused"
    request_id: str
    line_no: int
    location_code: str
    quantity: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class OrderLineStatusChanged(OrderEvent):
    type: ClassVar[str] = "order.line.status_changed"
    line_no: int
    old_status: str
    new_status: str


@dataclass(frozen=True, kw_only=True)
class OrderStatusChanged(OrderEvent):
    type: ClassVar[str] = "order.status_changed"
    old_status: str
    new_status: str


@dataclass(frozen=True, kw_only=True)
class OrderHoldPlaced(OrderEvent):
    type: ClassVar[str] = "order.hold_placed"
    hold_id: str
    hold_type: str
    reason: str
    actor: str


@dataclass(frozen=True, kw_only=True)
class OrderHoldReleased(OrderEvent):
    type: ClassVar[str] = "order.hold_released"
    hold_id: str
    hold_type: str
    reason: str
    actor: str


@dataclass(frozen=True, kw_only=True)
class OrderChanged(OrderEvent):
    type: ClassVar[str] = "order.changed"
    change: str
    line_no: int | None
    old: dict[str, Any]
    new: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class OrderLineAdded(OrderEvent):
    type: ClassVar[str] = "order.line_added"
    line_no: int
    sku: str
    quantity: int
    delivery_method: str


@dataclass(frozen=True, kw_only=True)
class OrderPromiseDateChanged(OrderEvent):
    type: ClassVar[str] = "order.promise_date_changed"
    line_no: int
    old_promised_on: date | None
    new_promised_on: date | None


# --- lines ------------------------------------------------------------------------------------

Bucket = tuple[QuantityState, str | None]


@dataclass
class OrderLine:
    line_no: int
    sku: str
    quantity: int
    unit_price: Decimal
    discount: Decimal
    tax: Decimal
    delivery: Delivery
    promised_on: date | None = None
    buckets: dict[Bucket, int] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        *,
        line_no: int,
        sku: str,
        quantity: int,
        unit_price: Decimal,
        discount: Decimal,
        tax: Decimal,
        delivery: Delivery,
    ) -> OrderLine:
        return cls(
            line_no=line_no,
            sku=sku,
            quantity=quantity,
            unit_price=unit_price,
            discount=discount,
            tax=tax,
            delivery=delivery,
            buckets={(Q.OPEN, None): quantity},
        )

    @property
    def amount(self) -> Decimal:
        """What the customer pays for the line as ordered: quantity x price - discount + tax."""
        return self.quantity * self.unit_price - self.discount + self.tax

    def quantity_in(self, state: QuantityState, location_code: str | None = None) -> int:
        return sum(
            quantity
            for (bucket_state, bucket_location), quantity in self.buckets.items()
            if bucket_state == state and (location_code is None or bucket_location == location_code)
        )

    def by_state(self) -> dict[QuantityState, int]:
        totals: dict[QuantityState, int] = {}
        for (state, _location), quantity in self.buckets.items():
            totals[state] = totals.get(state, 0) + quantity
        return totals

    def at_locations(self, state: QuantityState) -> list[tuple[str, int]]:
        """``(location_code, quantity)`` of one located state, by location code."""
        return sorted(
            (location, quantity)
            for (bucket_state, location), quantity in self.buckets.items()
            if bucket_state == state and location is not None and quantity > 0
        )

    @property
    def status(self) -> str:
        return derive_status(self.by_state())

    @property
    def live_quantity(self) -> int:
        """Ordered units not cancelled."""
        return self.quantity - self.quantity_in(Q.CANCELLED)

    @property
    def is_before_release(self) -> bool:
        return all(state in BEFORE_RELEASE for state, _ in self.buckets)

    def move(
        self,
        quantity: int,
        *,
        source: QuantityState,
        target: QuantityState,
        location_code: str | None = None,
    ) -> None:
        """Move units between states; ``location_code`` is where located units are (or go)."""
        if quantity <= 0:
            raise QuantityTransitionRefused(f"line {self.line_no}: quantity must be positive")
        if target not in TRANSITIONS[source]:
            allowed = ", ".join(sorted(TRANSITIONS[source])) or "nothing"
            raise QuantityTransitionRefused(
                f"line {self.line_no}: units cannot move from '{source}' to '{target}' "
                f"('{source}' may move to: {allowed})"
            )
        located = source in AT_LOCATION or target in AT_LOCATION
        if located and not location_code:
            raise QuantityTransitionRefused(
                f"line {self.line_no}: moving '{source}' to '{target}' needs a location"
            )
        source_bucket: Bucket = (source, location_code if source in AT_LOCATION else None)
        target_bucket: Bucket = (target, location_code if target in AT_LOCATION else None)
        there = self.buckets.get(source_bucket, 0)
        if there < quantity:
            where = f" at {location_code}" if source in AT_LOCATION else ""
            raise QuantityTransitionRefused(
                f"line {self.line_no}: only {there} unit(s) are '{source}'{where}, "
                f"cannot move {quantity}"
            )
        if there == quantity:
            del self.buckets[source_bucket]
        else:
            self.buckets[source_bucket] = there - quantity
        self.buckets[target_bucket] = self.buckets.get(target_bucket, 0) + quantity

    def _remove(self, quantity: int, state: QuantityState, location_code: str | None) -> None:
        bucket: Bucket = (state, location_code)
        left = self.buckets[bucket] - quantity
        if left:
            self.buckets[bucket] = left
        else:
            del self.buckets[bucket]
        self.quantity -= quantity

    def describe(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "quantity": self.quantity,
            "unit_price": str(self.unit_price),
            "discount": str(self.discount),
            "tax": str(self.tax),
            "delivery": self.delivery.describe(),
        }


# --- the order --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineRequest:
    """A line as a channel sends it (before it belongs to an order)."""

    sku: str
    quantity: int
    unit_price: Decimal
    delivery: Delivery
    discount: Decimal = Decimal("0")
    tax: Decimal = Decimal("0")
    total: Decimal | None = None
    """The channel's line total, checked when given."""


@dataclass(frozen=True)
class Totals:
    """The channel's totals, each checked against the lines when given."""

    subtotal: Decimal | None = None
    discount: Decimal | None = None
    tax: Decimal | None = None
    shipping: Decimal | None = None
    total: Decimal | None = None
    currency: str | None = None


def line_problems(request: LineRequest, currency: str, pointer: str) -> FieldErrors:
    """Field errors of one requested line that need no database."""
    found: FieldErrors = []
    if not request.sku.strip():
        found.append(field_error(f"{pointer}/sku", "required"))
    if request.quantity <= 0:
        found.append(field_error(f"{pointer}/quantity", "must be at least 1"))
    for name in ("unit_price", "discount", "tax"):
        amount: Decimal = getattr(request, name)
        if amount < 0:
            found.append(field_error(f"{pointer}/{name}", "must not be negative"))
        elif is_currency(currency) and not has_at_most_minor_units(amount, currency):
            found.append(field_error(f"{pointer}/{name}", f"more decimals than {currency} has"))
    if request.quantity > 0 and request.discount > request.quantity * request.unit_price:
        found.append(field_error(f"{pointer}/discount", "larger than quantity x unit_price"))
    expected = request.quantity * request.unit_price - request.discount + request.tax
    if request.total is not None and request.total != expected:
        found.append(
            field_error(
                f"{pointer}/total",
                f"{request.total} does not add up: {request.quantity} x {request.unit_price} "
                f"- {request.discount} + {request.tax} = {expected}",
            )
        )
    found.extend(request.delivery.problems(f"{pointer}/delivery"))
    return found


@dataclass
class Order:
    order_id: str
    order_number: str
    channel: Channel
    channel_reference: str
    customer: Customer
    currency: str
    lines: list[OrderLine]
    created_at: datetime
    shipping_charge: Decimal = Decimal("0")
    payments: list[PaymentReference] = field(default_factory=list)
    notes: str | None = None
    tags: list[str] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    cancel_requests: list[CancelRequest] = field(default_factory=list)
    version: int = 0
    events: list[DomainEvent] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    """Entries added since the order was loaded (the stored history is append-only)."""
    _tracking: bool = field(default=False, init=False, repr=False, compare=False)

    # -- capture --------------------------------------------------------------------------

    @classmethod
    def capture(
        cls,
        *,
        order_id: str,
        order_number: str,
        channel: Channel,
        channel_reference: str,
        customer: Customer,
        currency: str,
        lines: Sequence[LineRequest],
        at: datetime,
        actor: str,
        shipping_charge: Decimal = Decimal("0"),
        totals: Totals | None = None,
        payments: Sequence[PaymentReference] = (),
        notes: str | None = None,
        tags: Sequence[str] = (),
        problems: FieldErrors | None = None,
    ) -> Order:
        """A new order from a channel's request; ``problems`` adds errors found elsewhere
        (unknown SKUs, pickup stores): all field errors are reported at once."""
        found: FieldErrors = list(problems or [])
        if not channel_reference.strip():
            found.append(field_error("#/channel_reference", "required"))
        if not is_currency(currency):
            found.append(field_error("#/currency", f"'{currency}' is not an ISO 4217 code"))
        if not lines:
            found.append(field_error("#/lines", "an order needs at least one line"))
        for index, request in enumerate(lines):
            found.extend(line_problems(request, currency, f"#/lines/{index}"))
        if shipping_charge < 0:
            found.append(field_error("#/shipping_charge", "must not be negative"))
        for index, payment in enumerate(payments):
            if not payment.token.strip():
                found.append(field_error(f"#/payments/{index}/token", "required"))
            if payment.amount is not None and payment.amount < 0:
                found.append(field_error(f"#/payments/{index}/amount", "must not be negative"))
            if payment.currency is not None and payment.currency != currency:
                found.append(
                    field_error(
                        f"#/payments/{index}/currency",
                        f"{payment.currency} does not match the order's currency {currency}",
                    )
                )
        if totals is not None and totals.currency is not None and totals.currency != currency:
            found.append(
                field_error(
                    "#/totals/currency",
                    f"{totals.currency} does not match the order's currency {currency}",
                )
            )
        if not (customer.email or customer.phone or customer.customer_id):
            found.append(field_error("#/customer", "give an id, an email or a phone"))
        order = cls(
            order_id=order_id,
            order_number=order_number,
            channel=channel,
            channel_reference=channel_reference,
            customer=customer,
            currency=currency,
            lines=[
                OrderLine.new(
                    line_no=index + 1,
                    sku=request.sku,
                    quantity=max(request.quantity, 0),
                    unit_price=request.unit_price,
                    discount=request.discount,
                    tax=request.tax,
                    delivery=request.delivery,
                )
                for index, request in enumerate(lines)
            ],
            created_at=at,
            shipping_charge=shipping_charge,
            payments=list(payments),
            notes=notes,
            tags=list(dict.fromkeys(tag.strip() for tag in tags if tag.strip())),
        )
        if totals is not None and not found:
            found.extend(order._totals_problems(totals))
        if found:
            raise InvalidOrder(
                f"the order has {len(found)} error{'s' if len(found) != 1 else ''}: "
                + "; ".join(f"{error['pointer']}: {error['detail']}" for error in found[:5]),
                errors=found,
            )
        order._note(
            at,
            actor,
            "created",
            new={"channel": channel.value, "channel_reference": channel_reference},
        )
        order.events.append(
            OrderCreated(
                **order._ids(),
                channel=channel.value,
                channel_reference=channel_reference,
                customer_id=customer.customer_id,
                currency=currency,
                total=order.total,
                lines=[
                    {
                        "line_no": line.line_no,
                        "sku": line.sku,
                        "description": line.sku,
                        "quantity": line.quantity,
                        "unit_price": str(line.unit_price),
                        "line_total": str(line.amount),
                        "delivery_method": line.delivery.method.value,
                    }
                    for line in order.lines
                ],
                customer=order.customer_contact(),
                totals={
                    "subtotal": str(order.subtotal),
                    "discount": str(order.discount_total),
                    "shipping": str(order.shipping_charge),
                    "tax": str(order.tax_total),
                    "total": str(order.total),
                },
            )
        )
        return order

    def _totals_problems(self, totals: Totals) -> FieldErrors:
        computed = {
            "subtotal": self.subtotal,
            "discount": self.discount_total,
            "tax": self.tax_total,
            "shipping": self.shipping_charge,
            "total": self.total,
        }
        return [
            field_error(f"#/totals/{name}", f"{given} does not add up: the lines make {expected}")
            for name, expected in computed.items()
            if (given := getattr(totals, name)) is not None and given != expected
        ]

    # -- reading ----------------------------------------------------------------------------

    @property
    def subtotal(self) -> Decimal:
        return sum((line.quantity * line.unit_price for line in self.lines), Decimal("0"))

    @property
    def discount_total(self) -> Decimal:
        return sum((line.discount for line in self.lines), Decimal("0"))

    @property
    def tax_total(self) -> Decimal:
        return sum((line.tax for line in self.lines), Decimal("0"))

    @property
    def total(self) -> Decimal:
        return self.subtotal - self.discount_total + self.tax_total + self.shipping_charge

    def by_state(self) -> dict[QuantityState, int]:
        totals: dict[QuantityState, int] = {}
        for line in self.lines:
            for state, quantity in line.by_state().items():
                totals[state] = totals.get(state, 0) + quantity
        return totals

    @property
    def status(self) -> str:
        return derive_status(self.by_state())

    @property
    def active_holds(self) -> list[Hold]:
        return [hold for hold in self.holds if hold.active]

    @property
    def on_hold(self) -> bool:
        return bool(self.active_holds)

    def customer_contact(self) -> dict[str, Any]:
        """Who customer emails about this order go to: {email, name} (language when known)."""
        contact: dict[str, Any] = {"email": self.customer.email, "name": self.customer.name}
        return {key: value for key, value in contact.items() if value}

    def units_value(self, line_no: int, quantity: int, *, exponent: int = 2) -> Decimal:
        """What ``quantity`` units of a line cost the customer, tax included (discount spread
        evenly over the units), rounded half up to the currency's minor unit."""
        line = self.line(line_no)
        if quantity <= 0 or line.quantity <= 0:
            return Decimal("0")
        quantum = Decimal(1).scaleb(-exponent)
        return (line.amount * quantity / line.quantity).quantize(quantum, rounding=ROUND_HALF_UP)

    def line(self, line_no: int) -> OrderLine:
        for line in self.lines:
            if line.line_no == line_no:
                return line
        raise OrderChangeRefused(
            f"order {self.order_number} has no line {line_no}",
            line_no=line_no,
        )

    def _ids(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "order_number": self.order_number}

    def _note(
        self,
        at: datetime,
        actor: str,
        action: str,
        *,
        reason: str | None = None,
        line_no: int | None = None,
        old: dict[str, Any] | None = None,
        new: dict[str, Any] | None = None,
    ) -> None:
        self.timeline.append(
            TimelineEntry(
                at=at,
                actor=actor,
                action=action,
                reason=reason,
                line_no=line_no,
                old=to_json_value(old) if old is not None else None,
                new=to_json_value(new) if new is not None else None,
            )
        )

    @contextmanager
    def status_changes_together(self) -> Iterator[None]:
        """Several steps as one change of status: only the net status changes of the whole
        block are evented (units taken back and sourced again elsewhere do not flap a line to
        ``open`` and back)."""
        with self._tracking_status():
            yield

    @contextmanager
    def _tracking_status(self) -> Iterator[None]:
        """Record status-changed events for what the block changes."""
        if self._tracking:  # an outer block records the net change
            yield
            return
        before_order = self.status
        before = {line.line_no: line.status for line in self.lines}
        self._tracking = True
        try:
            yield
        finally:
            self._tracking = False
        for line in self.lines:
            old = before.get(line.line_no)
            if old is not None and old != line.status:
                self.events.append(
                    OrderLineStatusChanged(
                        **self._ids(), line_no=line.line_no, old_status=old, new_status=line.status
                    )
                )
        if before_order != self.status:
            self.events.append(
                OrderStatusChanged(**self._ids(), old_status=before_order, new_status=self.status)
            )

    def _refuse_when_finished(self, change: str) -> None:
        if self.status in ("cancelled",):
            raise OrderChangeRefused(f"{change}: order {self.order_number} is cancelled")

    # -- sourcing ---------------------------------------------------------------------------

    def apply_sourcing(
        self,
        *,
        allocations: Iterable[tuple[int, str, int]],
        backorders: Iterable[tuple[int, int, date | None]],
        actor: str,
        at: datetime,
    ) -> None:
        """Record where open units were allocated (line, location, quantity) and which wait as
        backorders (line, quantity, expected date)."""
        allocated: list[dict[str, Any]] = []
        waiting: list[dict[str, Any]] = []
        with self._tracking_status():
            for line_no, location_code, quantity in allocations:
                line = self.line(line_no)
                source = Q.OPEN if line.quantity_in(Q.OPEN) >= quantity else Q.BACKORDERED
                line.move(quantity, source=source, target=Q.ALLOCATED, location_code=location_code)
                allocated.append(
                    {
                        "line_no": line_no,
                        "sku": line.sku,
                        "location_code": location_code,
                        "quantity": quantity,
                    }
                )
            for line_no, quantity, expected_on in backorders:
                line = self.line(line_no)
                line.move(quantity, source=Q.OPEN, target=Q.BACKORDERED)
                waiting.append(
                    {
                        "line_no": line_no,
                        "sku": line.sku,
                        "quantity": quantity,
                        "expected_on": expected_on,
                    }
                )
                self._promise(line, expected_on, actor=actor, at=at)
        if allocated:
            self._note(at, actor, "allocated", new={"allocations": allocated})
            self.events.append(OrderAllocated(**self._ids(), allocations=allocated))
        if waiting:
            self._note(at, actor, "backordered", new={"lines": waiting})
            self.events.append(OrderBackordered(**self._ids(), lines=waiting))

    def allocate_backordered(
        self, line_no: int, *, location_code: str, quantity: int, actor: str, at: datetime
    ) -> None:
        """Waiting units got stock (a receipt arrived): they are allocated, promise date kept
        only when something still waits."""
        line = self.line(line_no)
        with self._tracking_status():
            line.move(
                quantity, source=Q.BACKORDERED, target=Q.ALLOCATED, location_code=location_code
            )
        allocation = {
            "line_no": line_no,
            "sku": line.sku,
            "location_code": location_code,
            "quantity": quantity,
        }
        self._note(
            at, actor, "allocated", reason="supply arrived", new={"allocations": [allocation]}
        )
        self.events.append(OrderAllocated(**self._ids(), allocations=[allocation]))
        if line.quantity_in(Q.BACKORDERED) == 0:
            self._promise(line, None, actor=actor, at=at)

    def repromise(
        self, line_no: int, promised_on: date | None, *, actor: str, at: datetime
    ) -> None:
        """A new expected date for the line's waiting units (supply moved)."""
        line = self.line(line_no)
        if line.quantity_in(Q.BACKORDERED):
            self._promise(line, promised_on, actor=actor, at=at)

    def _promise(
        self, line: OrderLine, promised_on: date | None, *, actor: str, at: datetime
    ) -> None:
        if line.promised_on == promised_on:
            return
        old = line.promised_on
        line.promised_on = promised_on
        self._note(
            at,
            actor,
            "promise_date_changed",
            line_no=line.line_no,
            old={"promised_on": old},
            new={"promised_on": promised_on},
        )
        self.events.append(
            OrderPromiseDateChanged(
                **self._ids(),
                line_no=line.line_no,
                old_promised_on=old,
                new_promised_on=promised_on,
            )
        )

    def to_source(self) -> list[tuple[OrderLine, int]]:
        """Lines with open units, and how many."""
        return [(line, line.quantity_in(Q.OPEN)) for line in self.lines if line.quantity_in(Q.OPEN)]

    # -- release and progress ----------------------------------------------------------------

    def release(self, *, actor: str, at: datetime) -> list[dict[str, Any]]:
        """Hand every allocated unit to its location; refused while on hold."""
        if self.on_hold:
            kinds = ", ".join(hold.type.value for hold in self.active_holds)
            raise OrderOnHold(
                f"order {self.order_number} is on hold ({kinds}): release the hold first"
            )
        releases: list[dict[str, Any]] = []
        with self._tracking_status():
            for line in self.lines:
                for location_code, quantity in line.at_locations(Q.ALLOCATED):
                    line.move(
                        quantity, source=Q.ALLOCATED, target=Q.RELEASED, location_code=location_code
                    )
                    releases.append(
                        {
                            "line_no": line.line_no,
                            "sku": line.sku,
                            "location_code": location_code,
                            "quantity": quantity,
                        }
                    )
        if not releases:
            raise OrderChangeRefused(f"order {self.order_number} has nothing allocated to release")
        self._note(at, actor, "released", new={"releases": releases})
        self.events.append(OrderReleased(**self._ids(), releases=releases))
        return releases

    def move_quantity(
        self,
        line_no: int,
        quantity: int,
        *,
        source: QuantityState,
        target: QuantityState,
        location_code: str | None,
        actor: str,
        reason: str | None = None,
        at: datetime,
    ) -> None:
        """Fulfillment progress on a line (picked, shipped, ready for pickup, delivered, ...)."""
        line = self.line(line_no)
        if self.on_hold and target not in (Q.CANCELLED, Q.OPEN, Q.RETURNED):
            raise OrderOnHold(f"order {self.order_number} is on hold: it cannot progress")
        with self._tracking_status():
            line.move(quantity, source=source, target=target, location_code=location_code)
        self._note(
            at,
            actor,
            "quantity_moved",
            reason=reason,
            line_no=line_no,
            old={"state": source, "quantity": quantity, "location_code": location_code},
            new={"state": target, "quantity": quantity, "location_code": location_code},
        )

    # -- holds ------------------------------------------------------------------------------

    def place_hold(
        self, *, hold_id: str, type: HoldType, reason: str, actor: str, at: datetime
    ) -> Hold:
        self._refuse_when_finished("placing a hold")
        if any(hold.type == type for hold in self.active_holds):
            raise OrderChangeRefused(f"order {self.order_number} already has a {type} hold")
        if not reason.strip():
            raise InvalidOrder(
                "a hold needs a reason", errors=[field_error("#/reason", "required")]
            )
        hold = Hold(hold_id=hold_id, type=type, reason=reason, placed_by=actor, placed_at=at)
        self.holds.append(hold)
        self._note(at, actor, "hold_placed", reason=reason, new={"hold": type.value})
        self.events.append(
            OrderHoldPlaced(
                **self._ids(), hold_id=hold_id, hold_type=type.value, reason=reason, actor=actor
            )
        )
        return hold

    def release_hold(self, *, type: HoldType, reason: str, actor: str, at: datetime) -> Hold:
        for index, hold in enumerate(self.holds):
            if hold.type == type and hold.active:
                released = replace(hold, released_by=actor, released_at=at, release_reason=reason)
                self.holds[index] = released
                self._note(at, actor, "hold_released", reason=reason, old={"hold": type.value})
                self.events.append(
                    OrderHoldReleased(
                        **self._ids(),
                        hold_id=hold.hold_id,
                        hold_type=type.value,
                        reason=reason,
                        actor=actor,
                    )
                )
                return released
        raise OrderChangeRefused(f"order {self.order_number} has no active {type} hold")

    # -- cancellation -----------------------------------------------------------------------

    def cancel(
        self,
        *,
        actor: str,
        reason: str,
        at: datetime,
        new_request_id: Iterator[str],
        line_no: int | None = None,
        quantity: int | None = None,
    ) -> Cancellation:
        """Cancel the order, a line, or part of a line's quantity.

        Open, backordered and allocated units are cancelled at once (allocations are freed);
        released or picked units become cancel requests their location confirms or refuses.
        Shipped, collected or delivered units cannot be cancelled (that is a return).
        """
        self._refuse_when_finished("cancelling")
        if not reason.strip():
            raise InvalidOrder(
                "a cancellation needs a reason", errors=[field_error("#/reason", "required")]
            )
        if quantity is not None and line_no is None:
            raise InvalidOrder(
                "a quantity needs a line", errors=[field_error("#/line_no", "required")]
            )
        if quantity is not None and quantity <= 0:
            raise InvalidOrder(
                "quantity must be at least 1", errors=[field_error("#/quantity", "must be >= 1")]
            )
        targets = [self.line(line_no)] if line_no is not None else list(self.lines)
        # Decide everything first: a refused cancel changes nothing.
        plan: list[tuple[OrderLine, int, list[tuple[QuantityState, str | None, int]]]] = []
        for line in targets:
            cancellable = self._cancellable(line)
            available = sum(amount for _, _, amount in cancellable)
            wanted = quantity if quantity is not None else available
            if wanted > available:
                past = line.live_quantity - available - self._requested(line)
                raise OrderChangeRefused(
                    f"line {line.line_no} of order {self.order_number}: only {available} of "
                    f"{line.live_quantity} unit(s) can still be cancelled ({past} already "
                    f"shipped, ready or handed over"
                    + (
                        f", {self._requested(line)} awaiting a cancel request"
                        if self._requested(line)
                        else ""
                    )
                    + ")",
                    line_no=line.line_no,
                    cancellable=available,
                )
            take: list[tuple[QuantityState, str | None, int]] = []
            for state, location_code, amount in cancellable:
                if wanted == 0:
                    break
                used = min(wanted, amount)
                take.append((state, location_code, used))
                wanted -= used
            plan.append((line, sum(t[2] for t in take), take))
        if all(total == 0 for _, total, _ in plan):
            raise OrderChangeRefused(
                f"nothing left to cancel on order {self.order_number}"
                + (f" line {line_no}" if line_no is not None else "")
            )
        freed: list[Freed] = []
        requests: list[CancelRequest] = []
        cancelled = 0
        with self._tracking_status():
            for line, _total, take in plan:
                now_cancelled = 0
                for state, location_code, used in take:
                    if state in IMMEDIATELY_CANCELLABLE:
                        line.move(
                            used, source=state, target=Q.CANCELLED, location_code=location_code
                        )
                        now_cancelled += used
                        if state == Q.ALLOCATED and location_code:
                            freed.append(Freed(line.line_no, line.sku, location_code, used))
                    else:
                        assert location_code is not None
                        request = CancelRequest(
                            request_id=next(new_request_id),
                            line_no=line.line_no,
                            location_code=location_code,
                            quantity=used,
                            reason=reason,
                            requested_by=actor,
                            requested_at=at,
                        )
                        requests.append(request)
                        self.cancel_requests.append(request)
                if now_cancelled:
                    cancelled += now_cancelled
                    if line.quantity_in(Q.BACKORDERED) == 0 and line.promised_on is not None:
                        self._promise(line, None, actor=actor, at=at)
                    self._note(
                        at,
                        actor,
                        "cancelled",
                        reason=reason,
                        line_no=line.line_no,
                        old={"live_quantity": line.live_quantity + now_cancelled},
                        new={"live_quantity": line.live_quantity},
                    )
                    self.events.append(
                        OrderLineCancelled(
                            **self._ids(),
                            line_no=line.line_no,
                            sku=line.sku,
                            quantity=now_cancelled,
                            reason=reason,
                        )
                    )
        for request in requests:
            self._note(
                at,
                actor,
                "cancel_requested",
                reason=reason,
                line_no=request.line_no,
                new={"location_code": request.location_code, "quantity": request.quantity},
            )
            self.events.append(
                OrderCancelRequested(
                    **self._ids(),
                    request_id=request.request_id,
                    line_no=request.line_no,
                    location_code=request.location_code,
                    quantity=request.quantity,
                    reason=reason,
                )
            )
        if self.status == "cancelled":
            self.events.append(
                OrderCancelled(
                    **self._ids(),
                    reason=reason,
                    actor=actor,
                    customer=self.customer_contact(),
                    currency=self.currency,
                    lines=[
                        {"sku": line.sku, "description": line.sku, "quantity": amount}
                        for line, amount, _take in plan
                        if amount
                    ],
                )
            )
        return Cancellation(cancelled=cancelled, freed=freed, requests=requests)

    def _requested(self, line: OrderLine, location_code: str | None = None) -> int:
        return sum(
            request.quantity
            for request in self.cancel_requests
            if request.line_no == line.line_no
            and request.status == CancelRequestStatus.PENDING
            and (location_code is None or request.location_code == location_code)
        )

    def _cancellable(self, line: OrderLine) -> list[tuple[QuantityState, str | None, int]]:
        found: list[tuple[QuantityState, str | None, int]] = [
            (state, None, line.quantity_in(state))
            for state in (Q.OPEN, Q.BACKORDERED)
            if line.quantity_in(state)
        ]
        found.extend(
            (Q.ALLOCATED, location, quantity)
            for location, quantity in line.at_locations(Q.ALLOCATED)
        )
        # after release: what is not already asked for, per location
        locations = sorted(
            {loc for state in CANCEL_BY_REQUEST for loc, _ in line.at_locations(state)}
        )
        for location_code in locations:
            there = sum(line.quantity_in(state, location_code) for state in CANCEL_BY_REQUEST)
            free = there - self._requested(line, location_code)
            if free > 0:
                found.append((Q.RELEASED, location_code, free))
        return found

    def _pending_request(self, request_id: str) -> tuple[int, CancelRequest]:
        for index, request in enumerate(self.cancel_requests):
            if request.request_id == request_id:
                if request.status != CancelRequestStatus.PENDING:
                    raise OrderChangeRefused(
                        f"cancel request {request_id} was already {request.status}"
                    )
                return index, request
        raise OrderChangeRefused(f"order {self.order_number} has no cancel request {request_id}")

    def confirm_cancel_request(
        self, request_id: str, *, actor: str, at: datetime, reason: str | None = None
    ) -> list[Freed]:
        """The location stopped the units: they are cancelled and its stock is freed."""
        index, request = self._pending_request(request_id)
        line = self.line(request.line_no)
        there = sum(line.quantity_in(state, request.location_code) for state in CANCEL_BY_REQUEST)
        if there < request.quantity:
            raise OrderChangeRefused(
                f"cancel request {request_id}: only {there} of its {request.quantity} unit(s) are "
                f"still released or picked at {request.location_code} (the rest moved on: "
                "shipped or ready for pickup); refuse it instead"
            )
        left = request.quantity
        freed: list[Freed] = []
        with self._tracking_status():
            for state in CANCEL_BY_REQUEST:
                there = line.quantity_in(state, request.location_code)
                used = min(left, there)
                if used:
                    line.move(
                        used, source=state, target=Q.CANCELLED, location_code=request.location_code
                    )
                    left -= used
        cancelled = request.quantity
        freed.append(Freed(line.line_no, line.sku, request.location_code, cancelled))
        self.cancel_requests[index] = replace(
            request,
            status=CancelRequestStatus.CONFIRMED,
            decided_by=actor,
            decided_at=at,
            decision_reason=reason,
        )
        self._note(
            at,
            actor,
            "cancel_confirmed",
            reason=reason or request.reason,
            line_no=line.line_no,
            old={"live_quantity": line.live_quantity + cancelled},
            new={"live_quantity": line.live_quantity},
        )
        self.events.append(
            OrderCancelRequestConfirmed(
                **self._ids(),
                request_id=request_id,
                line_no=line.line_no,
                location_code=request.location_code,
                quantity=cancelled,
            )
        )
        self.events.append(
            OrderLineCancelled(
                **self._ids(),
                line_no=line.line_no,
                sku=line.sku,
                quantity=cancelled,
                reason=request.reason,
            )
        )
        if self.status == "cancelled":
            self.events.append(
                OrderCancelled(
                    **self._ids(),
                    reason=request.reason,
                    actor=actor,
                    customer=self.customer_contact(),
                    currency=self.currency,
                    lines=[{"sku": line.sku, "description": line.sku, "quantity": cancelled}],
                )
            )
        return freed

    def refuse_cancel_request(
        self, request_id: str, *, actor: str, reason: str, at: datetime
    ) -> None:
        """The location could not stop the units (already on the truck): nothing changes."""
        if not reason.strip():
            raise InvalidOrder(
                "refusing needs a reason", errors=[field_error("#/reason", "required")]
            )
        index, request = self._pending_request(request_id)
        self.cancel_requests[index] = replace(
            request,
            status=CancelRequestStatus.REFUSED,
            decided_by=actor,
            decided_at=at,
            decision_reason=reason,
        )
        self._note(
            at,
            actor,
            "cancel_refused",
            reason=reason,
            line_no=request.line_no,
            old={"request": request_id, "quantity": request.quantity},
        )
        self.events.append(
            OrderCancelRequestRefused(
                **self._ids(),
                request_id=request_id,
                line_no=request.line_no,
                location_code=request.location_code,
                quantity=request.quantity,
                reason=reason,
            )
        )

    # -- changes before release --------------------------------------------------------------

    def _before_release(self, line: OrderLine, change: str) -> None:
        self._refuse_when_finished(change)
        if not line.is_before_release:
            states = ", ".join(
                sorted({s.value for s, _ in line.buckets if s not in BEFORE_RELEASE})
            )
            raise OrderChangeRefused(
                f"{change}: line {line.line_no} of order {self.order_number} was already "
                f"released to its location ({states}); cancel and re-order instead",
                line_no=line.line_no,
            )
        if line.live_quantity == 0:
            raise OrderChangeRefused(
                f"{change}: line {line.line_no} of order {self.order_number} is cancelled",
                line_no=line.line_no,
            )

    def _unsource(self, line: OrderLine) -> list[Freed]:
        """Give the line's allocations back and reopen its units, ready to be sourced again."""
        freed: list[Freed] = []
        for location_code, quantity in line.at_locations(Q.ALLOCATED):
            line.move(quantity, source=Q.ALLOCATED, target=Q.OPEN, location_code=location_code)
            freed.append(Freed(line.line_no, line.sku, location_code, quantity))
        waiting = line.quantity_in(Q.BACKORDERED)
        if waiting:
            line.move(waiting, source=Q.BACKORDERED, target=Q.OPEN)
        return freed

    def change_delivery(
        self,
        line_nos: Sequence[int],
        delivery: Delivery,
        *,
        change: str,
        actor: str,
        reason: str | None,
        at: datetime,
    ) -> list[Freed]:
        """New delivery details for lines not yet released; their units are reopened for
        sourcing (the service sources them again and refuses when they cannot be served)."""
        problems = delivery.problems("#/delivery")
        if problems:
            raise InvalidOrder(
                "; ".join(f"{p['pointer']}: {p['detail']}" for p in problems), errors=problems
            )
        lines = [self.line(line_no) for line_no in line_nos]
        if not lines:
            raise OrderChangeRefused(f"{change}: order {self.order_number} has no such lines")
        for line in lines:
            self._before_release(line, change)
        freed: list[Freed] = []
        with self._tracking_status():
            for line in lines:
                old = line.delivery
                line.delivery = delivery
                freed.extend(self._unsource(line))
                self._note(
                    at,
                    actor,
                    change,
                    reason=reason,
                    line_no=line.line_no,
                    old=old.describe(),
                    new=delivery.describe(),
                )
                self.events.append(
                    OrderChanged(
                        **self._ids(),
                        change=change,
                        line_no=line.line_no,
                        old=old.describe(),
                        new=delivery.describe(),
                    )
                )
        return freed

    def add_line(
        self, request: LineRequest, *, actor: str, reason: str | None, at: datetime
    ) -> OrderLine:
        self._refuse_when_finished("adding a line")
        problems = line_problems(request, self.currency, "#")
        if problems:
            raise InvalidOrder(
                "; ".join(f"{p['pointer']}: {p['detail']}" for p in problems), errors=problems
            )
        if self.by_state().keys() <= {Q.SHIPPED, Q.DELIVERED, Q.COLLECTED, Q.RETURNED, Q.CANCELLED}:
            raise OrderChangeRefused(
                f"adding a line: order {self.order_number} is {self.status}; "
                "place a new order instead"
            )
        line = OrderLine.new(
            line_no=max(line.line_no for line in self.lines) + 1,
            sku=request.sku,
            quantity=request.quantity,
            unit_price=request.unit_price,
            discount=request.discount,
            tax=request.tax,
            delivery=request.delivery,
        )
        with self._tracking_status():
            self.lines.append(line)
        self._note(
            at, actor, "line_added", reason=reason, line_no=line.line_no, new=line.describe()
        )
        self.events.append(
            OrderLineAdded(
                **self._ids(),
                line_no=line.line_no,
                sku=line.sku,
                quantity=line.quantity,
                delivery_method=line.delivery.method.value,
            )
        )
        return line

    def change_quantity(
        self, line_no: int, quantity: int, *, actor: str, reason: str | None, at: datetime
    ) -> list[Freed]:
        """Set a line's ordered quantity (cancelled units aside) before release. More units are
        opened for sourcing; fewer take open, then backordered, then allocated units away.
        Discount and tax are scaled to the new quantity (rounded to the currency)."""
        line = self.line(line_no)
        if quantity <= 0:
            raise InvalidOrder(
                "quantity must be at least 1 (cancel the line to remove it)",
                errors=[field_error("#/quantity", "must be >= 1")],
            )
        self._before_release(line, "changing the quantity")
        old_live = line.live_quantity
        if quantity == old_live:
            raise OrderChangeRefused(
                f"line {line_no} of order {self.order_number} already has quantity {quantity}"
            )
        old = {"quantity": old_live, "discount": line.discount, "tax": line.tax}
        freed: list[Freed] = []
        with self._tracking_status():
            old_ordered = line.quantity
            new_ordered = old_ordered + quantity - old_live
            line.discount = quantize(line.discount * new_ordered / old_ordered, self.currency)
            line.tax = quantize(line.tax * new_ordered / old_ordered, self.currency)
            if quantity > old_live:
                line.buckets[(Q.OPEN, None)] = line.quantity_in(Q.OPEN) + quantity - old_live
                line.quantity = new_ordered
            else:
                left = old_live - quantity
                for state, location_code, amount in self._cancellable(line):
                    if left == 0:
                        break
                    used = min(left, amount)
                    line._remove(used, state, location_code)
                    if state == Q.ALLOCATED and location_code:
                        freed.append(Freed(line.line_no, line.sku, location_code, used))
                    left -= used
                if line.quantity_in(Q.BACKORDERED) == 0 and line.promised_on is not None:
                    self._promise(line, None, actor=actor, at=at)
        new = {"quantity": quantity, "discount": line.discount, "tax": line.tax}
        self._note(at, actor, "quantity_changed", reason=reason, line_no=line_no, old=old, new=new)
        self.events.append(
            OrderChanged(
                **self._ids(),
                change="quantity_changed",
                line_no=line_no,
                old=to_json_value(old),
                new=to_json_value(new),
            )
        )
        return freed
