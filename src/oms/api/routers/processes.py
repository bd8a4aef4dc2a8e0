"""BPMN processes: deploy definitions, see instances, work on associate tasks, send messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from oms.api.deps import ServicesDep, require
from oms.api.errors import CONFLICT, NOT_FOUND, PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal
from oms.domain.errors import Invalid
from oms.domain.processes import (
    HistoryEntry,
    InstanceStatus,
    ProcessDefinition,
    ProcessInstance,
    ProcessTask,
    ProcessTimer,
    TaskState,
    TimerState,
)
from oms.services.processes import InstanceView

router = APIRouter(tags=["processes"], responses=PROBLEM_RESPONSES)

Reader = Annotated[Principal, Depends(require(Permission.PROCESSES_READ))]
Writer = Annotated[Principal, Depends(require(Permission.PROCESSES_WRITE))]
Worker = Annotated[Principal, Depends(require(Permission.PROCESS_TASKS_WORK))]

XML_TYPES = ("application/xml", "text/xml", "application/bpmn+xml")


# --- schemas ----------------------------------------------------------------------------------


class DeployIn(BaseModel):
    bpmn_xml: str = Field(min_length=1, description="A BPMN 2.0 document with one process")


class DefinitionOut(BaseModel):
    key: str = Field(description="The BPMN process id")
    version: int
    name: str
    checksum: str = Field(description="SHA-256 of the BPMN document")
    deployed_at: datetime
    deployed_by: str

    @classmethod
    def of(cls, definition: ProcessDefinition) -> DefinitionOut:
        return cls(
            key=definition.key,
            version=definition.version,
            name=definition.name,
            checksum=definition.checksum,
            deployed_at=definition.deployed_at,
            deployed_by=definition.deployed_by,
        )


class DeploymentOut(DefinitionOut):
    created: bool = Field(description="False when the newest version had exactly this document")


class DefinitionDocumentOut(DefinitionOut):
    bpmn_xml: str


class ActivityOut(BaseModel):
    name: str
    required: list[str]
    optional: list[str]
    description: str


class StartIn(BaseModel):
    process_key: str = Field(min_length=1, max_length=100)
    correlation_key: str = Field(
        min_length=1, max_length=200, description="What the instance is about, e.g. the order id"
    )
    variables: dict[str, Any] = Field(default_factory=dict)


class CancelIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500, examples=["order cancelled by customer"])


class MessageIn(BaseModel):
    message_name: str = Field(min_length=1, max_length=100, examples=["checked_in"])
    correlation_key: str = Field(min_length=1, max_length=200, examples=["ORD-1001"])
    payload: dict[str, Any] = Field(default_factory=dict)
    buffer: bool = Field(
        default=False,
        description="If no instance waits for it yet, keep it and deliver it when one does "
        "(instead of a 409)",
    )


class MessageOut(BaseModel):
    delivered_to: list[str] = Field(description="Ids of the instances that took the message")
    buffered: bool = Field(description="True when kept for an instance that does not wait yet")


class TaskOut(BaseModel):
    id: str
    instance_id: str
    element_id: str
    name: str
    location_code: str | None
    candidate_role: str
    state: TaskState
    required_fields: list[str]
    data: dict[str, Any] = Field(description="The process variables when the task opened")
    result: dict[str, Any] | None
    claimed_by: str | None
    completed_by: str | None
    created_at: datetime | None
    claimed_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, task: ProcessTask) -> TaskOut:
        return cls(
            id=task.id,
            instance_id=task.instance_id,
            element_id=task.element_id,
            name=task.name,
            location_code=task.location_code,
            candidate_role=task.candidate_role,
            state=task.state,
            required_fields=task.required_fields,
            data=task.data,
            result=task.result,
            claimed_by=task.claimed_by,
            completed_by=task.completed_by,
            created_at=task.created_at,
            claimed_at=task.claimed_at,
            completed_at=task.completed_at,
        )


class TaskPage(BaseModel):
    items: list[TaskOut]


class CompleteIn(BaseModel):
    data: dict[str, Any] = Field(default_factory=dict, description="Form data for the process")


class TimerOut(BaseModel):
    id: str
    element_id: str
    name: str
    due_at: datetime
    state: TimerState
    fired_at: datetime | None
    error: str | None

    @classmethod
    def of(cls, timer: ProcessTimer) -> TimerOut:
        return cls(
            id=timer.id,
            element_id=timer.element_id,
            name=timer.name,
            due_at=timer.due_at,
            state=timer.state,
            fired_at=timer.fired_at,
            error=timer.error,
        )


class HistoryOut(BaseModel):
    at: datetime
    kind: str
    element_id: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryOut:
        return cls(at=entry.at, kind=entry.kind, element_id=entry.element_id, detail=entry.detail)


class ActiveElementOut(BaseModel):
    element_id: str
    name: str
    type: str = Field(description="The BPMN element type, e.g. UserTask, BoundaryEvent")
    state: str = Field(description="ready, waiting or started")
    waits_for: str = Field(default="", description="user, timer, message or empty")


class InstanceSummaryOut(BaseModel):
    id: str
    process_key: str
    version: int
    correlation_key: str
    status: InstanceStatus
    active_elements: list[ActiveElementOut] = Field(description="Where the instance stands")
    waiting_for_messages: list[str]
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @classmethod
    def summary(cls, instance: ProcessInstance) -> dict[str, Any]:
        return {
            "id": instance.id,
            "process_key": instance.process_key,
            "version": instance.version,
            "correlation_key": instance.correlation_key,
            "status": instance.status,
            "active_elements": [ActiveElementOut(**a) for a in instance.active_elements],
            "waiting_for_messages": instance.waiting_messages,
            "started_at": instance.started_at,
            "updated_at": instance.updated_at,
            "completed_at": instance.completed_at,
        }

    @classmethod
    def of(cls, instance: ProcessInstance) -> InstanceSummaryOut:
        return cls(**cls.summary(instance))


class InstanceOut(InstanceSummaryOut):
    open_tasks: list[TaskOut]
    tasks: list[TaskOut]
    timers: list[TimerOut]
    history: list[HistoryOut]
    variables: dict[str, Any]

    @classmethod
    def of_view(cls, view: InstanceView) -> InstanceOut:
        tasks = [TaskOut.of(t) for t in view.tasks]
        return cls(
            **InstanceSummaryOut.summary(view.instance),
            open_tasks=[t for t in tasks if t.state in (TaskState.OPEN, TaskState.CLAIMED)],
            tasks=tasks,
            timers=[TimerOut.of(t) for t in view.timers],
            history=[HistoryOut.of(h) for h in view.history],
            variables=view.variables,
        )


# --- definitions ------------------------------------------------------------------------------


@router.post(
    "/processes/definitions",
    status_code=201,
    summary="Deploy a BPMN definition (validated; creates a new version)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/xml": {"schema": {"type": "string"}},
                "application/json": {"schema": DeployIn.model_json_schema()},
            },
        }
    },
)
async def deploy_definition(
    request: Request, response: Response, services: ServicesDep, principal: Writer
) -> DeploymentOut:
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in XML_TYPES:
        try:
            bpmn_xml = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("the BPMN document must be UTF-8") from None
    else:
        try:
            bpmn_xml = DeployIn.model_validate_json(body or b"{}").bpmn_xml
        except ValidationError:
            raise Invalid(
                'send the BPMN document as application/xml, or JSON {"bpmn_xml": "..."}',
                errors=[{"pointer": "#/bpmn_xml", "detail": "required"}],
            ) from None
    deployment = await run_in_threadpool(
        services.processes.deploy, bpmn_xml, deployed_by=principal.actor
    )
    if not deployment.created:
        response.status_code = 200
    return DeploymentOut(
        **DefinitionOut.of(deployment.definition).model_dump(), created=deployment.created
    )


@router.get("/processes/definitions", summary="List process definitions and their versions")
def list_definitions(
    services: ServicesDep,
    _: Reader,
    key: Annotated[str | None, Query(description="Only this process")] = None,
) -> list[DefinitionOut]:
    return [DefinitionOut.of(d) for d in services.processes.definitions(key)]


@router.get(
    "/processes/definitions/{key}/versions/{version}",
    responses=NOT_FOUND,
    summary="One version of a definition, with its BPMN document",
)
def get_definition(
    key: str, version: int, services: ServicesDep, _: Reader
) -> DefinitionDocumentOut:
    definition = services.processes.definition(key, version)
    return DefinitionDocumentOut(
        **DefinitionOut.of(definition).model_dump(), bpmn_xml=definition.bpmn_xml
    )


@router.get("/processes/activities", summary="Activities service tasks may call, with parameters")
def list_activities(services: ServicesDep, _: Reader) -> list[ActivityOut]:
    return [
        ActivityOut(
            name=a.name,
            required=sorted(a.required),
            optional=sorted(a.optional),
            description=a.description,
        )
        for a in services.processes.activities.all()
    ]


# --- instances and messages -------------------------------------------------------------------


@router.post(
    "/processes/instances",
    status_code=201,
    responses=NOT_FOUND,
    summary="Start an instance of the newest version of a process",
)
def start_instance(body: StartIn, services: ServicesDep, _: Writer) -> InstanceOut:
    instance = services.processes.start(
        body.process_key, correlation_key=body.correlation_key, variables=body.variables
    )
    return InstanceOut.of_view(services.processes.instance(instance.id))


@router.get("/processes/instances", summary="Instances about one thing (e.g. an order)")
def list_instances(
    services: ServicesDep,
    principal: Reader,
    correlation_key: Annotated[str, Query(min_length=1, description="e.g. the order id")],
) -> list[InstanceSummaryOut]:
    found = services.processes.instances_for(correlation_key, principal)
    return [InstanceSummaryOut.of(i) for i in found]


@router.get(
    "/processes/instances/{instance_id}",
    responses=NOT_FOUND,
    summary="Where an instance stands: active elements, open tasks, timers, history",
)
def get_instance(instance_id: str, services: ServicesDep, principal: Reader) -> InstanceOut:
    return InstanceOut.of_view(services.processes.instance(instance_id, principal))


@router.post(
    "/processes/instances/{instance_id}/cancel",
    responses={**NOT_FOUND, **CONFLICT},
    summary="Stop a running instance where it stands (open tasks and timers are cancelled)",
)
def cancel_instance(
    instance_id: str, body: CancelIn, services: ServicesDep, _: Writer
) -> InstanceOut:
    services.processes.cancel(instance_id, reason=body.reason)
    return InstanceOut.of_view(services.processes.instance(instance_id))


@router.post(
    "/processes/messages",
    responses=CONFLICT,
    summary="Correlate a message (shipped, checked_in, received...) to waiting instances",
)
def correlate_message(body: MessageIn, services: ServicesDep, _: Writer) -> MessageOut:
    delivered = services.processes.correlate(
        body.message_name, body.correlation_key, body.payload, buffer=body.buffer
    )
    return MessageOut(delivered_to=delivered, buffered=not delivered)


# --- associate tasks --------------------------------------------------------------------------


@router.get("/process-tasks", summary="Task list; store associates see their own locations only")
def list_tasks(
    services: ServicesDep,
    principal: Reader,
    location_code: Annotated[str | None, Query(description="Only this location's tasks")] = None,
    state: Annotated[list[TaskState] | None, Query(description="Default: open and claimed")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TaskPage:
    states = state or [TaskState.OPEN, TaskState.CLAIMED]
    tasks = services.processes.tasks(
        principal, location_code=location_code, states=states, limit=limit
    )
    return TaskPage(items=[TaskOut.of(t) for t in tasks])


@router.get("/process-tasks/{task_id}", responses=NOT_FOUND, summary="One task")
def get_task(task_id: str, services: ServicesDep, principal: Reader) -> TaskOut:
    return TaskOut.of(services.processes.task(task_id, principal))


@router.post(
    "/process-tasks/{task_id}/claim",
    responses={**NOT_FOUND, **CONFLICT},
    summary="Claim a task (409 if someone else has it)",
)
def claim_task(task_id: str, services: ServicesDep, principal: Worker) -> TaskOut:
    return TaskOut.of(services.processes.claim(task_id, principal))


@router.post(
    "/process-tasks/{task_id}/release",
    responses={**NOT_FOUND, **CONFLICT},
    summary="Give a claimed task back to the list",
)
def release_task(task_id: str, services: ServicesDep, principal: Worker) -> TaskOut:
    return TaskOut.of(services.processes.release(task_id, principal))


@router.post(
    "/process-tasks/{task_id}/complete",
    responses={**NOT_FOUND, **CONFLICT},
    summary="Complete a task with data; the process runs on",
)
def complete_task(
    task_id: str, body: CompleteIn, services: ServicesDep, principal: Worker
) -> TaskOut:
    return TaskOut.of(services.processes.complete(task_id, principal, body.data))
