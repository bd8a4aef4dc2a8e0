"""What the use cases need from the outside world, as protocols the adapters implement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol, Self

from oms.domain.access import Role
from oms.domain.events import DomainEvent


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

    def for_order(self, order_id: str) -> list[StoredDecision]: ...


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


class UnitOfWork(Protocol):
    """One transaction. Events recorded with :meth:`record` reach the outbox in the same commit."""

    @property
    def api_keys(self) -> ApiKeyRepository: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def sourcing_profiles(self) -> SourcingProfileRepository: ...

    @property
    def sourcing_decisions(self) -> SourcingDecisionRepository: ...

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
