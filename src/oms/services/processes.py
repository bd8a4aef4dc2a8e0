"""Process use cases: deploy BPMN definitions, start and drive instances, associate task lists,
due timers and message correlation.

Other areas drive processes inside their own unit of work, so that the process state commits (or
rolls back) with the change that drove it::

    with self._uow() as uow:
        ...                                   # e.g. capture an order
        services.processes.start_in(uow, "pickup", correlation_key=order_id,
                                    variables={"order_id": order_id, "location_code": "S1"})
        uow.commit()

``start``, ``correlate``, ``claim``, ``complete`` and ``run_due_timers`` open their own unit of
work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oms.domain.access import SYSTEM, Principal, Role
from oms.domain.errors import DomainError, Forbidden, Invalid
from oms.domain.processes import (
    BufferedMessage,
    HistoryEntry,
    InstanceStatus,
    MessageNotExpected,
    ProcessChangedConcurrently,
    ProcessDefinition,
    ProcessDefinitionDeployed,
    ProcessDefinitionNotFound,
    ProcessInstance,
    ProcessInstanceCancelled,
    ProcessInstanceCompleted,
    ProcessInstanceNotFound,
    ProcessInstanceNotRunning,
    ProcessInstanceStarted,
    ProcessTask,
    ProcessTaskCompleted,
    ProcessTaskDataInvalid,
    ProcessTaskNotFound,
    ProcessTaskNotOpen,
    ProcessTaskOpened,
    ProcessTimer,
    TaskState,
    TimerState,
)
from oms.processes.activities import ActivityRegistry, register_generic_activities
from oms.processes.engine import ProcessEngine, RunContext, checksum, parse_process
from oms.services.ports import Clock, Ids, UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("oms.processes")

ACTIVE_TASK_STATES = (TaskState.OPEN, TaskState.CLAIMED)


@dataclass(frozen=True)
class Deployment:
    definition: ProcessDefinition
    created: bool
    """False when the newest version already had exactly this BPMN (nothing deployed)."""


@dataclass(frozen=True)
class InstanceView:
    instance: ProcessInstance
    tasks: list[ProcessTask]
    timers: list[ProcessTimer]
    history: list[HistoryEntry]
    variables: dict[str, Any]


@dataclass(frozen=True)
class TimerRun:
    fired: int
    failed: int


class ProcessService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        ids: Ids,
        activities: ActivityRegistry | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids
        if activities is None:
            activities = ActivityRegistry()
            register_generic_activities(activities)
        self.activities = activities
        """Register the activities of other areas here (see :mod:`oms.processes.activities`)."""
        self._engine = ProcessEngine(activities, clock)
        self._definitions: dict[int, ProcessDefinition] = {}

    # -- definitions -------------------------------------------------------------------------

    def deploy(self, bpmn_xml: str, *, deployed_by: str = "system") -> Deployment:
        """Validate and store a new version; refuses naming the offending element."""
        parsed = parse_process(bpmn_xml, self.activities)
        digest = checksum(bpmn_xml)
        with self._uow() as uow:
            latest = uow.processes.latest_definition(parsed.key)
            if latest is not None and latest.checksum == digest:
                return Deployment(latest, created=False)
            definition = uow.processes.add_definition(
                key=parsed.key,
                name=parsed.name,
                bpmn_xml=bpmn_xml,
                checksum=digest,
                at=self._clock.now(),
                by=deployed_by,
            )
            uow.record(
                ProcessDefinitionDeployed(
                    key=definition.key,
                    version=definition.version,
                    checksum=digest,
                    deployed_by=deployed_by,
                )
            )
            uow.commit()
        return Deployment(definition, created=True)

    def definitions(self, key: str | None = None) -> list[ProcessDefinition]:
        with self._uow(read_only=True) as uow:
            found = uow.processes.list_definitions(key)
        if key is not None and not found:
            raise ProcessDefinitionNotFound(f"no process definition '{key}'")
        return found

    def definition(self, key: str, version: int | None = None) -> ProcessDefinition:
        with self._uow(read_only=True) as uow:
            found = (
                uow.processes.latest_definition(key)
                if version is None
                else uow.processes.definition_version(key, version)
            )
        if found is None:
            which = f"'{key}'" + (f" version {version}" if version is not None else "")
            raise ProcessDefinitionNotFound(f"no process definition {which}")
        return found

    # -- starting and messages (in the caller's unit of work) --------------------------------

    def start_in(
        self,
        uow: UnitOfWork,
        key: str,
        *,
        correlation_key: str,
        variables: Mapping[str, Any] | None = None,
        definition: ProcessDefinition | None = None,
        new_correlation_key: bool = False,
    ) -> ProcessInstance:
        """Start the newest version of ``key`` (``definition``: the caller has looked it up with
        :meth:`latest_in`) and run it until it waits, in ``uow``.

        ``new_correlation_key``: the key was made in ``uow`` (the id of the order it captures),
        so no other transaction can have kept a message for it: the kept messages are looked up
        only when this unit of work kept one for the key."""
        if not correlation_key.strip():
            raise Invalid("a process instance needs a correlation key (e.g. the order id)")
        if definition is None or definition.key != key:
            definition = self.latest_in(uow, key)
        if definition is None:
            raise ProcessDefinitionNotFound(f"no process definition '{key}' is deployed")
        now = self._clock.now()
        instance = ProcessInstance(
            id=self._ids.new_id(),
            definition_id=definition.id,
            process_key=definition.key,
            version=definition.version,
            correlation_key=correlation_key,
            status=InstanceStatus.RUNNING,
            state={},
            revision=0,
            waiting_messages=[],
            active_elements=[],
            started_at=now,
            updated_at=now,
        )
        context = self._context(uow, instance)
        workflow = self._engine.new(
            definition.id, definition.bpmn_xml, dict(variables or {}), context
        )
        uow.record(
            ProcessInstanceStarted(
                instance_id=instance.id,
                process_key=definition.key,
                version=definition.version,
                correlation_key=correlation_key,
            )
        )
        started = HistoryEntry(
            instance_id=instance.id,
            at=now,
            kind="started",
            element_id=None,
            detail={"process_key": definition.key, "version": definition.version},
        )
        self._persist(
            uow, instance, workflow, context, history=[started], new_key=new_correlation_key
        )
        return instance

    def latest_in(self, uow: UnitOfWork, key: str) -> ProcessDefinition | None:
        """The newest version of ``key`` (None: none deployed). Only its id is read: versions
        never change once deployed, so their BPMN is kept once read."""
        definition_id = uow.processes.latest_definition_id(key)
        return None if definition_id is None else self._definition(uow, definition_id)

    def correlate_in(
        self,
        uow: UnitOfWork,
        message_name: str,
        correlation_key: str,
        payload: Mapping[str, Any] | None = None,
        *,
        buffer: bool = False,
        instances: Sequence[ProcessInstance] | None = None,
    ) -> list[str]:
        """Deliver a message to the running instances with this key that wait for it.

        Returns the ids of the instances that took it. When none waits: with ``buffer`` the
        message is kept and delivered as soon as an instance with this key waits for it (events
        that arrive early: a customer checking in before the order is picked), and ``[]`` is
        returned; without, :class:`MessageNotExpected` is raised.
        """
        delivered = []
        if instances is None:
            instances = uow.processes.running_instances(correlation_key)
        for instance in instances:
            if instance.status is not InstanceStatus.RUNNING:
                continue
            if message_name not in instance.waiting_messages:
                continue
            context = self._context(uow, instance)
            workflow = self._load(uow, instance, context)
            if not self._engine.deliver_message(workflow, message_name, dict(payload or {})):
                continue
            received = HistoryEntry(
                instance_id=instance.id,
                at=self._clock.now(),
                kind="message_received",
                element_id=None,
                detail={"message": message_name, "payload": dict(payload or {})},
            )
            self._persist(uow, instance, workflow, context, history=[received])
            delivered.append(instance.id)
        if not delivered and buffer:
            uow.processes.buffer_message(
                BufferedMessage(
                    id=self._ids.new_id(),
                    message_name=message_name,
                    correlation_key=correlation_key,
                    payload=dict(payload or {}),
                    received_at=self._clock.now(),
                )
            )
            return []
        if not delivered:
            raise MessageNotExpected(
                f"no running process with correlation key '{correlation_key}' is waiting for "
                f"the message '{message_name}'",
                message=message_name,
                correlation_key=correlation_key,
            )
        return delivered

    def start(
        self, key: str, *, correlation_key: str, variables: Mapping[str, Any] | None = None
    ) -> ProcessInstance:
        with self._uow() as uow:
            instance = self.start_in(uow, key, correlation_key=correlation_key, variables=variables)
            uow.commit()
        return instance

    def correlate(
        self,
        message_name: str,
        correlation_key: str,
        payload: Mapping[str, Any] | None = None,
        *,
        buffer: bool = False,
    ) -> list[str]:
        with self._uow() as uow:
            delivered = self.correlate_in(
                uow, message_name, correlation_key, payload, buffer=buffer
            )
            uow.commit()
        return delivered

    def variables_in(self, uow: UnitOfWork, instance: ProcessInstance) -> dict[str, Any]:
        """The process variables of an instance as it stands, in ``uow``."""
        workflow = self._load(uow, instance, self._context(uow, instance))
        return self._engine.variables(workflow)

    def set_variables_in(
        self, uow: UnitOfWork, instance_id: str, values: Mapping[str, Any], *, reason: str
    ) -> ProcessInstance:
        """Set variables of a running instance where it waits (e.g. the fulfillment it was
        released to later), in ``uow``; recorded in its history with the reason."""
        bad = [name for name in values if not name.isidentifier() or name.startswith("_")]
        if bad:
            raise Invalid(f"process variable names must be identifiers: {', '.join(bad)}")
        instance = self._instance_for_update(uow, instance_id)
        context = self._context(uow, instance)
        workflow = self._load(uow, instance, context)
        self._engine.set_variables(workflow, values)
        entry = HistoryEntry(
            instance_id=instance.id,
            at=self._clock.now(),
            kind="variables_set",
            element_id=None,
            detail={"variables": dict(values), "reason": reason},
        )
        self._persist(uow, instance, workflow, context, history=[entry])
        return instance

    def cancel_in(self, uow: UnitOfWork, instance_id: str, *, reason: str) -> ProcessInstance:
        """Stop a running instance where it stands (e.g. its order was cancelled), in ``uow``:
        its open tasks and pending timers are cancelled; no further activity runs."""
        if not reason.strip():
            raise Invalid("cancelling a process needs a reason")
        instance = self._instance_for_update(uow, instance_id)
        context = self._context(uow, instance)
        workflow = self._load(uow, instance, context)
        self._engine.cancel(workflow)
        cancelled = HistoryEntry(
            instance_id=instance.id,
            at=self._clock.now(),
            kind="cancelled",
            element_id=None,
            detail={"reason": reason},
        )
        self._persist(uow, instance, workflow, context, history=[cancelled], cancelling=True)
        uow.record(
            ProcessInstanceCancelled(
                instance_id=instance.id,
                process_key=instance.process_key,
                correlation_key=instance.correlation_key,
                reason=reason,
            )
        )
        return instance

    def cancel(self, instance_id: str, *, reason: str) -> ProcessInstance:
        with self._uow() as uow:
            instance = self.cancel_in(uow, instance_id, reason=reason)
            uow.commit()
        return instance

    # -- reading -----------------------------------------------------------------------------

    def instance(self, instance_id: str, principal: Principal = SYSTEM) -> InstanceView:
        """Where an instance stands. A store associate sees only instances with a task at one
        of their locations."""
        with self._uow(read_only=True) as uow:
            instance = uow.processes.get_instance(instance_id)
            if instance is None:
                raise ProcessInstanceNotFound(f"no process instance '{instance_id}'")
            tasks = uow.processes.tasks_of(instance_id)
            _may_see(principal, instance, tasks, raising=True)
            workflow = self._load(uow, instance, self._context(uow, instance))
            return InstanceView(
                instance=instance,
                tasks=tasks,
                timers=uow.processes.timers_of(instance_id),
                history=uow.processes.history(instance_id),
                variables=self._engine.variables(workflow),
            )

    def instances_for(
        self, correlation_key: str, principal: Principal = SYSTEM
    ) -> list[ProcessInstance]:
        with self._uow(read_only=True) as uow:
            found = uow.processes.instances_for(correlation_key)
            if not principal.is_location_bound:
                return found
            return [
                instance
                for instance in found
                if _may_see(principal, instance, uow.processes.tasks_of(instance.id), raising=False)
            ]

    # -- associate tasks ---------------------------------------------------------------------

    def tasks(
        self,
        principal: Principal,
        *,
        location_code: str | None = None,
        states: Sequence[TaskState] = ACTIVE_TASK_STATES,
        limit: int = 100,
    ) -> list[ProcessTask]:
        """The task list; a store associate sees only their own locations' tasks for their role."""
        if not 1 <= limit <= 1000:
            raise Invalid("'limit' must be between 1 and 1000")
        codes: list[str] | None
        if location_code is not None:
            principal.require_location(location_code)
            codes = [location_code]
        elif principal.is_location_bound:
            codes = sorted(principal.location_codes)
        else:
            codes = None
        roles = None if principal.role in (Role.ADMIN, Role.INTEGRATION) else [principal.role]
        with self._uow(read_only=True) as uow:
            found = uow.processes.list_tasks(
                location_codes=codes, candidate_roles=roles, states=states, limit=limit
            )
        return [task for task in found if _may_work_on(principal, task, raising=False)]

    def task(self, task_id: str, principal: Principal) -> ProcessTask:
        with self._uow(read_only=True) as uow:
            task = uow.processes.get_task(task_id)
        if task is None:
            raise ProcessTaskNotFound(f"no process task '{task_id}'")
        _may_work_on(principal, task, raising=True)
        return task

    def claim(self, task_id: str, principal: Principal) -> ProcessTask:
        with self._uow() as uow:
            task = self._task_for_update(uow, task_id, principal)
            if task.state is TaskState.CLAIMED and task.claimed_by == principal.actor:
                return task
            if task.state is not TaskState.OPEN:
                raise ProcessTaskNotOpen(_not_open(task), state=task.state.value)
            task.state = TaskState.CLAIMED
            task.claimed_by = principal.actor
            task.claimed_at = self._clock.now()
            uow.processes.save_task(task)
            uow.processes.add_history(
                [
                    HistoryEntry(
                        instance_id=task.instance_id,
                        at=task.claimed_at,
                        kind="task_claimed",
                        element_id=task.element_id,
                        detail={"task_id": task.id, "by": principal.actor},
                    )
                ]
            )
            uow.commit()
        return task

    def release(self, task_id: str, principal: Principal) -> ProcessTask:
        """Give a claimed task back to the location's list (its claimer, or an admin key)."""
        with self._uow() as uow:
            task = self._task_for_update(uow, task_id, principal)
            if task.state is TaskState.OPEN:
                return task
            mine = task.claimed_by == principal.actor or principal.role in (
                Role.ADMIN,
                Role.INTEGRATION,
            )
            if task.state is not TaskState.CLAIMED or not mine:
                raise ProcessTaskNotOpen(_not_open(task), state=task.state.value)
            released_from = task.claimed_by
            task.state = TaskState.OPEN
            task.claimed_by = None
            task.claimed_at = None
            uow.processes.save_task(task)
            uow.processes.add_history(
                [
                    HistoryEntry(
                        instance_id=task.instance_id,
                        at=self._clock.now(),
                        kind="task_released",
                        element_id=task.element_id,
                        detail={"task_id": task.id, "by": principal.actor, "from": released_from},
                    )
                ]
            )
            uow.commit()
        return task

    def complete(
        self, task_id: str, principal: Principal, data: Mapping[str, Any] | None = None
    ) -> ProcessTask:
        """Complete an open task (or one claimed by this caller) and run the process on."""
        data = dict(data or {})
        with self._uow() as uow:
            task = self._task_for_update(uow, task_id, principal)
            if task.state not in ACTIVE_TASK_STATES or (
                task.state is TaskState.CLAIMED and task.claimed_by != principal.actor
            ):
                raise ProcessTaskNotOpen(_not_open(task), state=task.state.value)
            self._complete_in(uow, task, data, actor=principal.actor)
            uow.commit()
        return task

    def complete_tasks_in(
        self,
        uow: UnitOfWork,
        correlation_key: str,
        element_ids: Sequence[str],
        data: Mapping[str, Any],
        *,
        actor: str,
        instances: Sequence[ProcessInstance] | None = None,
    ) -> list[str]:
        """Complete, in ``uow``, the open tasks of these elements in the running instances with
        this correlation key (the work was done elsewhere: a store app confirmed the pick through
        the fulfillment API). Returns the ids of the tasks completed. ``instances``: the running
        instances of the key, when the caller has read them (locked) already."""
        done: list[str] = []
        if instances is None:
            instances = uow.processes.running_instances(correlation_key)
        for instance in instances:
            if instance.status is not InstanceStatus.RUNNING or not _may_wait_on_user_task(
                instance, element_ids
            ):
                continue
            for task in uow.processes.tasks_of(instance.id):
                if task.element_id not in element_ids or task.state not in ACTIVE_TASK_STATES:
                    continue
                locked = uow.processes.get_task(task.id, for_update=True)
                if locked is None or locked.state not in ACTIVE_TASK_STATES:
                    continue
                self._complete_in(uow, locked, dict(data), actor=actor)
                done.append(locked.id)
        return done

    def _complete_in(
        self, uow: UnitOfWork, task: ProcessTask, data: dict[str, Any], *, actor: str
    ) -> None:
        missing = [name for name in task.required_fields if data.get(name) in (None, "")]
        if missing:
            raise ProcessTaskDataInvalid(
                f"task '{task.name}' needs {', '.join(missing)}",
                errors=[{"pointer": f"#/data/{name}", "detail": "required"} for name in missing],
            )
        bad = [name for name in data if not name.isidentifier() or name.startswith("_")]
        if bad:
            raise ProcessTaskDataInvalid(
                f"task data names must be identifiers not starting with '_': {', '.join(bad)}",
                errors=[{"pointer": f"#/data/{name}", "detail": "bad name"} for name in bad],
            )
        instance = self._instance_for_update(uow, task.instance_id)
        context = self._context(uow, instance)
        workflow = self._load(uow, instance, context)
        now = self._clock.now()
        task.state = TaskState.COMPLETED
        task.completed_at = now
        task.completed_by = actor
        task.result = data
        uow.processes.save_task(task)
        if not self._engine.complete_user_task(workflow, task.spiff_task_id, data):
            raise ProcessTaskNotOpen(
                f"task '{task.id}' is no longer waiting in its process", state="stale"
            )
        uow.record(
            ProcessTaskCompleted(
                task_id=task.id,
                instance_id=task.instance_id,
                element_id=task.element_id,
                completed_by=actor,
            )
        )
        completed = HistoryEntry(
            instance_id=instance.id,
            at=now,
            kind="task_completed",
            element_id=task.element_id,
            detail={"task_id": task.id, "by": actor, "data": data},
        )
        self._persist(uow, instance, workflow, context, history=[completed])

    # -- timers ------------------------------------------------------------------------------

    def run_due_timers(self, *, limit: int = 100, batch: int = 20) -> TimerRun:
        """Fire the timers due by the clock's now, ``batch`` of them per transaction.

        Several workers may call this at once: the batch is claimed with ``FOR UPDATE SKIP
        LOCKED`` (PostgreSQL; SQLite serialises writers) and each timer moves from pending to
        fired by a conditional update in the same transaction as its instance's new state, so
        no timer fires twice; a worker dying midway leaves the whole batch pending. Each timer
        runs in a savepoint: one whose activities fail is undone alone and marked failed (with
        the error) in the same commit, and left for an operator.
        """
        fired = failed = 0
        skip: list[str] = []
        while fired + failed < limit:
            with self._uow() as uow:
                timers = uow.processes.claim_due_timers(
                    now=self._clock.now(), limit=min(batch, limit - fired - failed), skip=skip
                )
                if not timers:
                    break
                for timer in timers:
                    skip.append(timer.id)
                    try:
                        with uow.savepoint():
                            done = self._fire(uow, timer)
                    except Exception as error:  # one broken timer must not stop the others
                        failed += 1
                        self._mark_failed_in(uow, timer, error)
                        continue
                    if done:
                        fired += 1
                uow.commit()
        return TimerRun(fired=fired, failed=failed)

    def _fire(self, uow: UnitOfWork, timer: ProcessTimer) -> bool:
        now = self._clock.now()
        if not uow.processes.set_timer_state(
            timer.id, expected=TimerState.PENDING, state=TimerState.FIRED, at=now
        ):
            return False
        instance = uow.processes.get_instance(timer.instance_id, for_update=True)
        if instance is None or instance.status is not InstanceStatus.RUNNING:
            return True
        context = self._context(uow, instance)
        workflow = self._load(uow, instance, context)
        self._engine.fire_due_timers(workflow)
        fired_entry = HistoryEntry(
            instance_id=instance.id,
            at=now,
            kind="timer_fired",
            element_id=timer.element_id,
            detail={"timer_id": timer.id, "name": timer.name, "due_at": timer.due_at.isoformat()},
        )
        self._persist(uow, instance, workflow, context, history=[fired_entry])
        return True

    def _mark_failed_in(self, uow: UnitOfWork, timer: ProcessTimer, error: Exception) -> None:
        detail = (
            error.detail if isinstance(error, DomainError) else f"{type(error).__name__}: {error}"
        )
        log.warning("process timer %s failed: %s", timer.id, detail)
        if uow.processes.set_timer_state(
            timer.id, expected=TimerState.PENDING, state=TimerState.FAILED, error=detail
        ):
            uow.processes.add_history(
                [
                    HistoryEntry(
                        instance_id=timer.instance_id,
                        at=self._clock.now(),
                        kind="timer_failed",
                        element_id=timer.element_id,
                        detail={"timer_id": timer.id, "error": detail},
                    )
                ]
            )

    # -- persistence -------------------------------------------------------------------------

    def _context(self, uow: UnitOfWork, instance: ProcessInstance) -> RunContext:
        return RunContext(
            uow=uow,
            instance_id=instance.id,
            process_key=instance.process_key,
            correlation_key=instance.correlation_key,
        )

    def _definition(self, uow: UnitOfWork, definition_id: int) -> ProcessDefinition:
        definition = self._definitions.get(definition_id)
        if definition is None:  # versions never change once deployed: keep them
            definition = uow.processes.get_definition(definition_id)
            if definition is None:  # pragma: no cover - foreign key
                raise ProcessDefinitionNotFound(f"definition {definition_id} is missing")
            self._definitions[definition.id] = definition
        return definition

    def _load(self, uow: UnitOfWork, instance: ProcessInstance, context: RunContext) -> Any:
        definition = self._definition(uow, instance.definition_id)
        return self._engine.load(definition.id, definition.bpmn_xml, instance.state, context)

    def _instance_for_update(self, uow: UnitOfWork, instance_id: str) -> ProcessInstance:
        instance = uow.processes.get_instance(instance_id, for_update=True)
        if instance is None:
            raise ProcessInstanceNotFound(f"no process instance '{instance_id}'")
        if instance.status is not InstanceStatus.RUNNING:
            raise ProcessInstanceNotRunning(
                f"process instance '{instance_id}' is {instance.status.value}",
                instance_status=instance.status.value,
            )
        return instance

    def _task_for_update(self, uow: UnitOfWork, task_id: str, principal: Principal) -> ProcessTask:
        task = uow.processes.get_task(task_id, for_update=True)
        if task is None:
            raise ProcessTaskNotFound(f"no process task '{task_id}'")
        _may_work_on(principal, task, raising=True)
        return task

    def _persist(
        self,
        uow: UnitOfWork,
        instance: ProcessInstance,
        workflow: Any,
        context: RunContext,
        *,
        history: list[HistoryEntry],
        cancelling: bool = False,
        new_key: bool = False,
    ) -> None:
        """Write the instance's new state, its task list and timers, in ``uow``."""
        now = self._clock.now()
        engine = self._engine
        entries = list(history)
        if not cancelling and (not new_key or uow.processes.kept_here(instance.correlation_key)):
            self._deliver_buffered(uow, instance, workflow, entries)
        is_new = instance.revision == 0
        expected_revision = instance.revision
        # rows can only be open/pending for what the instance waited on when last saved
        waited_on = {element.get("waits_for", "unknown") for element in instance.active_elements}
        if "unknown" in waited_on:  # saved before elements said what they wait for
            waited_on |= {"user", "timer"}
        instance.state = engine.dump(workflow)
        instance.waiting_messages = engine.waiting_messages(workflow)
        instance.active_elements = engine.active_elements(workflow)
        instance.updated_at = now
        instance.revision += 1
        entries.extend(
            HistoryEntry(
                instance_id=instance.id,
                at=now,
                kind="element_completed",
                element_id=step["element_id"],
                detail={"name": step["name"], "type": step["type"]},
            )
            for step in context.steps
        )
        context.steps.clear()
        if cancelling:
            instance.status = InstanceStatus.CANCELLED
            instance.completed_at = now
        elif workflow.completed:
            instance.status = InstanceStatus.COMPLETED
            instance.completed_at = now
            uow.record(
                ProcessInstanceCompleted(
                    instance_id=instance.id,
                    process_key=instance.process_key,
                    correlation_key=instance.correlation_key,
                )
            )
        if is_new:
            uow.processes.add_instance(instance)
        elif not uow.processes.save_instance(instance, expected_revision=expected_revision):
            raise ProcessChangedConcurrently(
                f"process instance '{instance.id}' was changed meanwhile; retry"
            )
        self._sync_tasks(uow, instance, workflow, entries, known_rows="user" in waited_on)
        self._sync_timers(
            uow,
            instance,
            workflow,
            entries,
            known_rows="timer" in waited_on,
            cancelling=cancelling,
        )
        if instance.status is InstanceStatus.COMPLETED:
            entries.append(
                HistoryEntry(
                    instance_id=instance.id, at=now, kind="completed", element_id=None, detail={}
                )
            )
        uow.processes.add_history(entries)

    def _deliver_buffered(
        self,
        uow: UnitOfWork,
        instance: ProcessInstance,
        workflow: Any,
        entries: list[HistoryEntry],
    ) -> None:
        """Hand the instance the messages that arrived for its key before it waited for them.

        Only messages it has newly come to wait for are looked up: a message is kept only when
        no instance with its key waited for it, so none can be kept for what it waited on before.
        """
        waited_before = set(instance.waiting_messages)
        for _ in range(1000):
            if workflow.completed:
                return
            waiting = [
                name
                for name in self._engine.waiting_messages(workflow)
                if name not in waited_before
            ]
            if not waiting:
                return
            pending = uow.processes.buffered_messages(instance.correlation_key, waiting)
            if not pending:
                return
            message = pending[0]
            now = self._clock.now()
            if not uow.processes.consume_message(message.id, instance_id=instance.id, at=now):
                return
            self._engine.deliver_message(workflow, message.message_name, message.payload)
            entries.append(
                HistoryEntry(
                    instance_id=instance.id,
                    at=now,
                    kind="message_received",
                    element_id=None,
                    detail={
                        "message": message.message_name,
                        "payload": message.payload,
                        "received_at": message.received_at.isoformat(),
                    },
                )
            )

    def _sync_tasks(
        self,
        uow: UnitOfWork,
        instance: ProcessInstance,
        workflow: Any,
        entries: list[HistoryEntry],
        *,
        known_rows: bool,
    ) -> None:
        now = self._clock.now()
        rows = uow.processes.tasks_of(instance.id) if known_rows else []
        known = {t.spiff_task_id: t for t in rows}
        ready = set()
        for open_task in self._engine.open_user_tasks(workflow):
            ready.add(open_task.spiff_task_id)
            if open_task.spiff_task_id in known:
                continue
            task = ProcessTask(
                id=self._ids.new_id(),
                instance_id=instance.id,
                spiff_task_id=open_task.spiff_task_id,
                element_id=open_task.element_id,
                name=open_task.name,
                location_code=open_task.location_code,
                candidate_role=open_task.candidate_role,
                state=TaskState.OPEN,
                data=open_task.data,
                required_fields=open_task.required_fields,
                created_at=now,
            )
            uow.processes.add_task(task)
            entries.append(
                HistoryEntry(
                    instance_id=instance.id,
                    at=now,
                    kind="task_opened",
                    element_id=task.element_id,
                    detail={"task_id": task.id, "location_code": task.location_code},
                )
            )
            uow.record(
                ProcessTaskOpened(
                    task_id=task.id,
                    instance_id=instance.id,
                    element_id=task.element_id,
                    name=task.name,
                    location_code=task.location_code,
                    candidate_role=task.candidate_role,
                )
            )
        for task in known.values():
            if task.state in ACTIVE_TASK_STATES and task.spiff_task_id not in ready:
                task.state = TaskState.CANCELLED
                task.completed_at = now
                uow.processes.save_task(task)
                entries.append(
                    HistoryEntry(
                        instance_id=instance.id,
                        at=now,
                        kind="task_cancelled",
                        element_id=task.element_id,
                        detail={"task_id": task.id},
                    )
                )

    def _sync_timers(
        self,
        uow: UnitOfWork,
        instance: ProcessInstance,
        workflow: Any,
        entries: list[HistoryEntry],
        *,
        known_rows: bool,
        cancelling: bool,
    ) -> None:
        now = self._clock.now()
        still_waiting = list(self._engine.waiting_timers(workflow))
        if known_rows and not still_waiting:
            # none waits any more (the usual case once the instance moves on): every pending
            # row goes, fired or cancelled, in one statement rather than a read and a write each
            for timer in uow.processes.close_pending_timers(
                instance.id, now=now, cancelling=cancelling
            ):
                entries.append(
                    HistoryEntry(
                        instance_id=instance.id,
                        at=now,
                        kind="timer_fired"
                        if timer.state is TimerState.FIRED
                        else "timer_cancelled",
                        element_id=timer.element_id,
                        detail={"timer_id": timer.id},
                    )
                )
            return
        rows = uow.processes.timers_of(instance.id) if known_rows else []
        known = {t.spiff_task_id: t for t in rows}
        waiting = set()
        for waiting_timer in still_waiting:
            waiting.add(waiting_timer.spiff_task_id)
            if waiting_timer.spiff_task_id in known:
                continue
            timer = ProcessTimer(
                id=self._ids.new_id(),
                instance_id=instance.id,
                spiff_task_id=waiting_timer.spiff_task_id,
                element_id=waiting_timer.element_id,
                name=waiting_timer.name,
                due_at=waiting_timer.due_at,
                state=TimerState.PENDING,
            )
            uow.processes.add_timer(timer)
            entries.append(
                HistoryEntry(
                    instance_id=instance.id,
                    at=now,
                    kind="timer_scheduled",
                    element_id=timer.element_id,
                    detail={"timer_id": timer.id, "due_at": timer.due_at.isoformat()},
                )
            )
        for timer in known.values():
            if timer.state is TimerState.PENDING and timer.spiff_task_id not in waiting:
                # gone from the process: it fired along with other work, or its task moved on
                fired = timer.due_at <= now and not cancelling
                state = TimerState.FIRED if fired else TimerState.CANCELLED
                uow.processes.set_timer_state(
                    timer.id,
                    expected=TimerState.PENDING,
                    state=state,
                    at=now if state is TimerState.FIRED else None,
                )
                entries.append(
                    HistoryEntry(
                        instance_id=instance.id,
                        at=now,
                        kind="timer_fired" if state is TimerState.FIRED else "timer_cancelled",
                        element_id=timer.element_id,
                        detail={"timer_id": timer.id},
                    )
                )


def _may_work_on(principal: Principal, task: ProcessTask, *, raising: bool) -> bool:
    """Admin and integration keys act on any task; others on their role's tasks at their
    locations (store associates are bound to their locations)."""
    if principal.role in (Role.ADMIN, Role.INTEGRATION):
        return True
    if task.candidate_role != principal.role.value:
        if raising:
            raise Forbidden(
                f"task '{task.id}' is for the role '{task.candidate_role}', not '{principal.role}'"
            )
        return False
    bound_elsewhere = principal.is_location_bound and (
        task.location_code is None or not principal.can_access_location(task.location_code)
    )
    if bound_elsewhere:
        if raising:
            principal.require_location(task.location_code or "(none)")
        return False
    return True


def _may_see(
    principal: Principal, instance: ProcessInstance, tasks: list[ProcessTask], *, raising: bool
) -> bool:
    if not principal.is_location_bound:
        return True
    if any(t.location_code and principal.can_access_location(t.location_code) for t in tasks):
        return True
    if raising:
        raise Forbidden(
            f"process instance '{instance.id}' has no task at {sorted(principal.location_codes)}"
        )
    return False


def _may_wait_on_user_task(instance: ProcessInstance, element_ids: Sequence[str]) -> bool:
    """Whether the instance, as last saved, may have an open task of these elements (rows saved
    before elements said what they wait for may: look them up)."""
    for element in instance.active_elements:
        waits_for = element.get("waits_for", "unknown")
        if waits_for == "unknown" or (
            waits_for == "user" and element.get("element_id") in element_ids
        ):
            return True
    return False


def _not_open(task: ProcessTask) -> str:
    if task.state is TaskState.CLAIMED:
        return f"task '{task.id}' is claimed by {task.claimed_by}"
    return f"task '{task.id}' is {task.state.value}"
