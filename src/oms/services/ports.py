"""What the use cases need from the outside world, as protocols the adapters implement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import TracebackType
from typing import Any, Protocol, Self

from oms.domain.access import Role
from oms.domain.events import DomainEvent
from oms.domain.inventory import (
    ChannelBuffer,
    DeltaKind,
    Position,
    PositionChange,
    Reservation,
    StockLine,
    SupplyLine,
)
from oms.domain.items import Item
from oms.domain.locations import Capability, Location, LocationStatus, LocationType


class Clock(Protocol):
    def now(self) -> datetime: ...


class Ids(Protocol):
    def new_id(self) -> str: ...

    def new_token(self, nbytes: int = 24) -> str: ...


@dataclass(frozen=True)
class StoredApiKey:
    key_id: str
    name: str
    role: Role
    location_codes: frozenset[str]
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyRepository(Protocol):
    def add(self, key: StoredApiKey) -> None: ...

    def get(self, key_id: str) -> StoredApiKey | None: ...

    def list(self) -> Sequence[StoredApiKey]: ...

    def revoke(self, key_id: str, *, at: datetime) -> bool: ...


@dataclass(frozen=True)
class IdempotencyRecord:
    scope: str
    key: str
    request_hash: str
    state: str  # "in_progress" | "completed"
    response_status: int | None
    response_headers: dict[str, str]
    response_body: bytes | None
    created_at: datetime


class IdempotencyRepository(Protocol):
    def get(self, scope: str, key: str) -> IdempotencyRecord | None: ...

    def try_start(self, scope: str, key: str, request_hash: str, *, at: datetime) -> bool:
        """Claim the key; False when another record holds it already."""
        ...

    def restart_stale(
        self, scope: str, key: str, request_hash: str, *, older_than: datetime, at: datetime
    ) -> bool: ...

    def complete(
        self,
        scope: str,
        key: str,
        *,
        status: int,
        headers: dict[str, str],
        body: bytes,
        at: datetime,
    ) -> None: ...

    def abandon(self, scope: str, key: str) -> None: ...

    def purge(self, *, older_than: datetime) -> int: ...


@dataclass(frozen=True)
class OutboxEvent:
    """A committed event as stored in the outbox, CloudEvents-shaped."""

    position: int
    event_id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]
    published_at: datetime | None = None

    def cloud_event(self) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": self.event_id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time.isoformat(),
            "datacontenttype": "application/json",
            "data": self.data,
        }


class OutboxRepository(Protocol):
    def add(self, events: Sequence[OutboxEvent]) -> None: ...

    def read_after(
        self, position: int, *, limit: int, types: Sequence[str] | None = None
    ) -> list[OutboxEvent]: ...

    def claim_unpublished(self, *, limit: int) -> list[OutboxEvent]:
        """Lock and return the oldest unpublished events (SKIP LOCKED where the database has it)."""
        ...

    def mark_published(self, positions: Sequence[int], *, at: datetime) -> None: ...


# --- inventory ----------------------------------------------------------------------------------


class LocationRepository(Protocol):
    def add(self, location: Location, *, at: datetime) -> None:
        """Raises LocationExists when the code is taken."""
        ...

    def update(self, location: Location, *, at: datetime) -> None:
        """Raises LocationNotFound."""
        ...

    def upsert_many(self, locations: Sequence[Location], *, at: datetime) -> tuple[int, int]:
        """Create or replace by code; returns (created, updated)."""
        ...

    def get(self, code: str) -> Location | None: ...

    def require(self, code: str) -> Location:
        """The location, or LocationNotFound."""
        ...

    def get_many(self, codes: Sequence[str]) -> dict[str, Location]: ...

    def list(
        self,
        *,
        type: LocationType | None = None,
        status: LocationStatus | None = None,
        capability: Capability | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Location]:
        """By code; ``after`` is the last code of the previous page."""
        ...

    def consume_capacity(self, code: str, *, on: date, amount: int = 1) -> int:
        """Use ``amount`` of the day's capacity atomically; the remaining capacity (None-capacity
        locations report -1). Raises CapacityExhausted."""
        ...

    def release_capacity(self, code: str, *, on: date, amount: int = 1) -> None: ...

    def capacity_used(self, codes: Sequence[str], *, on: date) -> dict[str, int]: ...


class ItemRepository(Protocol):
    def add(self, item: Item, *, at: datetime) -> None:
        """Raises ItemExists."""
        ...

    def update(self, item: Item, *, at: datetime) -> None: ...

    def upsert_many(self, items: Sequence[Item], *, at: datetime) -> tuple[int, int]: ...

    def get(self, sku: str) -> Item | None: ...

    def require(self, sku: str) -> Item:
        """The item, or ItemNotFound."""
        ...

    def get_many(self, skus: Sequence[str]) -> dict[str, Item]: ...

    def list(self, *, after: str | None = None, limit: int | None = None) -> list[Item]: ...


@dataclass(frozen=True)
class SnapshotLine:
    sku: str
    location_code: str
    on_hand: int
    blocked: int | None = None


@dataclass(frozen=True)
class DeltaLine:
    source: str
    message_id: str
    sku: str
    location_code: str
    kind: DeltaKind
    quantity: int
    occurred_at: datetime
    reason: str | None = None


@dataclass
class FeedOutcome:
    """What a feed did: applied positions, and what it ignored and why (reported, not fatal)."""

    applied: int = 0
    unchanged: int = 0
    stale: list[dict[str, object]] = field(default_factory=list)
    duplicates: list[dict[str, object]] = field(default_factory=list)
    superseded: list[dict[str, object]] = field(default_factory=list)
    changes: list[PositionChange] = field(default_factory=list)


class InventoryRepository(Protocol):
    """Stock per (item, location). Every write is an atomic conditional UPDATE; rows are touched
    in (item, location) order; every change records ``inventory.changed`` (and threshold events)
    in the unit of work it runs in."""

    # -- used by order capture, sourcing and fulfillment ------------------------------------

    def allocate(
        self,
        lines: Sequence[StockLine],
        *,
        at: datetime,
        channel: str | None = None,
        reason: str = "allocated",
    ) -> list[PositionChange]:
        """All or nothing: InsufficientStock(sku, location, available) for the first line short.
        The caller's unit of work must be rolled back (it is, when the exception leaves it)."""
        ...

    def deallocate(
        self, lines: Sequence[StockLine], *, at: datetime, reason: str = "deallocated"
    ) -> list[PositionChange]:
        """Give allocated units back to the pool; NotAllocated if fewer are allocated."""
        ...

    def consume(
        self, lines: Sequence[StockLine], *, at: datetime, reference: str
    ) -> list[PositionChange]:
        """Shipped or handed over: on hand and allocated both go down (NotAllocated if short)."""
        ...

    def confirm_reservation(
        self, reservation_id: str, *, at: datetime, reason: str = "reservation confirmed"
    ) -> list[StockLine]:
        """Turn an active hold into an allocation; the allocated lines. ReservationNotFound,
        ReservationNotActive (confirmed, released or expired, even if not yet freed)."""
        ...

    def atp(
        self,
        skus: Sequence[str],
        *,
        at: datetime,
        location_codes: Sequence[str] | None = None,
        channel: str | None = None,
    ) -> dict[str, dict[str, int]]:
        """sku -> {location code: ATP (channel buffer applied)}, only positive ATP listed."""
        ...

    def positions(
        self,
        skus: Sequence[str],
        *,
        at: datetime,
        location_codes: Sequence[str] | None = None,
    ) -> list[Position]:
        """Positions with ``reserved`` counting only holds unexpired at ``at``."""
        ...

    def channel_buffer(self, channel: str | None) -> ChannelBuffer: ...

    # -- reservations ---------------------------------------------------------------------------

    def reserve(
        self,
        lines: Sequence[StockLine],
        *,
        reservation_id: str,
        reference: str,
        channel: str,
        expires_at: datetime,
        at: datetime,
    ) -> Reservation:
        """All or nothing, like allocate."""
        ...

    def get_reservation(self, reservation_id: str) -> Reservation | None: ...

    def release_reservation(self, reservation_id: str, *, at: datetime) -> Reservation: ...

    def release_expired(self, *, at: datetime, limit: int) -> int:
        """Free up to ``limit`` expired holds; how many reservations were freed."""
        ...

    # -- feeds and stock keeping ----------------------------------------------------------------

    def apply_snapshot(
        self,
        lines: Sequence[SnapshotLine],
        *,
        as_of: datetime,
        sequence: int | None,
        source: str,
        at: datetime,
        record_events: bool = True,
    ) -> FeedOutcome: ...

    def apply_deltas(self, deltas: Sequence[DeltaLine], *, at: datetime) -> FeedOutcome: ...

    def set_blocked(
        self, sku: str, location_code: str, *, blocked: int, at: datetime, reason: str
    ) -> PositionChange: ...

    def set_safety_stock(
        self, sku: str, location_code: str, *, quantity: int | None, at: datetime
    ) -> PositionChange:
        """None: back to the default of the location's type."""
        ...

    def set_safety_stock_default(
        self, location_type: LocationType, quantity: int, *, at: datetime
    ) -> int:
        """Set the default for a location type; updates positions without their own value."""
        ...

    def safety_stock_defaults(self) -> Mapping[LocationType, int]: ...

    def set_channel_buffer(self, buffer: ChannelBuffer) -> None: ...

    def add_supply(self, lines: Sequence[SupplyLine], *, at: datetime) -> None: ...

    def supply(
        self, skus: Sequence[str], *, location_codes: Sequence[str] | None = None
    ) -> list[SupplyLine]:
        """Open and in-transit supply, by expected date."""
        ...

    def movement_totals(self, skus: Sequence[str]) -> dict[tuple[str, str], int]:
        """Sum of on-hand changes in the movement journal per (sku, location)."""
        ...


class UnitOfWork(Protocol):
    """One transaction. Events recorded with :meth:`record` reach the outbox in the same commit."""

    @property
    def api_keys(self) -> ApiKeyRepository: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def locations(self) -> LocationRepository: ...

    @property
    def items(self) -> ItemRepository: ...

    @property
    def inventory(self) -> InventoryRepository: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def record(self, *events: DomainEvent) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False) -> UnitOfWork: ...
