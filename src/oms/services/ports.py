"""What the use cases need from the outside world, as protocols the adapters implement."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol, Self

from oms.domain.access import Role
from oms.domain.care import Appeasement, Note
from oms.domain.events import DomainEvent
from oms.domain.fulfillment import Fulfillment
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
from oms.domain.notifications import ContactPreferences
from oms.domain.orders import Order
from oms.domain.payments import Money, Tender, TenderPolicy
from oms.domain.processes import (
    BufferedMessage,
    HistoryEntry,
    ProcessDefinition,
    ProcessInstance,
    ProcessTask,
    ProcessTimer,
    TaskState,
    TimerState,
)
from oms.domain.promising import IntArray
from oms.domain.returns import Return
from oms.domain.webhooks import DeliveryStatus


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


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of the event feed. ``next_after`` is where the next read starts: the last event's
    position, or, when a type filter skipped events, the last position known to be settled."""

    events: list[OutboxEvent]
    next_after: int


class OutboxRepository(Protocol):
    def add(self, events: Sequence[OutboxEvent]) -> None: ...

    def read_after(
        self,
        position: int,
        *,
        limit: int,
        types: Sequence[str] | None = None,
        settled_before: datetime | None = None,
    ) -> EventPage:
        """Committed events after ``position``, in position order, never past a position that a
        transaction still in flight may fill (see :class:`EventPage`).

        On PostgreSQL positions come from a sequence taken before commit, so a later position can
        become visible before an earlier one. The page stops before the first gap unless the event
        after the gap was written before ``settled_before`` (a rolled-back transaction's gap, or one
        left by a crash, is then skipped). ``None`` treats every gap as settled."""
        ...

    def claim_unpublished(self, *, limit: int) -> list[OutboxEvent]:
        """Lock and return the oldest unpublished events (SKIP LOCKED where the database has it)."""
        ...

    def mark_published(self, positions: Sequence[int], *, at: datetime) -> None: ...


class ProcessRepository(Protocol):
    """Process definitions, instances, associate tasks, timers and history."""

    def add_definition(
        self, *, key: str, name: str, bpmn_xml: str, checksum: str, at: datetime, by: str
    ) -> ProcessDefinition:
        """Store the next version of ``key``."""
        ...

    def get_definition(self, definition_id: int) -> ProcessDefinition | None: ...

    def latest_definition(self, key: str) -> ProcessDefinition | None: ...

    def latest_definition_id(self, key: str) -> int | None:
        """The id of the newest version of ``key`` (without its BPMN)."""
        ...

    def definition_version(self, key: str, version: int) -> ProcessDefinition | None: ...

    def list_definitions(self, key: str | None = None) -> list[ProcessDefinition]: ...

    def add_instance(self, instance: ProcessInstance) -> None: ...

    def get_instance(self, instance_id: str, *, for_update: bool = False) -> ProcessInstance | None:
        """``for_update`` locks the row (PostgreSQL) until the unit of work ends."""
        ...

    def running_instances(self, correlation_key: str) -> list[ProcessInstance]:
        """Running instances with this correlation key, locked for update."""
        ...

    def instances_for(self, correlation_key: str) -> list[ProcessInstance]: ...

    def save_instance(self, instance: ProcessInstance, *, expected_revision: int) -> bool:
        """Write the instance if its revision is still ``expected_revision``; False if not."""
        ...

    def add_task(self, task: ProcessTask) -> None: ...

    def get_task(self, task_id: str, *, for_update: bool = False) -> ProcessTask | None: ...

    def save_task(self, task: ProcessTask) -> None: ...

    def tasks_of(self, instance_id: str) -> list[ProcessTask]: ...

    def list_tasks(
        self,
        *,
        location_codes: Sequence[str] | None,
        candidate_roles: Sequence[str] | None = None,
        states: Sequence[TaskState],
        limit: int,
    ) -> list[ProcessTask]: ...

    def add_timer(self, timer: ProcessTimer) -> None: ...

    def timers_of(self, instance_id: str) -> list[ProcessTimer]: ...

    def set_timer_state(
        self,
        timer_id: str,
        *,
        expected: TimerState,
        state: TimerState,
        at: datetime | None = None,
        error: str | None = None,
    ) -> bool:
        """Conditional update: True only for the caller that moved it from ``expected``."""
        ...

    def close_pending_timers(
        self, instance_id: str, *, now: datetime, cancelling: bool
    ) -> list[ProcessTimer]:
        """Move every pending timer of the instance to fired (due by ``now``, unless
        ``cancelling``; ``fired_at`` is ``now``) or cancelled, in one statement; the timers
        moved, as they are now, earliest due first."""
        ...

    def claim_due_timers(
        self, *, now: datetime, limit: int, skip: Sequence[str] = ()
    ) -> list[ProcessTimer]:
        """Pending timers due by ``now`` (earliest first), locked; ``FOR UPDATE SKIP LOCKED`` on
        PostgreSQL, so that several workers share them out."""
        ...

    def buffer_message(self, message: BufferedMessage) -> None: ...

    def kept_here(self, correlation_key: str) -> bool:
        """Whether this unit of work has kept a message for this key (``buffer_message``)."""
        ...

    def buffered_messages(
        self, correlation_key: str, message_names: Sequence[str]
    ) -> list[BufferedMessage]:
        """Unconsumed messages for this key and these names, oldest first, locked."""
        ...

    def consume_message(self, message_id: str, *, instance_id: str, at: datetime) -> bool: ...

    def add_history(self, entries: Sequence[HistoryEntry]) -> None: ...

    def history(self, instance_id: str) -> list[HistoryEntry]: ...


@dataclass(frozen=True)
class EventDelivery:
    """An event handed to a broker: channel ``nats``, the stream, its sequence there."""

    event_id: str
    channel: str
    target: str
    sequence: int | None
    duplicate: bool
    delivered_at: datetime


class EventDeliveryRepository(Protocol):
    def add(self, deliveries: Sequence[EventDelivery]) -> None: ...

    def for_event(self, event_id: str) -> list[EventDelivery]: ...


@dataclass(frozen=True)
class WebhookSubscription:
    subscription_id: str
    name: str
    url: str
    event_types: tuple[str, ...]
    secret: str
    active: bool
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class WebhookDelivery:
    """One event for one subscription. ``round_attempts`` counts attempts since the last replay
    (the retry budget); ``attempt_count`` counts all of them."""

    delivery_id: str
    subscription_id: str
    event_id: str
    event_position: int
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    round_attempts: int
    replays: int
    next_attempt_at: datetime | None
    created_at: datetime
    last_attempt_at: datetime | None = None
    last_response_status: int | None = None
    last_error: str | None = None
    succeeded_at: datetime | None = None
    dead_lettered_at: datetime | None = None


@dataclass(frozen=True)
class WebhookAttempt:
    delivery_id: str
    number: int
    started_at: datetime
    duration_ms: int
    response_status: int | None
    error: str | None
    succeeded: bool


@dataclass(frozen=True)
class DueWebhook:
    """A delivery claimed (leased) for one attempt, with what it takes to send it."""

    delivery: WebhookDelivery
    lease_token: str
    url: str
    secret: str
    event: OutboxEvent


class WebhookRepository(Protocol):
    def add_subscription(self, subscription: WebhookSubscription) -> None: ...

    def get_subscription(self, subscription_id: str) -> WebhookSubscription | None: ...

    def list_subscriptions(self) -> list[WebhookSubscription]: ...

    def update_subscription(self, subscription: WebhookSubscription) -> None: ...

    def delete_subscription(self, subscription_id: str) -> bool: ...

    def active_subscriptions(self) -> list[WebhookSubscription]: ...

    def add_deliveries(self, deliveries: Sequence[WebhookDelivery]) -> None: ...

    def get_delivery(self, delivery_id: str) -> WebhookDelivery | None: ...

    def list_deliveries(
        self,
        subscription_id: str,
        *,
        status: DeliveryStatus | None,
        after_position: int,
        limit: int,
    ) -> list[WebhookDelivery]: ...

    def attempts(self, delivery_id: str) -> list[WebhookAttempt]: ...

    def claim_due(
        self, *, now: datetime, limit: int, lease_token: str, leased_until: datetime
    ) -> list[DueWebhook]:
        """Lease the deliveries due at ``now`` (of active subscriptions) that no one else holds."""
        ...

    def finish_attempt(
        self,
        attempt: WebhookAttempt,
        *,
        lease_token: str,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Record the attempt; update the delivery only if this lease still holds it."""
        ...

    def replay(self, delivery_id: str, *, at: datetime) -> bool:
        """Schedule a delivery that is not waiting (succeeded or dead-lettered) once more."""
        ...

    def replay_dead_letters(self, subscription_id: str, *, at: datetime) -> int: ...


@dataclass(frozen=True)
class WebhookResponse:
    """What came back from one webhook request: a status code, or an error (timeout, refused)."""

    status_code: int | None
    error: str | None
    duration_ms: int
    body_excerpt: str = ""


class WebhookSender(Protocol):
    def send(
        self, url: str, *, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> WebhookResponse: ...


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

    def use_capacity(self, amounts: Mapping[str, int], *, on: date) -> None:
        """Add to (negative: give back) the day's capacity used per location code, without
        checking the limit (never below 0); going over is the "capacity exhausted" re-plan's
        business."""
        ...


@dataclass(frozen=True)
class BasketStock:
    items: dict[str, Item]
    """The basket's items by SKU (an unknown SKU is missing)."""
    atp: dict[str, IntArray]
    """ATP per SKU asked for, one slot per location code asked for."""


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
    """Per-position changes (deltas). A snapshot is applied set-based in SQL and lists none
    here: its changes are in its ``inventory.changed`` summary event."""
    raised: set[str] = field(default_factory=set)
    """SKUs whose on hand went up (for the stock-increase listeners)."""


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
        earmarked: bool = False,
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

    def basket_stock(
        self,
        skus: Sequence[str],
        *,
        at: datetime,
        codes: Sequence[str],
        channel: str | None = None,
    ) -> BasketStock:
        """The items of a basket (those that exist) and the figures of :meth:`atp` as arrays:
        sku -> ATP at ``codes[i]`` in slot ``i`` (0 where nothing is available), in one round
        trip where the database allows: an availability read that weighs every location."""
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

    def reserve_at_once(
        self,
        line: StockLine,
        *,
        reservation_id: str,
        reference: str,
        channel: str,
        expires_at: datetime,
        at: datetime,
    ) -> Reservation | None:
        """A one-line hold at a location, in a ``single_statement`` unit of work: the hold, or
        None when this fast way held nothing (then :meth:`reserve` decides and says why)."""
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


# --- orders -------------------------------------------------------------------------------------


class DuplicateChannelReference(Exception):
    """Another transaction stored an order with the same channel reference first."""


class DuplicateOrderNumber(Exception):
    """Another order already has the number made from the new order's id (50 random bits: rare,
    but expected once in some tens of millions of orders); capture tries again with a new id."""


class DuplicateRmaNumber(Exception):
    """Another return already has the RMA number made from the new return's id (50 random bits,
    as for order numbers); authorising tries again with a new id."""


@dataclass(frozen=True)
class WaitingLine:
    """Backordered units of one order line, listed first come first served."""

    order_id: str
    line_no: int
    quantity: int
    created_at: datetime


class OrderRepository(Protocol):
    def add(self, order: Order, *, at: datetime) -> None:
        """Insert a new order; DuplicateChannelReference when another has its channel reference
        (the unit of work must then be rolled back)."""
        ...

    def save(self, order: Order, *, at: datetime) -> None:
        """Write back a loaded order; OrderChangedConcurrently if its version moved on."""
        ...

    def save_many(self, batch: Sequence[Order], *, at: datetime) -> None:
        """Write back loaded orders in bulk; OrderChangedConcurrently if a version moved on."""
        ...

    def get(self, order_id: str, *, for_update: bool = False) -> Order | None: ...

    def get_many(self, order_ids: Sequence[str], *, for_update: bool = False) -> dict[str, Order]:
        """The orders found, by id (row locks on PostgreSQL with ``for_update``)."""
        ...

    def id_for_channel_reference(self, channel: str, channel_reference: str) -> str | None: ...

    def id_for_number(self, order_number: str) -> str | None: ...

    def waiting_lines(self, sku: str, *, limit: int = 1000) -> list[WaitingLine]:
        """Backordered units of ``sku``, oldest order first."""
        ...

    def waiting_skus(self, *, limit: int = 500) -> list[str]: ...

    def waiting_quantities(self, skus: Sequence[str]) -> dict[str, int]: ...


class CareRepository(Protocol):
    """Returns, appeasements and care notes."""

    def add_return(self, item: Return) -> None: ...

    def save_return(self, item: Return, *, at: datetime) -> None:
        """Write back a loaded return (optimistic version check: a Conflict when it moved)."""
        ...

    def get_return(self, return_id: str, *, for_update: bool = False) -> Return | None:
        """By id or RMA number."""
        ...

    def returns_for_order(self, order_id: str) -> list[Return]: ...

    def handed_over_at(self, order_id: str) -> dict[int, datetime]:
        """Per order line, when its units were last delivered or collected (shipped when
        never delivered), from the order's timeline."""
        ...

    def add_appeasement(self, item: Appeasement) -> None: ...

    def save_appeasement(self, item: Appeasement) -> None: ...

    def get_appeasement(
        self, appeasement_id: str, *, for_update: bool = False
    ) -> Appeasement | None: ...

    def appeasements(
        self, *, order_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Appeasement]: ...

    def add_note(self, note: Note) -> None: ...


# -- sourcing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredProfile:
    name: str
    version: int
    document: dict[str, Any]
    changed_by: str
    created_at: datetime


@dataclass(frozen=True)
class StoredRuleSet:
    version: int
    default_profile: str
    rules: list[dict[str, Any]]
    changed_by: str
    created_at: datetime


@dataclass(frozen=True)
class StoredDecision:
    decision_id: int
    order_id: str
    trigger: str
    planner: str
    cost: Decimal
    backordered_units: int
    plan: dict[str, Any]
    decided_at: datetime


class SourcingDecisionRepository(Protocol):
    def add(self, decision: StoredDecision) -> int:
        """Store a decision; returns its id (``decision_id`` of the argument is ignored)."""
        ...

    def add_many(self, decisions: Sequence[StoredDecision]) -> list[int]:
        """Store decisions in bulk; their ids, in the same order."""
        ...

    def for_order(self, order_id: str) -> list[StoredDecision]: ...


@dataclass(frozen=True)
class LineRefusal:
    """A location refused (rejected, short-picked) units of an order line: never again."""

    order_id: str
    line_no: int
    location_code: str
    quantity: int
    reason: str
    trigger: str
    refused_at: datetime


class OrderRefusalRepository(Protocol):
    def add(self, refusal: LineRefusal) -> None: ...

    def for_order(self, order_id: str) -> dict[int, frozenset[str]]:
        """line number -> locations that refused it."""
        ...

    def for_orders(self, order_ids: Sequence[str]) -> dict[str, dict[int, frozenset[str]]]:
        """order id -> line number -> locations that refused it (orders with refusals only)."""
        ...

    def list_for_order(self, order_id: str) -> list[LineRefusal]: ...

    def orders_allocated_at(self, location_code: str, *, limit: int = 100_000) -> list[str]:
        """Ids of orders with units allocated (not yet released) at the location, oldest first."""
        ...

    def orders_with_open_units(self, *, limit: int = 1000) -> list[str]:
        """Ids of orders with units not yet sourced (open), oldest first."""
        ...

    def last_order_ids(self, count: int) -> list[str]:
        """The ids of the ``count`` most recently created orders, newest first."""
        ...


class SourcingProfileRepository(Protocol):
    def current(self) -> list[StoredProfile]:
        """The highest version of every profile, by name."""
        ...

    def get(self, name: str, version: int | None = None) -> StoredProfile | None: ...

    def versions(self, name: str) -> list[StoredProfile]: ...

    def add(self, profile: StoredProfile) -> bool:
        """Store a new version; False when that (name, version) exists already (a race)."""
        ...

    def current_rules(self) -> StoredRuleSet | None: ...

    def add_rules(self, rule_set: StoredRuleSet) -> bool: ...

    def signature(self) -> Hashable:
        """A cheap value that changes whenever a profile version or a rule set is added (both
        are append-only): what a cache of the parsed profiles is keyed by."""
        ...


@dataclass(frozen=True)
class StoredBidPrices:
    table_id: int
    computed_at: datetime
    document: dict[str, Any]
    """``{"stock": {sku: {location code: price}}, "capacity": {code: price}, ...facts}``."""


class SourcingBidPriceRepository(Protocol):
    def latest_id(self) -> int | None:
        """The id of the newest table (what a cache of the parsed table is keyed by)."""
        ...

    def latest(self) -> StoredBidPrices | None: ...

    def replace(self, document: dict[str, Any], *, at: datetime) -> int:
        """Store a new table and delete the older ones; its id."""
        ...


class FulfillmentRepository(Protocol):
    """One row per fulfillment (order x location), saved with an optimistic version check."""

    def add(self, fulfillment: Fulfillment) -> None: ...

    def save(self, fulfillment: Fulfillment) -> None:
        """FulfillmentChangedConcurrently when it was saved by someone else since it was read."""
        ...

    def get(self, fulfillment_id: str, *, for_update: bool = False) -> Fulfillment | None: ...

    def for_order(self, order_id: str) -> list[Fulfillment]: ...

    def list(
        self,
        *,
        location_codes: Sequence[str] | None = None,
        status: str | None = None,
        order_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Fulfillment]:
        """Fulfillments at (or, ship-to-store, going to) these locations, by id."""
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
    def payments(self) -> PaymentRepository: ...

    @property
    def invoices(self) -> InvoiceRepository: ...

    @property
    def notifications(self) -> NotificationRepository: ...

    @property
    def processes(self) -> ProcessRepository: ...

    @property
    def event_deliveries(self) -> EventDeliveryRepository: ...

    @property
    def webhooks(self) -> WebhookRepository: ...

    @property
    def locations(self) -> LocationRepository: ...

    @property
    def items(self) -> ItemRepository: ...

    @property
    def inventory(self) -> InventoryRepository: ...

    @property
    def orders(self) -> OrderRepository: ...

    @property
    def care(self) -> CareRepository: ...

    @property
    def sourcing_profiles(self) -> SourcingProfileRepository: ...

    @property
    def sourcing_decisions(self) -> SourcingDecisionRepository: ...

    @property
    def sourcing_bid_prices(self) -> SourcingBidPriceRepository: ...

    @property
    def fulfillments(self) -> FulfillmentRepository: ...

    @property
    def order_refusals(self) -> OrderRefusalRepository: ...

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

    def savepoint(self) -> AbstractContextManager[None]:
        """A part of the unit of work that an exception undoes alone (its writes and the events
        it recorded), leaving the rest to commit; the exception goes on."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False, single_statement: bool = False) -> UnitOfWork:
        """``single_statement``: the use case is one repository call that writes its own events
        (see :meth:`InventoryRepository.reserve_at_once`); it may run in autocommit."""
        ...


# --- payments ---------------------------------------------------------------------------------


class GatewayTimeout(Exception):
    """The gateway did not answer in time: the request may or may not have been carried out.
    Retry it with the SAME idempotency key; the gateway then answers with the first result."""


class GatewayKeyReused(Exception):
    """The idempotency key was already used for a different request (a programming error)."""


@dataclass(frozen=True)
class GatewayResult:
    """A gateway's answer. A decline is an answer, not an error."""

    approved: bool
    reference: str | None
    """The gateway's id of what it did (authorisation, capture, void or refund)."""
    amount: Money | None
    expires_at: datetime | None = None
    decline_code: str | None = None
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "approved": self.approved,
            "reference": self.reference,
            "amount": str(self.amount.amount) if self.amount else None,
            "currency": self.amount.currency if self.amount else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "decline_code": self.decline_code,
            "message": self.message,
        }


class PaymentGateway(Protocol):
    """A payment service provider. Every call carries an idempotency key: a repeated call with
    the same key returns the first result and never does the thing twice."""

    name: str

    def authorise(self, *, token: str, amount: Money, idempotency_key: str) -> GatewayResult: ...

    def capture(
        self, *, authorisation: str, amount: Money, idempotency_key: str
    ) -> GatewayResult: ...

    def void(
        self, *, authorisation: str, amount: Money | None, idempotency_key: str
    ) -> GatewayResult:
        """Release ``amount`` of the authorisation (all that is left when None)."""
        ...

    def refund(self, *, capture: str, amount: Money, idempotency_key: str) -> GatewayResult: ...


class TransactionKind(StrEnum):
    AUTHORISATION = "authorisation"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"


@dataclass(frozen=True)
class PaymentTransaction:
    """One row of an order's payment ledger; the ledger is rebuilt by replaying them in order."""

    order_ref: str
    tender_id: str
    kind: TransactionKind
    reference: str
    parent_reference: str | None
    """Capture/void: the authorisation; refund: the capture; re-authorisation: the one renewed."""
    amount: Money
    at: datetime
    expires_at: datetime | None = None
    shipment_ref: str | None = None
    refund_ref: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class GatewayCall:
    order_ref: str
    tender_id: str
    gateway: str
    operation: str
    idempotency_key: str
    attempt: int
    request: dict[str, Any]
    outcome: str  # "approved" | "declined" | "timeout" | "error"
    response: dict[str, Any] | None
    at: datetime


@dataclass(frozen=True)
class StoredPaymentOrder:
    order_ref: str
    currency: str
    policy: TenderPolicy
    customer: dict[str, str] | None
    created_at: datetime


class PaymentRepository(Protocol):
    def add_order(self, order: StoredPaymentOrder) -> None: ...

    def get_order(self, order_ref: str, *, for_update: bool = False) -> StoredPaymentOrder | None:
        """``for_update`` locks the order's payments until the end of the transaction."""
        ...

    def add_tender(self, order_ref: str, tender: Tender, *, position: int) -> None: ...

    def tenders(self, order_ref: str) -> list[Tender]: ...

    def add_transaction(self, transaction: PaymentTransaction) -> None: ...

    def transactions(self, order_ref: str) -> list[PaymentTransaction]: ...

    def add_gateway_call(self, call: GatewayCall) -> None: ...

    def gateway_calls(self, order_ref: str) -> list[GatewayCall]: ...


@dataclass(frozen=True)
class StoredInvoice:
    invoice_id: str
    number: str
    order_ref: str
    shipment_ref: str
    kind: str
    currency: str
    document: dict[str, Any]
    issued_at: datetime


class InvoiceRepository(Protocol):
    def add(self, invoice: StoredInvoice) -> None: ...

    def get(self, invoice_id: str) -> StoredInvoice | None: ...

    def for_shipment(self, order_ref: str, shipment_ref: str) -> StoredInvoice | None: ...

    def for_order(self, order_ref: str) -> list[StoredInvoice]: ...

    def next_number(self, *, year: int) -> int: ...


class DocumentRenderer(Protocol):
    def render(self, template: str, context: dict[str, Any]) -> str: ...


# --- notifications ----------------------------------------------------------------------------


class EmailNotSent(Exception):
    """The mail server refused the message or could not be reached; try again later."""


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    body: str
    message_id: str
    """Stable per event, so a receiver can drop a duplicate after a crash mid-send."""
    html: str | None = None


class EmailSender(Protocol):
    def send(self, message: OutgoingEmail) -> None:
        """Hand the message to the mail server; raise :class:`EmailNotSent` when it fails."""
        ...


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    body: str
    language: str
    """The language actually used (the fallback when the wanted one has no template)."""


class EmailTemplates(Protocol):
    def render(self, template: str, language: str, context: dict[str, Any]) -> RenderedEmail:
        """Raises :class:`TemplateProblem` when the template or a value it needs is missing."""
        ...


class TemplateProblem(Exception):
    pass


@dataclass(frozen=True)
class Delivery:
    delivery_id: int
    event_id: str
    event_type: str
    channel: str
    template: str
    language: str
    recipient: str | None
    subject: str | None
    body: str | None
    status: str  # pending | sending | sent | skipped | failed | invalid
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class NotificationRepository(Protocol):
    def cursor(self, name: str) -> int: ...

    def advance_cursor(self, name: str, position: int, *, at: datetime) -> None: ...

    def add_delivery(self, delivery: Delivery) -> bool:
        """Insert unless the event already has a delivery on that channel; False if it had."""
        ...

    def due(self, *, at: datetime, limit: int) -> list[Delivery]: ...

    def claim(self, delivery_id: int, *, at: datetime, lease_until: datetime) -> bool:
        """Take a due delivery for sending (one sender wins); counts the attempt."""
        ...

    def mark_sent(self, delivery_id: int, *, at: datetime) -> None: ...

    def mark_failed(
        self, delivery_id: int, *, error: str, retry_at: datetime | None, at: datetime
    ) -> None:
        """Record a failed attempt: retry at ``retry_at``, or give up when it is None."""
        ...

    def deliveries(
        self, *, event_id: str | None = None, recipient: str | None = None
    ) -> list[Delivery]: ...

    def preferences(self, email: str) -> ContactPreferences | None: ...

    def save_preferences(self, preferences: ContactPreferences, *, at: datetime) -> None: ...
