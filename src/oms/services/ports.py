"""What the use cases need from the outside world, as protocols the adapters implement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from oms.domain.access import Role
from oms.domain.events import DomainEvent
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


class ProcessRepository(Protocol):
    """Process definitions, instances, associate tasks, timers and history."""

    def add_definition(
        self, *, key: str, name: str, bpmn_xml: str, checksum: str, at: datetime, by: str
    ) -> ProcessDefinition:
        """Store the next version of ``key``."""
        ...

    def get_definition(self, definition_id: int) -> ProcessDefinition | None: ...

    def latest_definition(self, key: str) -> ProcessDefinition | None: ...

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

    def claim_due_timer(self, *, now: datetime, skip: Sequence[str] = ()) -> ProcessTimer | None:
        """The earliest pending timer due by ``now``, locked (SKIP LOCKED on PostgreSQL)."""
        ...

    def buffer_message(self, message: BufferedMessage) -> None: ...

    def buffered_messages(
        self, correlation_key: str, message_names: Sequence[str]
    ) -> list[BufferedMessage]:
        """Unconsumed messages for this key and these names, oldest first, locked."""
        ...

    def consume_message(self, message_id: str, *, instance_id: str, at: datetime) -> bool: ...

    def add_history(self, entries: Sequence[HistoryEntry]) -> None: ...

    def history(self, instance_id: str) -> list[HistoryEntry]: ...


class UnitOfWork(Protocol):
    """One transaction. Events recorded with :meth:`record` reach the outbox in the same commit."""

    @property
    def api_keys(self) -> ApiKeyRepository: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def processes(self) -> ProcessRepository: ...

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
