"""What the use cases need from the outside world, as protocols the adapters implement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from oms.domain.access import Role
from oms.domain.events import DomainEvent
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


class OutboxRepository(Protocol):
    def add(self, events: Sequence[OutboxEvent]) -> None: ...

    def read_after(
        self, position: int, *, limit: int, types: Sequence[str] | None = None
    ) -> list[OutboxEvent]: ...

    def claim_unpublished(self, *, limit: int) -> list[OutboxEvent]:
        """Lock and return the oldest unpublished events (SKIP LOCKED where the database has it)."""
        ...

    def mark_published(self, positions: Sequence[int], *, at: datetime) -> None: ...


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


class UnitOfWork(Protocol):
    """One transaction. Events recorded with :meth:`record` reach the outbox in the same commit."""

    @property
    def api_keys(self) -> ApiKeyRepository: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def event_deliveries(self) -> EventDeliveryRepository: ...

    @property
    def webhooks(self) -> WebhookRepository: ...

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
