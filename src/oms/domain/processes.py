"""Long-running processes: definitions, instances, associate tasks, timers, their events and
refusals. The BPMN execution itself lives in :mod:`oms.processes`; this module is plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from oms.domain.errors import Conflict, Invalid, NotFound
from oms.domain.events import DomainEvent


class InstanceStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class TaskState(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    """The process moved on without it (an interrupting timer or message on the task)."""


class TimerState(StrEnum):
    PENDING = "pending"
    FIRED = "fired"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True)
class ProcessDefinition:
    id: int
    key: str
    version: int
    name: str
    bpmn_xml: str
    checksum: str
    deployed_at: datetime
    deployed_by: str


@dataclass
class ProcessInstance:
    id: str
    definition_id: int
    process_key: str
    version: int
    correlation_key: str
    status: InstanceStatus
    state: dict[str, Any]
    revision: int
    waiting_messages: list[str]
    active_elements: list[dict[str, str]]
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None


@dataclass
class ProcessTask:
    id: str
    instance_id: str
    spiff_task_id: str
    element_id: str
    name: str
    location_code: str | None
    candidate_role: str
    state: TaskState
    data: dict[str, Any]
    required_fields: list[str] = field(default_factory=list)
    claimed_by: str | None = None
    result: dict[str, Any] | None = None
    created_at: datetime | None = None
    claimed_at: datetime | None = None
    completed_at: datetime | None = None
    completed_by: str | None = None


@dataclass
class ProcessTimer:
    id: str
    instance_id: str
    spiff_task_id: str
    element_id: str
    name: str
    due_at: datetime
    state: TimerState
    fired_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class BufferedMessage:
    """A message that arrived before its instance waited for it; delivered when it does."""

    id: str
    message_name: str
    correlation_key: str
    payload: dict[str, Any]
    received_at: datetime


@dataclass(frozen=True)
class HistoryEntry:
    instance_id: str
    at: datetime
    kind: str
    element_id: str | None
    detail: dict[str, Any]


# --- refusals ---------------------------------------------------------------------------------


class ProcessDefinitionInvalid(Invalid):
    """The BPMN document cannot be deployed; ``element_id`` names the offending element."""

    slug = "process-definition-invalid"
    title = "The process definition is not valid"


class ProcessDefinitionNotFound(NotFound):
    slug = "process-definition-not-found"
    title = "No such process definition"


class ProcessInstanceNotFound(NotFound):
    slug = "process-instance-not-found"
    title = "No such process instance"


class ProcessTaskNotFound(NotFound):
    slug = "process-task-not-found"
    title = "No such process task"


class ProcessTaskNotOpen(Conflict):
    """The task was claimed by someone else, completed or cancelled already."""

    slug = "process-task-not-open"
    title = "The task cannot be claimed or completed in its current state"


class ProcessTaskDataInvalid(Invalid):
    slug = "process-task-data-invalid"
    title = "The data given to complete the task is not valid"


class ProcessInstanceNotRunning(Conflict):
    slug = "process-instance-not-running"
    title = "The process instance has completed or was cancelled"


class ProcessChangedConcurrently(Conflict):
    slug = "process-changed-concurrently"
    title = "The process instance was changed by someone else meanwhile; retry"


class MessageNotExpected(Conflict):
    """No running instance with this correlation key waits for this message."""

    slug = "process-message-not-expected"
    title = "No process instance is waiting for this message"


class ActivityFailed(Conflict):
    slug = "process-activity-failed"
    title = "A process activity failed"


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProcessDefinitionDeployed(DomainEvent):
    type: ClassVar[str] = "process.definition_deployed"
    key: str
    version: int
    checksum: str
    deployed_by: str

    @property
    def subject(self) -> str:
        return f"process-definitions/{self.key}/{self.version}"


@dataclass(frozen=True, kw_only=True)
class ProcessInstanceStarted(DomainEvent):
    type: ClassVar[str] = "process.instance_started"
    instance_id: str
    process_key: str
    version: int
    correlation_key: str

    @property
    def subject(self) -> str:
        return f"process-instances/{self.instance_id}"


@dataclass(frozen=True, kw_only=True)
class ProcessInstanceCompleted(DomainEvent):
    type: ClassVar[str] = "process.instance_completed"
    instance_id: str
    process_key: str
    correlation_key: str

    @property
    def subject(self) -> str:
        return f"process-instances/{self.instance_id}"


@dataclass(frozen=True, kw_only=True)
class ProcessInstanceCancelled(DomainEvent):
    type: ClassVar[str] = "process.instance_cancelled"
    instance_id: str
    process_key: str
    correlation_key: str
    reason: str

    @property
    def subject(self) -> str:
        return f"process-instances/{self.instance_id}"


@dataclass(frozen=True, kw_only=True)
class ProcessTaskOpened(DomainEvent):
    type: ClassVar[str] = "process.task_opened"
    task_id: str
    instance_id: str
    element_id: str
    name: str
    location_code: str | None
    candidate_role: str

    @property
    def subject(self) -> str:
        return f"process-tasks/{self.task_id}"


@dataclass(frozen=True, kw_only=True)
class ProcessTaskCompleted(DomainEvent):
    type: ClassVar[str] = "process.task_completed"
    task_id: str
    instance_id: str
    element_id: str
    completed_by: str

    @property
    def subject(self) -> str:
        return f"process-tasks/{self.task_id}"


@dataclass(frozen=True, kw_only=True)
class ProcessNotificationRequested(DomainEvent):
    """A process asked for someone to be told something (the ``notify`` activity)."""

    type: ClassVar[str] = "process.notification_requested"
    instance_id: str
    correlation_key: str
    template: str
    recipient: str | None
    channel: str
    values: dict[str, Any]

    @property
    def subject(self) -> str:
        return f"process-instances/{self.instance_id}"
