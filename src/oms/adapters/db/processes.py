"""SQL repository of process definitions, instances, associate tasks, timers and history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from oms.adapters.db.reference import DEFINITIONS, ReferenceView
from oms.adapters.db.tables import (
    process_definitions,
    process_history,
    process_instances,
    process_messages,
    process_tasks,
    process_timers,
)
from oms.domain.processes import (
    BufferedMessage,
    HistoryEntry,
    InstanceStatus,
    ProcessChangedConcurrently,
    ProcessDefinition,
    ProcessInstance,
    ProcessTask,
    ProcessTimer,
    TaskState,
    TimerState,
)

_LATEST_DEFINITION = (
    select(process_definitions)
    .where(process_definitions.c.key == bindparam("k_key"))
    .order_by(process_definitions.c.version.desc())
    .limit(1)
)
_LATEST_DEFINITION_ID = (
    select(process_definitions.c.id)
    .where(process_definitions.c.key == bindparam("k_key"))
    .order_by(process_definitions.c.version.desc())
    .limit(1)
)
"""Built once: every capture asks for the process of each delivery method."""


class SqlProcessRepository:
    def __init__(self, connection: Connection, *, reference: ReferenceView | None = None) -> None:
        self._connection = connection
        self._reference = reference
        self._kept_for: set[str] = set()
        """The correlation keys this unit of work has kept (buffered) a message for."""

    @property
    def _postgres(self) -> bool:
        return self._connection.dialect.name == "postgresql"

    # -- definitions -----------------------------------------------------------------------

    def add_definition(
        self, *, key: str, name: str, bpmn_xml: str, checksum: str, at: datetime, by: str
    ) -> ProcessDefinition:
        current = self._connection.execute(
            select(func.max(process_definitions.c.version)).where(process_definitions.c.key == key)
        ).scalar()
        version = int(current or 0) + 1
        if self._reference is not None:
            self._reference.wrote()
        try:
            with self._connection.begin_nested():
                new_id = self._connection.execute(
                    insert(process_definitions)
                    .values(
                        key=key,
                        version=version,
                        name=name,
                        bpmn_xml=bpmn_xml,
                        checksum=checksum,
                        deployed_at=at,
                        deployed_by=by,
                    )
                    .returning(process_definitions.c.id)
                ).scalar_one()
        except IntegrityError:
            raise ProcessChangedConcurrently(
                f"another version of '{key}' was deployed at the same moment; retry"
            ) from None
        return ProcessDefinition(
            id=int(new_id),
            key=key,
            version=version,
            name=name,
            bpmn_xml=bpmn_xml,
            checksum=checksum,
            deployed_at=at,
            deployed_by=by,
        )

    def get_definition(self, definition_id: int) -> ProcessDefinition | None:
        row = self._connection.execute(
            select(process_definitions).where(process_definitions.c.id == definition_id)
        ).first()
        return _definition(row._mapping) if row else None

    def latest_definition(self, key: str) -> ProcessDefinition | None:
        def load() -> ProcessDefinition | None:
            row = self._connection.execute(_LATEST_DEFINITION, {"k_key": key}).first()
            return _definition(row._mapping) if row else None

        if self._reference is None:
            return load()
        return self._reference.read(("process_definition", key), DEFINITIONS, load)

    def latest_definition_id(self, key: str) -> int | None:
        def load() -> int | None:
            found = self._connection.execute(_LATEST_DEFINITION_ID, {"k_key": key}).scalar()
            return None if found is None else int(found)

        if self._reference is None:
            return load()
        # every capture asks, per delivery method: cached behind the reference signature
        return self._reference.read(("process_definition_id", key), DEFINITIONS, load)

    def definition_version(self, key: str, version: int) -> ProcessDefinition | None:
        row = self._connection.execute(
            select(process_definitions).where(
                process_definitions.c.key == key, process_definitions.c.version == version
            )
        ).first()
        return _definition(row._mapping) if row else None

    def list_definitions(self, key: str | None = None) -> list[ProcessDefinition]:
        query = select(process_definitions).order_by(
            process_definitions.c.key, process_definitions.c.version
        )
        if key is not None:
            query = query.where(process_definitions.c.key == key)
        return [_definition(row._mapping) for row in self._connection.execute(query)]

    # -- instances -------------------------------------------------------------------------

    def add_instance(self, instance: ProcessInstance) -> None:
        self._connection.execute(insert(process_instances).values(**_instance_row(instance)))

    def get_instance(self, instance_id: str, *, for_update: bool = False) -> ProcessInstance | None:
        query = select(process_instances).where(process_instances.c.id == instance_id)
        if for_update and self._postgres:
            query = query.with_for_update()
        row = self._connection.execute(query).first()
        return _instance(row._mapping) if row else None

    def running_instances(self, correlation_key: str) -> list[ProcessInstance]:
        query = (
            select(process_instances)
            .where(
                process_instances.c.correlation_key == correlation_key,
                process_instances.c.status == InstanceStatus.RUNNING.value,
            )
            .order_by(process_instances.c.started_at, process_instances.c.id)
        )
        if self._postgres:
            query = query.with_for_update()
        return [_instance(row._mapping) for row in self._connection.execute(query)]

    def instances_for(self, correlation_key: str) -> list[ProcessInstance]:
        query = (
            select(process_instances)
            .where(process_instances.c.correlation_key == correlation_key)
            .order_by(process_instances.c.started_at, process_instances.c.id)
        )
        return [_instance(row._mapping) for row in self._connection.execute(query)]

    def save_instance(self, instance: ProcessInstance, *, expected_revision: int) -> bool:
        values = _instance_row(instance)
        del values["id"]
        result = self._connection.execute(
            update(process_instances)
            .where(
                process_instances.c.id == instance.id,
                process_instances.c.revision == expected_revision,
            )
            .values(**values)
        )
        return result.rowcount == 1

    # -- tasks -----------------------------------------------------------------------------

    def add_task(self, task: ProcessTask) -> None:
        self._connection.execute(insert(process_tasks).values(**_task_row(task)))

    def get_task(self, task_id: str, *, for_update: bool = False) -> ProcessTask | None:
        query = select(process_tasks).where(process_tasks.c.id == task_id)
        if for_update and self._postgres:
            query = query.with_for_update()
        row = self._connection.execute(query).first()
        return _task(row._mapping) if row else None

    def save_task(self, task: ProcessTask) -> None:
        values = _task_row(task)
        del values["id"]
        self._connection.execute(
            update(process_tasks).where(process_tasks.c.id == task.id).values(**values)
        )

    def tasks_of(self, instance_id: str) -> list[ProcessTask]:
        rows = self._connection.execute(
            select(process_tasks)
            .where(process_tasks.c.instance_id == instance_id)
            .order_by(process_tasks.c.created_at, process_tasks.c.id)
        )
        return [_task(row._mapping) for row in rows]

    def list_tasks(
        self,
        *,
        location_codes: Sequence[str] | None,
        candidate_roles: Sequence[str] | None = None,
        states: Sequence[TaskState],
        limit: int,
    ) -> list[ProcessTask]:
        query = (
            select(process_tasks)
            .where(process_tasks.c.state.in_([s.value for s in states]))
            .order_by(process_tasks.c.created_at, process_tasks.c.id)
            .limit(limit)
        )
        if location_codes is not None:
            query = query.where(process_tasks.c.location_code.in_(list(location_codes)))
        if candidate_roles is not None:
            query = query.where(process_tasks.c.candidate_role.in_(list(candidate_roles)))
        return [_task(row._mapping) for row in self._connection.execute(query)]

    # -- timers ----------------------------------------------------------------------------

    def add_timer(self, timer: ProcessTimer) -> None:
        self._connection.execute(
            insert(process_timers).values(
                id=timer.id,
                instance_id=timer.instance_id,
                spiff_task_id=timer.spiff_task_id,
                element_id=timer.element_id,
                name=timer.name,
                due_at=timer.due_at,
                state=timer.state.value,
                fired_at=timer.fired_at,
                error=timer.error,
            )
        )

    def timers_of(self, instance_id: str) -> list[ProcessTimer]:
        rows = self._connection.execute(
            select(process_timers)
            .where(process_timers.c.instance_id == instance_id)
            .order_by(process_timers.c.due_at, process_timers.c.id)
        )
        return [_timer(row._mapping) for row in rows]

    def set_timer_state(
        self,
        timer_id: str,
        *,
        expected: TimerState,
        state: TimerState,
        at: datetime | None = None,
        error: str | None = None,
    ) -> bool:
        values: dict[str, Any] = {"state": state.value}
        if at is not None:
            values["fired_at"] = at
        if error is not None:
            values["error"] = error[:2000]
        result = self._connection.execute(
            update(process_timers)
            .where(process_timers.c.id == timer_id, process_timers.c.state == expected.value)
            .values(**values)
        )
        return result.rowcount == 1

    def close_pending_timers(
        self, instance_id: str, *, now: datetime, cancelling: bool
    ) -> list[ProcessTimer]:
        values: dict[str, Any] = {"state": TimerState.CANCELLED.value}
        if not cancelling:
            due = process_timers.c.due_at <= now
            values["state"] = case((due, TimerState.FIRED.value), else_=TimerState.CANCELLED.value)
            at = literal(now, process_timers.c.fired_at.type)  # stored as the column stores
            values["fired_at"] = case((due, at), else_=process_timers.c.fired_at)
        result = self._connection.execute(
            update(process_timers)
            .where(
                process_timers.c.instance_id == instance_id,
                process_timers.c.state == TimerState.PENDING.value,
            )
            .values(**values)
            .returning(*process_timers.c)
        )
        closed = [_timer(row._mapping) for row in result]
        return sorted(closed, key=lambda timer: (timer.due_at, timer.id))

    def claim_due_timers(
        self, *, now: datetime, limit: int, skip: Sequence[str] = ()
    ) -> list[ProcessTimer]:
        """Up to ``limit`` pending timers due by ``now``, earliest first, locked for this
        transaction (PostgreSQL: rows another worker holds are skipped, not waited for)."""
        query = (
            select(process_timers)
            .where(
                process_timers.c.state == TimerState.PENDING.value,
                process_timers.c.due_at <= now,
            )
            .order_by(process_timers.c.due_at, process_timers.c.id)
            .limit(limit)
        )
        if skip:
            query = query.where(process_timers.c.id.not_in(list(skip)))
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        return [_timer(row._mapping) for row in self._connection.execute(query)]

    # -- buffered messages -----------------------------------------------------------------

    def buffer_message(self, message: BufferedMessage) -> None:
        self._kept_for.add(message.correlation_key)
        self._connection.execute(
            insert(process_messages).values(
                id=message.id,
                message_name=message.message_name,
                correlation_key=message.correlation_key,
                payload=message.payload,
                received_at=message.received_at,
            )
        )

    def kept_here(self, correlation_key: str) -> bool:
        return correlation_key in self._kept_for

    def buffered_messages(
        self, correlation_key: str, message_names: Sequence[str]
    ) -> list[BufferedMessage]:
        query = (
            select(process_messages)
            .where(
                process_messages.c.correlation_key == correlation_key,
                process_messages.c.message_name.in_(list(message_names)),
                process_messages.c.consumed_at.is_(None),
            )
            .order_by(process_messages.c.received_at, process_messages.c.id)
        )
        if self._postgres:
            query = query.with_for_update()
        return [
            BufferedMessage(
                id=m["id"],
                message_name=m["message_name"],
                correlation_key=m["correlation_key"],
                payload=m["payload"],
                received_at=m["received_at"],
            )
            for m in (row._mapping for row in self._connection.execute(query))
        ]

    def consume_message(self, message_id: str, *, instance_id: str, at: datetime) -> bool:
        result = self._connection.execute(
            update(process_messages)
            .where(process_messages.c.id == message_id, process_messages.c.consumed_at.is_(None))
            .values(consumed_at=at, consumed_by=instance_id)
        )
        return result.rowcount == 1

    # -- history ---------------------------------------------------------------------------

    def add_history(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        self._connection.execute(
            insert(process_history),
            [
                {
                    "instance_id": e.instance_id,
                    "at": e.at,
                    "kind": e.kind,
                    "element_id": e.element_id,
                    "detail": e.detail,
                }
                for e in entries
            ],
        )

    def history(self, instance_id: str) -> list[HistoryEntry]:
        rows = self._connection.execute(
            select(process_history)
            .where(process_history.c.instance_id == instance_id)
            .order_by(process_history.c.position)
        )
        return [
            HistoryEntry(
                instance_id=m["instance_id"],
                at=m["at"],
                kind=m["kind"],
                element_id=m["element_id"],
                detail=m["detail"],
            )
            for m in (row._mapping for row in rows)
        ]


def _definition(row: Any) -> ProcessDefinition:
    return ProcessDefinition(
        id=int(row["id"]),
        key=row["key"],
        version=row["version"],
        name=row["name"],
        bpmn_xml=row["bpmn_xml"],
        checksum=row["checksum"],
        deployed_at=row["deployed_at"],
        deployed_by=row["deployed_by"],
    )


def _instance_row(instance: ProcessInstance) -> dict[str, Any]:
    return {
        "id": instance.id,
        "definition_id": instance.definition_id,
        "process_key": instance.process_key,
        "version": instance.version,
        "correlation_key": instance.correlation_key,
        "status": instance.status.value,
        "state": json.dumps(instance.state, separators=(",", ":")),
        "revision": instance.revision,
        "waiting_messages": instance.waiting_messages,
        "active_elements": instance.active_elements,
        "started_at": instance.started_at,
        "updated_at": instance.updated_at,
        "completed_at": instance.completed_at,
    }


def _instance(row: Any) -> ProcessInstance:
    return ProcessInstance(
        id=row["id"],
        definition_id=int(row["definition_id"]),
        process_key=row["process_key"],
        version=row["version"],
        correlation_key=row["correlation_key"],
        status=InstanceStatus(row["status"]),
        state=json.loads(row["state"]),
        revision=row["revision"],
        waiting_messages=list(row["waiting_messages"] or []),
        active_elements=list(row["active_elements"] or []),
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"],
    )


def _task_row(task: ProcessTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "instance_id": task.instance_id,
        "spiff_task_id": task.spiff_task_id,
        "element_id": task.element_id,
        "name": task.name,
        "location_code": task.location_code,
        "candidate_role": task.candidate_role,
        "state": task.state.value,
        "required_fields": task.required_fields,
        "data": task.data,
        "result": task.result,
        "claimed_by": task.claimed_by,
        "completed_by": task.completed_by,
        "created_at": task.created_at,
        "claimed_at": task.claimed_at,
        "completed_at": task.completed_at,
    }


def _task(row: Any) -> ProcessTask:
    return ProcessTask(
        id=row["id"],
        instance_id=row["instance_id"],
        spiff_task_id=row["spiff_task_id"],
        element_id=row["element_id"],
        name=row["name"],
        location_code=row["location_code"],
        candidate_role=row["candidate_role"],
        state=TaskState(row["state"]),
        required_fields=list(row["required_fields"] or []),
        data=row["data"] or {},
        result=row["result"],
        claimed_by=row["claimed_by"],
        completed_by=row["completed_by"],
        created_at=row["created_at"],
        claimed_at=row["claimed_at"],
        completed_at=row["completed_at"],
    )


def _timer(row: Any) -> ProcessTimer:
    return ProcessTimer(
        id=row["id"],
        instance_id=row["instance_id"],
        spiff_task_id=row["spiff_task_id"],
        element_id=row["element_id"],
        name=row["name"],
        due_at=row["due_at"],
        state=TimerState(row["state"]),
        fired_at=row["fired_at"],
        error=row["error"],
    )
