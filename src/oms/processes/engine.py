"""The SpiffWorkflow runner: parse and validate BPMN, run instances, serialize their state.

Nothing here touches the database: :class:`oms.services.processes.ProcessService` loads and saves
instances around these calls, inside its (or its caller's) unit of work.

What we change in SpiffWorkflow, through its documented extension points:

* expressions (gateway conditions, service task parameters, timer durations) go through the safe
  evaluator of :mod:`oms.processes.expressions`, never ``eval``; script tasks are refused;
* service tasks call the :class:`~oms.processes.activities.ActivityRegistry`;
* timers read the injected clock, not the wall clock (our own timer event definitions, registered
  with the serializer under Spiff's names, so stored state stays plain Spiff JSON).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from lxml import etree  # type: ignore[import-untyped]
from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import (
    BasePythonScriptEngineEnvironment,
)
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default import (
    BpmnWorkflowConverter,
    TimerConditionalEventDefinitionConverter,
)
from SpiffWorkflow.bpmn.serializer.default.workflow import WorkflowConverter
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    DurationTimerEventDefinition as SpiffDurationTimer,
)
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    TimeDateEventDefinition as SpiffTimeDateTimer,
)
from SpiffWorkflow.bpmn.specs.mixins.exclusive_gateway import ExclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.inclusive_gateway import InclusiveGateway
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.spiff.specs.defaults import (
    BusinessRuleTask,
    ScriptTask,
    ServiceTask,
    UserTask,
)
from SpiffWorkflow.task import Task, TaskState

from oms.domain.errors import DomainError
from oms.domain.events import to_json_value
from oms.domain.processes import ActivityFailed, ProcessDefinitionInvalid
from oms.processes.activities import ActivityCall, ActivityRegistry
from oms.processes.expressions import ExpressionError, compile_expression
from oms.processes.expressions import evaluate as evaluate_expression
from oms.services.ports import Clock, UnitOfWork

DEFAULT_LOCATION_EXPRESSION = "location_code"
DEFAULT_CANDIDATE_ROLE = "store_associate"
_ISO_LITERAL = re.compile(r"^(P[0-9A-Z.,]+|\d{4}-\d{2}-\d{2}T[0-9:.+\-Z]+)$", re.IGNORECASE)
"""A duration (P2D, PT15M) or a date-time written as is; anything else is an expression."""


# --- expressions and activities -----------------------------------------------------------------


class SafeEnvironment(BasePythonScriptEngineEnvironment):  # type: ignore[misc]
    """Expressions through the safe evaluator; scripts are refused at deploy time and here."""

    def evaluate(
        self, expression: str, context: dict[str, Any], external_context: Any = None
    ) -> Any:
        data = dict(external_context or {})
        data.update(context)
        return evaluate_expression(expression, data)

    def execute(self, script: str, context: Any, external_context: Any = None) -> bool:
        raise ExpressionError("script tasks are not allowed in OMS processes")


@dataclass
class RunContext:
    """The instance being run and the unit of work its activities write through."""

    uow: UnitOfWork
    instance_id: str
    process_key: str
    correlation_key: str
    steps: list[dict[str, str]] = field(default_factory=list)
    """The BPMN elements completed while running, for the instance's history."""

    def completed(self, task: Task) -> None:
        spec = task.task_spec
        if getattr(spec, "bpmn_id", None) is not None:
            self.steps.append(
                {
                    "element_id": spec.bpmn_id,
                    "name": spec.bpmn_name or "",
                    "type": type(spec).__name__,
                }
            )


class OmsScriptEngine(PythonScriptEngine):  # type: ignore[misc]
    def __init__(self, *, clock: Clock, registry: ActivityRegistry, context: RunContext) -> None:
        super().__init__(environment=SafeEnvironment())
        self.clock = clock
        self.registry = registry
        self.context = context

    def call_service(self, task: Task, **kwargs: Any) -> str:
        name = kwargs["operation_name"]
        activity = self.registry.get(name)
        element_id = task.task_spec.bpmn_id
        if activity is None:
            raise ActivityFailed(
                f"element '{element_id}': activity '{name}' is not registered",
                element_id=element_id,
            )
        parameters = {key: spec["value"] for key, spec in kwargs["operation_params"].items()}
        call = ActivityCall(
            uow=self.context.uow,
            clock=self.clock,
            instance_id=self.context.instance_id,
            process_key=self.context.process_key,
            correlation_key=self.context.correlation_key,
            element_id=element_id,
            parameters=parameters,
            variables=task.data,
        )
        result = activity.handler(call)
        return json.dumps(to_json_value(dict(result or {})))


def _now(task: Task) -> datetime:
    engine = task.workflow.script_engine
    if isinstance(engine, OmsScriptEngine):
        return engine.clock.now()
    return datetime.now(UTC)  # only outside the OMS (a modeler's test run)


def _timer_text(task: Task, expression: str) -> str:
    text = expression.strip()
    if _ISO_LITERAL.match(text):
        return text.upper() if text.upper().startswith("P") else text
    return str(task.workflow.script_engine.evaluate(task, text))


class DurationTimerEventDefinition(SpiffDurationTimer):  # type: ignore[misc]
    """An ISO 8601 duration (``P2D``, ``PT15M``) measured on the injected clock."""

    def has_fired(self, my_task: Task) -> bool:
        now = _now(my_task)
        event_value = my_task._get_internal_data("event_value")
        if event_value is None:
            parsed = TimerEventDefinition.parse_iso_duration(_timer_text(my_task, self.expression))
            delta = TimerEventDefinition.get_timedelta_from_start(parsed, now)
            event_value = (now + delta).isoformat()
            my_task._set_internal_data(event_value=event_value)
        if TimerEventDefinition.get_datetime(event_value) <= now:
            my_task._set_internal_data(event_fired=True)
        return bool(my_task._get_internal_data("event_fired", False))


class TimeDateEventDefinition(SpiffTimeDateTimer):  # type: ignore[misc]
    """An ISO 8601 date-time, compared with the injected clock."""

    def has_fired(self, my_task: Task) -> bool:
        now = _now(my_task)
        event_value = my_task._get_internal_data("event_value")
        if event_value is None:
            moment = TimerEventDefinition.get_datetime(_timer_text(my_task, self.expression))
            event_value = moment.isoformat()
            my_task._set_internal_data(event_value=event_value)
        if TimerEventDefinition.get_datetime(event_value) <= now:
            my_task._set_internal_data(event_fired=True)
        return bool(my_task._get_internal_data("event_fired", False))


class SpecFreeWorkflowConverter(BpmnWorkflowConverter):  # type: ignore[misc]
    """Spiff's workflow serialization without the process specs.

    The specs are the same for every instance of a definition version: they are rebuilt from the
    stored BPMN (parsed once per version and cached) and handed in as objects when restoring.
    """

    def to_dict(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        document: dict[str, Any] = WorkflowConverter.to_dict(self, workflow)
        document["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        document["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return document


def _make_serializer() -> BpmnWorkflowSerializer:
    config = deepcopy(SPIFF_CONFIG)
    config[BpmnWorkflow] = SpecFreeWorkflowConverter
    config.pop(SpiffDurationTimer)
    config.pop(SpiffTimeDateTimer)
    config[DurationTimerEventDefinition] = TimerConditionalEventDefinitionConverter
    config[TimeDateEventDefinition] = TimerConditionalEventDefinitionConverter
    registry = BpmnWorkflowSerializer.configure(config)
    registry.register(
        Decimal, lambda value: {"value": str(value)}, lambda dct: Decimal(dct["value"])
    )
    return BpmnWorkflowSerializer(registry)


SERIALIZER = _make_serializer()


# --- parsing and validation ---------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedProcess:
    key: str
    name: str
    spec: Any
    subprocess_specs: dict[str, Any]


def checksum(bpmn_xml: str) -> str:
    return hashlib.sha256(bpmn_xml.encode()).hexdigest()


def _refuse(element_id: str | None, message: str) -> ProcessDefinitionInvalid:
    where = f"element '{element_id}': " if element_id else ""
    return ProcessDefinitionInvalid(where + message, element_id=element_id)


def parse_process(
    bpmn_xml: str, registry: ActivityRegistry, *, check_activities: bool = True
) -> ParsedProcess:
    """Parse, check against the BPMN schema and the activity registry; refuse with the element.

    ``check_activities=False`` is for versions deployed already: their running instances must
    load even while an activity is missing (a call to it then fails, and says so).
    """
    try:
        document = etree.fromstring(bpmn_xml.encode())
    except etree.XMLSyntaxError as error:
        raise _refuse(None, f"not well-formed XML: {error}") from None
    for element in document.xpath("//*[@id='Start' or @id='End']"):
        raise _refuse(
            element.get("id"), "the ids 'Start' and 'End' are reserved by the engine; rename it"
        )
    parser = SpiffBpmnParser(validator=VALIDATOR)
    try:
        parser.add_bpmn_xml(document, filename="definition.bpmn")
        process_ids = parser.get_process_ids()
        if len(process_ids) != 1:
            raise _refuse(
                None,
                f"a definition holds exactly one executable process, found {len(process_ids)}"
                + (f" ({', '.join(process_ids)})" if process_ids else "")
                + ' (isExecutable="true")',
            )
        key = process_ids[0]
        spec = parser.get_spec(key)
        subprocess_specs = parser.get_subprocess_specs(key)
    except ValidationException as error:
        element = error.id or None
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        if error.line_number and not element:
            detail += f" (line {error.line_number})"
        raise _refuse(element, detail) from None
    except SpiffWorkflowException as error:
        raise _refuse(None, str(error).splitlines()[0]) from None
    for each in [spec, *subprocess_specs.values()]:
        _use_clock_timers(each)
        _check_spec(each, registry, check_activities=check_activities)
    name = document.xpath(f"//bpmn:process[@id='{key}']/@name", namespaces={"bpmn": _BPMN_NS})
    return ParsedProcess(
        key=key,
        name=str(name[0]) if name else key,
        spec=spec,
        subprocess_specs=subprocess_specs,
    )


_BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"


def _use_clock_timers(spec: Any) -> None:
    for task_spec in spec.task_specs.values():
        definition: Any = getattr(task_spec, "event_definition", None)
        if definition is None:
            continue
        if type(definition) is SpiffDurationTimer:
            task_spec.event_definition = DurationTimerEventDefinition(
                definition.name, definition.expression, description=definition.description
            )
        elif type(definition) is SpiffTimeDateTimer:
            task_spec.event_definition = TimeDateEventDefinition(
                definition.name, definition.expression, description=definition.description
            )


def _check_expression(element_id: str, what: str, text: str | None) -> None:
    if text is None:
        return
    try:
        compile_expression(text)
    except ExpressionError as error:
        raise _refuse(element_id, f"{what}: {error}") from None


def _check_spec(spec: Any, registry: ActivityRegistry, *, check_activities: bool) -> None:
    for task_spec in spec.task_specs.values():
        element_id = getattr(task_spec, "bpmn_id", None)
        if element_id is None:
            continue
        if isinstance(task_spec, ScriptTask):
            raise _refuse(
                element_id, "script tasks are not allowed; use a service task with an activity"
            )
        if isinstance(task_spec, BusinessRuleTask):
            raise _refuse(element_id, "business rule (DMN) tasks are not supported")
        if getattr(task_spec, "prescript", None) or getattr(task_spec, "postscript", None):
            raise _refuse(element_id, "pre- and post-scripts are not allowed")
        if isinstance(task_spec, ServiceTask) and check_activities:
            _check_service_task(element_id, task_spec, registry)
        if isinstance(task_spec, UserTask):
            properties = _properties(task_spec)
            _check_expression(
                element_id,
                "property 'location'",
                properties.get("location", DEFAULT_LOCATION_EXPRESSION),
            )
        if isinstance(task_spec, ExclusiveGateway | InclusiveGateway):
            for condition, _target in task_spec.cond_task_specs:
                if condition is not None:
                    _check_expression(element_id, "condition", condition.args[0])
        definition = getattr(task_spec, "event_definition", None)
        if isinstance(definition, CycleTimerEventDefinition):
            raise _refuse(element_id, "cycle timers (R/...) are not supported; use a duration")
        if isinstance(definition, TimerEventDefinition):
            _check_timer(element_id, definition)


def _check_service_task(element_id: str, task_spec: Any, registry: ActivityRegistry) -> None:
    activity = registry.get(task_spec.operation_name)
    if activity is None:
        known = ", ".join(registry.names()) or "none"
        raise _refuse(
            element_id,
            f"unknown activity '{task_spec.operation_name}' (registered: {known})",
        )
    given = set(task_spec.operation_params)
    missing = sorted(activity.required - given)
    if missing:
        raise _refuse(
            element_id,
            f"activity '{activity.name}' needs the parameter(s) {', '.join(missing)}",
        )
    unknown = sorted(given - activity.parameters)
    if unknown:
        raise _refuse(
            element_id,
            f"activity '{activity.name}' has no parameter(s) {', '.join(unknown)} "
            f"(it takes: {', '.join(sorted(activity.parameters)) or 'none'})",
        )
    for name, parameter in task_spec.operation_params.items():
        _check_expression(element_id, f"parameter '{name}'", parameter["value"])


def _check_timer(element_id: str, definition: TimerEventDefinition) -> None:
    text = (definition.expression or "").strip()
    if not text:
        raise _refuse(element_id, "a timer needs a duration (e.g. P2D) or a date-time")
    if _ISO_LITERAL.match(text):
        try:
            if text.upper().startswith("P"):
                TimerEventDefinition.parse_iso_duration(text)
            else:
                TimerEventDefinition.get_datetime(text)
        except Exception:
            raise _refuse(element_id, f"'{text}' is not an ISO 8601 duration") from None
        return
    _check_expression(element_id, "timer", text)


def _properties(task_spec: Any) -> dict[str, str]:
    extensions = getattr(task_spec, "extensions", None) or {}
    properties = extensions.get("properties") or {}
    return dict(properties)


# --- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenUserTask:
    spiff_task_id: str
    element_id: str
    name: str
    location_code: str | None
    candidate_role: str
    required_fields: list[str]
    data: dict[str, Any]


@dataclass(frozen=True)
class WaitingTimer:
    spiff_task_id: str
    element_id: str
    name: str
    due_at: datetime


class ProcessEngine:
    """Runs BPMN workflows with OMS activities and the injected clock."""

    def __init__(self, registry: ActivityRegistry, clock: Clock) -> None:
        self.registry = registry
        self.clock = clock
        self._specs: dict[int, ParsedProcess] = {}

    # specs are immutable per definition version: parse once, share them (as Spiff intends)
    def _parsed(self, definition_id: int, bpmn_xml: str) -> ParsedProcess:
        parsed = self._specs.get(definition_id)
        if parsed is None:
            parsed = parse_process(bpmn_xml, self.registry, check_activities=False)
            self._specs[definition_id] = parsed
        return parsed

    def _script_engine(self, context: RunContext) -> OmsScriptEngine:
        return OmsScriptEngine(clock=self.clock, registry=self.registry, context=context)

    def new(
        self,
        definition_id: int,
        bpmn_xml: str,
        variables: Mapping[str, Any],
        context: RunContext,
    ) -> BpmnWorkflow:
        parsed = self._parsed(definition_id, bpmn_xml)
        workflow = BpmnWorkflow(
            parsed.spec, parsed.subprocess_specs, script_engine=self._script_engine(context)
        )
        for task in workflow.get_tasks(state=TaskState.READY):
            task.data.update(deepcopy(dict(variables)))
        self.advance(workflow)
        return workflow

    def load(
        self, definition_id: int, bpmn_xml: str, state: Mapping[str, Any], context: RunContext
    ) -> BpmnWorkflow:
        """Restore an instance from :meth:`dump`'s document (which is not changed)."""
        parsed = self._parsed(definition_id, bpmn_xml)
        document = dict(state)
        document["subprocesses"] = dict(document.get("subprocesses") or {})
        version = document.pop(SERIALIZER.VERSION_KEY, None)
        if version is not None and version != SERIALIZER.VERSION:
            # an older serialization: let Spiff migrate it, with the specs as dictionaries
            document = json.loads(json.dumps(document))
            document["spec"] = SERIALIZER.to_dict(parsed.spec)
            document["subprocess_specs"] = {
                name: SERIALIZER.to_dict(spec) for name, spec in parsed.subprocess_specs.items()
            }
            document[SERIALIZER.VERSION_KEY] = version
            SERIALIZER.migrate(document)
            document.pop("spec")
            document.pop("subprocess_specs")
        document["spec"] = parsed.spec
        document["subprocess_specs"] = dict(parsed.subprocess_specs)
        workflow: BpmnWorkflow = SERIALIZER.from_dict(document)
        workflow.script_engine = self._script_engine(context)
        return workflow

    @staticmethod
    def dump(workflow: BpmnWorkflow) -> dict[str, Any]:
        """Spiff's serialization, without the (per-version, cached) specs."""
        document: dict[str, Any] = SERIALIZER.to_dict(workflow)
        document[SERIALIZER.VERSION_KEY] = SERIALIZER.VERSION
        return document

    def advance(self, workflow: BpmnWorkflow) -> None:
        """Run engine steps (service tasks, gateways, due timers) until only waits remain."""
        engine = workflow.script_engine
        on_complete = engine.context.completed if isinstance(engine, OmsScriptEngine) else None
        try:
            for _ in range(10_000):
                workflow.refresh_timers()
                workflow.do_engine_steps(did_complete_task=on_complete)
                if not any(not t.task_spec.manual for t in _tasks(workflow, TaskState.READY)):
                    return
            raise ActivityFailed("the process did not come to rest after 10000 steps (a loop?)")
        except (DomainError, ExpressionError):
            raise
        except SpiffWorkflowException as error:
            raise _failure(error) from error

    # -- inspecting --------------------------------------------------------------------------

    def open_user_tasks(self, workflow: BpmnWorkflow) -> Iterator[OpenUserTask]:
        for task in _tasks(workflow, TaskState.READY):
            spec = task.task_spec
            if not spec.manual:
                continue
            properties = _properties(spec)
            location_expression = properties.get("location", DEFAULT_LOCATION_EXPRESSION)
            try:
                location = evaluate_expression(location_expression, task.data)
            except ExpressionError:
                location = None
            yield OpenUserTask(
                spiff_task_id=str(task.id),
                element_id=spec.bpmn_id,
                name=spec.bpmn_name or spec.bpmn_id,
                location_code=None if location is None else str(location),
                candidate_role=properties.get("candidate_role", DEFAULT_CANDIDATE_ROLE),
                required_fields=[
                    f.strip() for f in properties.get("required_fields", "").split(",") if f.strip()
                ],
                data=to_json_value(_visible(task.data)),
            )

    @staticmethod
    def waiting_timers(workflow: BpmnWorkflow) -> Iterator[WaitingTimer]:
        for task in list(workflow.event_manager.tasks.values()):
            definition = task.task_spec.event_definition
            if not isinstance(definition, TimerEventDefinition):
                continue
            if task.state != TaskState.WAITING:
                continue
            if task._get_internal_data("event_value") is None:
                definition.has_fired(task)
            due = TimerEventDefinition.get_datetime(task._get_internal_data("event_value"))
            yield WaitingTimer(
                spiff_task_id=str(task.id),
                element_id=task.task_spec.bpmn_id or task.task_spec.name,
                name=task.task_spec.bpmn_name or definition.name or "timer",
                due_at=due,
            )

    @staticmethod
    def waiting_messages(workflow: BpmnWorkflow) -> list[str]:
        names = {
            task.task_spec.event_definition.name
            for task in workflow.event_manager.tasks.values()
            if isinstance(task.task_spec.event_definition, MessageEventDefinition)
            and task.state == TaskState.WAITING
        }
        return sorted(names)

    @staticmethod
    def active_elements(workflow: BpmnWorkflow) -> list[dict[str, str]]:
        active = []
        for task in _tasks(workflow, TaskState.READY | TaskState.WAITING | TaskState.STARTED):
            spec = task.task_spec
            if getattr(spec, "bpmn_id", None) is None:
                continue
            definition = getattr(spec, "event_definition", None)
            if spec.manual:
                waits_for = "user"
            elif isinstance(definition, TimerEventDefinition):
                waits_for = "timer"
            elif isinstance(definition, MessageEventDefinition):
                waits_for = "message"
            else:
                waits_for = ""
            active.append(
                {
                    "element_id": spec.bpmn_id,
                    "name": spec.bpmn_name or spec.bpmn_id,
                    "type": type(spec).__name__,
                    "state": TaskState.get_name(task.state).lower(),
                    "waits_for": waits_for,
                }
            )
        return active

    @staticmethod
    def variables(workflow: BpmnWorkflow) -> dict[str, Any]:
        if workflow.completed:
            last = workflow.last_task or workflow.task_tree
            data = dict(workflow.data)
            data.update(last.data)
            return dict(to_json_value(_visible(data)))
        merged: dict[str, Any] = {}
        for task in _tasks(workflow, TaskState.READY | TaskState.WAITING):
            merged.update(task.data)
        return dict(to_json_value(_visible(merged)))

    # -- driving -----------------------------------------------------------------------------

    @staticmethod
    def set_variables(workflow: BpmnWorkflow, values: Mapping[str, Any]) -> None:
        """Set process variables of a waiting instance: on every task that waits or is ready
        (where :meth:`variables` reads them), and on the finished task each of them inherits
        its data from again whenever the engine looks at it (Spiff merges the parent's data
        over the task's), so they flow on when the instance moves."""
        for task in _tasks(workflow, TaskState.READY | TaskState.WAITING | TaskState.STARTED):
            task.data.update(deepcopy(dict(values)))
            parent = task.parent
            if parent is not None and parent.state == TaskState.COMPLETED:
                parent.data.update(deepcopy(dict(values)))

    def complete_user_task(
        self, workflow: BpmnWorkflow, spiff_task_id: str, data: Mapping[str, Any]
    ) -> bool:
        """Complete a READY user task with the associate's data; False if it is not ready."""
        try:
            task = workflow.get_task_from_id(UUID(spiff_task_id))
        except Exception:
            return False
        if task is None or task.state != TaskState.READY or not task.task_spec.manual:
            return False
        task.task_spec.add_data_from_form(task, deepcopy(dict(data)))
        try:
            task.run()
        except SpiffWorkflowException as error:
            raise _failure(error) from error
        engine = workflow.script_engine
        if isinstance(engine, OmsScriptEngine):
            engine.context.completed(task)
        self.advance(workflow)
        return True

    def deliver_message(
        self, workflow: BpmnWorkflow, message_name: str, payload: Mapping[str, Any]
    ) -> bool:
        catching = [
            task
            for task in workflow.event_manager.tasks.values()
            if isinstance(task.task_spec.event_definition, MessageEventDefinition)
            and task.task_spec.event_definition.name == message_name
            and task.state == TaskState.WAITING
        ]
        if not catching:
            return False
        definition = catching[0].task_spec.event_definition
        workflow.catch(BpmnEvent(definition, payload=deepcopy(dict(payload))))
        self.advance(workflow)
        return True

    def fire_due_timers(self, workflow: BpmnWorkflow) -> None:
        self.advance(workflow)

    @staticmethod
    def cancel(workflow: BpmnWorkflow) -> None:
        """Stop the instance where it stands: every unfinished task is cancelled."""
        workflow.cancel()


def _tasks(workflow: BpmnWorkflow, mask: int) -> list[Task]:
    """The tasks in any of the states of ``mask``, subprocesses included, in creation order.

    A plain scan of the task dictionaries: much cheaper than Spiff's tree iterator.
    """
    found = [task for task in workflow.tasks.values() if task.state & mask]
    for subprocess in workflow.subprocesses.values():
        found.extend(task for task in subprocess.tasks.values() if task.state & mask)
    return found


def _visible(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not k.startswith("spiff__") and not callable(v)}


def _failure(error: SpiffWorkflowException) -> DomainError:
    cause = error.__cause__ or error.__context__
    if isinstance(cause, DomainError):
        return cause
    task = getattr(error, "task", None)
    element_id = getattr(getattr(task, "task_spec", None), "bpmn_id", None)
    message = str(error).splitlines()[0].strip() if str(error) else type(error).__name__
    if cause is not None and str(cause) and str(cause) not in message:
        message = f"{message.rstrip('. ')}: {str(cause).splitlines()[0]}"
    where = f"element '{element_id}': " if element_id else ""
    return ActivityFailed(where + message, element_id=element_id)
