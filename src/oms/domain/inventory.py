"""Inventory positions and Available-to-Promise arithmetic, reservations and feeds.

A position is the stock of one item at one location::

    ATP = max(0, on_hand - allocated - reserved - blocked - safety_stock)

``reserved`` counts only holds that have not expired at the moment asked about: a hold past its
``expires_at`` never counts, even before the worker has freed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from oms.domain.errors import Conflict, Invalid, NotFound
from oms.domain.events import DomainEvent
from oms.domain.locations import LocationType

# Default safety stock kept back per location type, copied into a position when it is created
# unless the position has its own value (store shelves lose units to walk-in shoppers).
DEFAULT_SAFETY_STOCK: Mapping[LocationType, int] = {
    LocationType.DC: 0,
    LocationType.STORE: 2,
    LocationType.DARK_STORE: 1,
    LocationType.VENDOR: 0,
    LocationType.THIRD_PARTY_LOGISTICS: 0,
    LocationType.LOCKER: 0,
}


def atp(*, on_hand: int, allocated: int, reserved: int, blocked: int, safety_stock: int) -> int:
    return max(0, on_hand - allocated - reserved - blocked - safety_stock)


@dataclass(frozen=True)
class ChannelBuffer:
    """A channel sees ``ATP * (100 - percent) / 100 - units`` (rounded down, never below 0)."""

    channel: str
    percent: int = 0
    units: int = 0

    def apply(self, available: int) -> int:
        if available <= 0:
            return 0
        return max(0, available * (100 - self.percent) // 100 - self.units)

    def apply_all(self, available: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """:meth:`apply` to every figure of an array (a basket's ATP per candidate location)."""
        if not (self.percent or self.units):
            return np.maximum(available, 0)
        seen = np.maximum(available, 0) * (100 - self.percent) // 100 - self.units
        return np.where(available > 0, np.maximum(seen, 0), 0)


NO_BUFFER = ChannelBuffer(channel="")


@dataclass(frozen=True)
class StockLine:
    """A quantity of one SKU at one location: the unit of allocate/deallocate/consume."""

    sku: str
    location_code: str
    quantity: int

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise Invalid(
                f"quantity of {self.sku} at {self.location_code} must be positive, "
                f"got {self.quantity}",
                errors=[{"pointer": "#/quantity", "detail": "must be > 0"}],
            )


@dataclass(frozen=True)
class Position:
    sku: str
    location_code: str
    on_hand: int
    allocated: int
    reserved: int
    """Active, unexpired holds only (as of the time the position was read)."""
    blocked: int
    safety_stock: int
    in_transit: int = 0
    updated_at: datetime | None = None

    @property
    def atp(self) -> int:
        return atp(
            on_hand=self.on_hand,
            allocated=self.allocated,
            reserved=self.reserved,
            blocked=self.blocked,
            safety_stock=self.safety_stock,
        )


@dataclass(frozen=True)
class PositionChange:
    """A position before and after one change, as the repository saw it."""

    sku: str
    location_code: str
    reason: str
    before: Position
    after: Position
    low_stock_threshold: int


@dataclass(frozen=True)
class SupplyLine:
    reference: str
    kind: str  # purchase_order | transfer
    sku: str
    location_code: str
    quantity: int
    expected_on: date
    status: str  # open | in_transit | received | cancelled


# --- refusals -------------------------------------------------------------------------------


class InsufficientStock(Conflict):
    """Fewer units are available to promise than were asked for."""

    slug = "insufficient-stock"
    title = "Not enough stock available"

    def __init__(self, *, sku: str, location: str | None, requested: int, available: int) -> None:
        where = f"at {location}" if location else "in the network"
        super().__init__(
            f"{requested} x {sku} requested {where} but only {available} available",
            sku=sku,
            location=location,
            requested=requested,
            available=available,
        )
        self.sku = sku
        self.location = location
        self.requested = requested
        self.available = available


class NotAllocated(Conflict):
    slug = "not-allocated"
    title = "Fewer units are allocated than the request releases or consumes"


class ReservationNotFound(NotFound):
    slug = "reservation-not-found"
    title = "No such reservation"


class ReservationNotActive(Conflict):
    """The reservation was confirmed, released or has expired."""

    slug = "reservation-not-active"
    title = "The reservation is no longer active"


class UnknownStock(NotFound):
    slug = "unknown-stock"
    title = "Unknown item or location"


# --- reservations -----------------------------------------------------------------------------


class ReservationStatus(StrEnum):
    ACTIVE = "active"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ReservationLine:
    sku: str
    location_code: str
    quantity: int
    status: ReservationStatus


@dataclass(frozen=True)
class Reservation:
    id: str
    reference: str
    channel: str
    status: ReservationStatus
    expires_at: datetime
    created_at: datetime
    lines: tuple[ReservationLine, ...]

    def effective_status(self, now: datetime) -> ReservationStatus:
        """An active hold past its expiry is expired, whether or not the worker has run."""
        if self.status is ReservationStatus.ACTIVE and self.expires_at <= now:
            return ReservationStatus.EXPIRED
        return self.status


# --- feeds ------------------------------------------------------------------------------------


class DeltaKind(StrEnum):
    RECEIPT = "receipt"
    SALE = "sale"
    SHRINK = "shrink"
    COUNT_CORRECTION = "count_correction"
    RETURN = "return"

    @property
    def sign(self) -> int:
        """+1 adds stock, -1 removes it, 0: the quantity is signed (a correction)."""
        return {
            DeltaKind.RECEIPT: 1,
            DeltaKind.RETURN: 1,
            DeltaKind.SALE: -1,
            DeltaKind.SHRINK: -1,
            DeltaKind.COUNT_CORRECTION: 0,
        }[self]


def delta_change(kind: DeltaKind, quantity: int) -> int:
    """The signed change of on hand a delta asks for."""
    if kind.sign == 0:
        if quantity == 0:
            raise Invalid("a count correction of 0 changes nothing")
        return quantity
    if quantity <= 0:
        raise Invalid(f"a {kind} quantity must be positive, got {quantity}")
    return kind.sign * quantity


def snapshot_is_stale(
    *,
    as_of: datetime,
    sequence: int | None,
    last_as_of: datetime | None,
    last_sequence: int | None,
) -> bool:
    """An absolute count older than (or the same as) the last applied one changes nothing.

    Sequences, when both sides have one, decide; otherwise the source timestamps do.
    """
    if sequence is not None and last_sequence is not None:
        return sequence <= last_sequence
    if last_as_of is None:
        return False
    return as_of <= last_as_of


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StockEvent(DomainEvent):
    """An event about one position; its fields are plain strings and integers."""

    sku: str
    location: str

    @property
    def subject(self) -> str:
        return f"inventory/{self.sku}@{self.location}"

    def data(self) -> dict[str, Any]:
        return dict(vars(self))  # cheaper than the generic walk: feeds emit many of these


@dataclass(frozen=True, kw_only=True)
class InventoryChanged(StockEvent):
    type: ClassVar[str] = "inventory.changed"
    reason: str
    on_hand: int
    allocated: int
    reserved: int
    blocked: int
    safety_stock: int
    atp: int
    previous_atp: int


@dataclass(frozen=True, kw_only=True)
class AvailabilityLow(StockEvent):
    type: ClassVar[str] = "availability.low"
    atp: int
    threshold: int


@dataclass(frozen=True, kw_only=True)
class AvailabilityOut(StockEvent):
    type: ClassVar[str] = "availability.out"


SNAPSHOT_EVENT_FIELDS = ("sku", "location", "on_hand", "blocked", "atp", "previous_atp")
"""The columns of each entry of a snapshot's ``inventory.changed`` summary (``positions``)."""
SNAPSHOT_EVENT_POSITIONS = 1000
"""At most this many positions per summary event; a bigger batch emits several parts."""


@dataclass(frozen=True, kw_only=True)
class InventoryCountChanged(DomainEvent):
    """``inventory.changed`` for a whole snapshot batch: one event lists every position the
    count changed, compactly (one row per position, columns in ``fields``), instead of one event
    per position. Consumers tell it from the per-position shape by its ``positions`` key."""

    type: ClassVar[str] = "inventory.changed"
    reason: str
    source: str
    as_of: str
    sequence: int | None
    part: int
    parts: int
    positions: list[list[Any]]

    @property
    def subject(self) -> str:
        return f"inventory/snapshot/{self.source}"

    def data(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "source": self.source,
            "as_of": self.as_of,
            "sequence": self.sequence,
            "part": self.part,
            "parts": self.parts,
            "count": len(self.positions),
            "fields": list(SNAPSHOT_EVENT_FIELDS),
            "positions": self.positions,
        }


def threshold_event(
    sku: str, location: str, *, atp: int, previous_atp: int, threshold: int
) -> DomainEvent | None:
    """``availability.out`` when ATP reaches 0, ``availability.low`` when it crosses the item's
    threshold downwards (still > 0); None otherwise."""
    if atp == 0 < previous_atp:
        return AvailabilityOut(sku=sku, location=location)
    if 0 < atp <= threshold < previous_atp:
        return AvailabilityLow(sku=sku, location=location, atp=atp, threshold=threshold)
    return None


def snapshot_events(
    rows: list[list[Any]],
    thresholds: list[int],
    *,
    source: str,
    as_of: datetime,
    sequence: int | None,
) -> list[DomainEvent]:
    """The events of one applied snapshot batch: the ``inventory.changed`` summary (in parts of
    :data:`SNAPSHOT_EVENT_POSITIONS`) and a threshold event per position that crossed one.
    ``rows`` are the changed positions as :data:`SNAPSHOT_EVENT_FIELDS`; ``thresholds`` the
    low-stock threshold of each row's item."""
    events: list[DomainEvent] = []
    for row, threshold in zip(rows, thresholds, strict=True):
        crossed = threshold_event(
            row[0], row[1], atp=row[4], previous_atp=row[5], threshold=threshold
        )
        if crossed is not None:
            events.append(crossed)
    parts = (len(rows) + SNAPSHOT_EVENT_POSITIONS - 1) // SNAPSHOT_EVENT_POSITIONS
    summaries: list[DomainEvent] = [
        InventoryCountChanged(
            reason="snapshot",
            source=source,
            as_of=as_of.isoformat(),
            sequence=sequence,
            part=part + 1,
            parts=parts,
            positions=rows[part * SNAPSHOT_EVENT_POSITIONS : (part + 1) * SNAPSHOT_EVENT_POSITIONS],
        )
        for part in range(parts)
    ]
    return summaries + events


def change_events(change: PositionChange) -> list[DomainEvent]:
    """``inventory.changed`` for every change, plus a threshold event when ATP crosses one."""
    after, before = change.after, change.before
    events: list[DomainEvent] = [
        InventoryChanged(
            sku=change.sku,
            location=change.location_code,
            reason=change.reason,
            on_hand=after.on_hand,
            allocated=after.allocated,
            reserved=after.reserved,
            blocked=after.blocked,
            safety_stock=after.safety_stock,
            atp=after.atp,
            previous_atp=before.atp,
        )
    ]
    crossed = threshold_event(
        change.sku,
        change.location_code,
        atp=after.atp,
        previous_atp=before.atp,
        threshold=change.low_stock_threshold,
    )
    if crossed is not None:
        events.append(crossed)
    return events
