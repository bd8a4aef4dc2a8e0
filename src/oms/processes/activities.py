"""The registry of OMS activities that BPMN service tasks call by name.

Another area registers its activities once, when the services are wired::

    services.processes.activities.register(
        "release", release_fulfillment, required=("fulfillment_id",), optional=("note",),
        description="Release a fulfillment to its location",
    )

A handler receives an :class:`ActivityCall`: the caller's unit of work (so that its writes and
events commit with the process state), the clock, the instance, the evaluated parameters and the
task's variables; whatever mapping it returns becomes the service task's result variable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from oms.domain.processes import ProcessNotificationRequested
from oms.services.ports import Clock, UnitOfWork


@dataclass
class ActivityCall:
    uow: UnitOfWork
    clock: Clock
    instance_id: str
    process_key: str
    correlation_key: str
    element_id: str
    parameters: dict[str, Any]
    variables: dict[str, Any]
    """The task's live process variables: an activity may set some (``set_variable``)."""

    @property
    def now(self) -> datetime:
        return self.clock.now()


ActivityHandler = Callable[[ActivityCall], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Activity:
    name: str
    handler: ActivityHandler
    required: frozenset[str]
    optional: frozenset[str]
    description: str = ""

    @property
    def parameters(self) -> frozenset[str]:
        return self.required | self.optional


@dataclass
class ActivityRegistry:
    _activities: dict[str, Activity] = field(default_factory=dict)

    def register(
        self,
        name: str,
        handler: ActivityHandler,
        *,
        required: Iterable[str] = (),
        optional: Iterable[str] = (),
        description: str = "",
        replace: bool = False,
    ) -> Activity:
        if not name or not name.replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"activity names are letters, digits, '_' and '.': {name!r}")
        if name in self._activities and not replace:
            raise ValueError(f"activity '{name}' is registered already")
        activity = Activity(
            name=name,
            handler=handler,
            required=frozenset(required),
            optional=frozenset(optional),
            description=description,
        )
        self._activities[name] = activity
        return activity

    def get(self, name: str) -> Activity | None:
        return self._activities.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._activities

    def names(self) -> list[str]:
        return sorted(self._activities)

    def all(self) -> list[Activity]:
        return [self._activities[name] for name in self.names()]


# --- generic activities -----------------------------------------------------------------------


def set_variable(call: ActivityCall) -> Mapping[str, Any]:
    """Set the process variable ``name`` to ``value``."""
    name = call.parameters["name"]
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"set_variable: {name!r} is not a variable name")
    call.variables[name] = call.parameters["value"]
    return {name: call.parameters["value"]}


def notify(call: ActivityCall) -> Mapping[str, Any]:
    """Ask for a notification (e-mail, SMS, push): an event in the outbox that senders consume."""
    template = str(call.parameters["template"])
    recipient = call.parameters.get("recipient")
    channel = str(call.parameters.get("channel") or "email")
    values = call.parameters.get("data") or {}
    if not isinstance(values, Mapping):
        raise ValueError("notify: 'data' must be a mapping")
    call.uow.record(
        ProcessNotificationRequested(
            instance_id=call.instance_id,
            correlation_key=call.correlation_key,
            template=template,
            recipient=None if recipient is None else str(recipient),
            channel=channel,
            values=dict(values),
        )
    )
    return {"template": template, "channel": channel, "at": call.now.isoformat()}


def register_generic_activities(registry: ActivityRegistry) -> None:
    registry.register(
        "set_variable",
        set_variable,
        required=("name", "value"),
        description="Set a process variable",
    )
    registry.register(
        "notify",
        notify,
        required=("template",),
        optional=("recipient", "channel", "data"),
        description="Record a notification request (event process.notification_requested)",
    )
