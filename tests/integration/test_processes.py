"""The process engine against the database: deploy, start, tasks, timers, messages, restarts."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from oms.adapters.clock import ControlledClock
from oms.adapters.db.engine import make_engine
from oms.adapters.db.tables import process_definitions, process_instances
from oms.bootstrap import Services, build_services
from oms.config import Settings
from oms.domain.access import SYSTEM, Principal, Role
from oms.domain.errors import Conflict, Forbidden, Invalid
from oms.domain.processes import (
    ActivityFailed,
    InstanceStatus,
    MessageNotExpected,
    ProcessChangedConcurrently,
    ProcessDefinitionInvalid,
    ProcessInstanceNotRunning,
    ProcessNotificationRequested,
    ProcessTaskDataInvalid,
    ProcessTaskNotOpen,
    TaskState,
    TimerState,
)
from oms.processes.activities import ActivityCall, ActivityRegistry, register_generic_activities
from oms.services.processes import ProcessService, TimerRun

FIXTURES = Path(__file__).parents[1] / "fixtures" / "processes"


def bpmn(name: str) -> str:
    return (FIXTURES / name).read_text()


def associate(*locations: str) -> Principal:
    return Principal(
        key_id=f"k-{'-'.join(locations)}",
        name="associate",
        role=Role.STORE_ASSOCIATE,
        location_codes=frozenset(locations),
    )


CARE = Principal(key_id="care", name="care", role=Role.CARE_AGENT)


def notifications(services: Services) -> list[str]:
    events = services.events.read(types=["process.notification_requested"], limit=1000)
    return [event.data["template"] for event in events]


def start_pickup(services: Services, order_id: str = "ORD-1", location: str = "S1") -> str:
    instance = services.processes.start(
        "test_pickup",
        correlation_key=order_id,
        variables={"order_id": order_id, "location_code": location, "customer_email": "c@x.io"},
    )
    return instance.id


# --- deploying --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_deploying_creates_versions_and_skips_identical_content(services: Services) -> None:
    first = services.processes.deploy(bpmn("approval_v1.bpmn"), deployed_by="ops")
    again = services.processes.deploy(bpmn("approval_v1.bpmn"), deployed_by="ops")
    second = services.processes.deploy(bpmn("approval_v2.bpmn"), deployed_by="ops")

    assert (first.created, first.definition.key, first.definition.version) == (
        True,
        "order_flow",
        1,
    )
    assert (again.created, again.definition.id) == (False, first.definition.id)
    assert (second.created, second.definition.version) == (True, 2)
    listed = services.processes.definitions("order_flow")
    assert [(d.version, d.name) for d in listed] == [
        (1, "Order flow"),
        (2, "Order flow, with approval of large orders"),
    ]
    assert services.processes.definition("order_flow").version == 2
    deployed = services.events.read(types=["process.definition_deployed"])
    assert [e.subject for e in deployed] == [
        "process-definitions/order_flow/1",
        "process-definitions/order_flow/2",
    ]


@pytest.mark.parametrize(
    ("document", "element", "words"),
    [
        ("unknown_activity.bpmn", "NotifyAccepted", "unknown activity 'send_postcard'"),
        ("missing_parameter.bpmn", "NotifyAccepted", "needs the parameter(s) template"),
    ],
)
def test_deploy_refuses_unknown_activities_and_missing_parameters(
    services: Services, document: str, element: str, words: str
) -> None:
    with pytest.raises(ProcessDefinitionInvalid) as refused:
        services.processes.deploy(bpmn(document))

    assert refused.value.extensions["element_id"] == element
    assert f"element '{element}'" in refused.value.detail
    assert words in refused.value.detail
    with services.uow(read_only=True) as uow:
        assert (
            uow.connection.execute(select(func.count()).select_from(process_definitions)).scalar()
            == 0
        )


@pytest.mark.parametrize(
    ("change", "element", "words"),
    [
        (
            ("decimal(order_total) &gt; 500", "__import__('os').system('true')"),
            "LargeOrder",
            "calls something other than",
        ),
        (("decimal(order_total) &gt; 500", "order_total &gt;"), "LargeOrder", "not a valid"),
        (
            (
                '<bpmn:userTask id="Pack" name="Pick and pack" />',
                '<bpmn:scriptTask id="Pack" name="Pick and pack"><bpmn:script>x = 1</bpmn:script>'
                "</bpmn:scriptTask>",
            ),
            "Pack",
            "script tasks are not allowed",
        ),
        (('targetRef="EndEvent"', 'targetRef="Nowhere"'), None, "Nowhere"),
        (('isExecutable="true"', 'isExecutable="false"'), None, "exactly one executable process"),
        (("</bpmn:definitions>", ""), None, "not well-formed XML"),
        (('id="EndEvent"', 'id="End"'), "End", "reserved"),
    ],
)
def test_deploy_refuses_broken_definitions_with_a_clear_error(
    services: Services, change: tuple[str, str], element: str | None, words: str
) -> None:
    document = bpmn("approval_v2.bpmn")
    assert change[0] in document
    with pytest.raises(ProcessDefinitionInvalid) as refused:
        services.processes.deploy(document.replace(*change))

    assert words in refused.value.detail
    if element is not None:
        assert refused.value.extensions["element_id"] == element


def test_a_timer_with_a_bad_duration_is_refused(services: Services) -> None:
    document = bpmn("pickup_reminder.bpmn").replace("P2D", "P2X")
    with pytest.raises(ProcessDefinitionInvalid) as refused:
        services.processes.deploy(document)
    assert refused.value.extensions["element_id"] == "Remind"


def test_activities_registered_by_another_area_are_called_with_their_parameters(
    services: Services,
) -> None:
    calls: list[dict[str, Any]] = []

    def reserve(call: ActivityCall) -> dict[str, Any]:
        calls.append({"parameters": call.parameters, "key": call.correlation_key})
        return {"reservation": f"R-{call.parameters['order_id']}"}

    services.processes.activities.register("reserve", reserve, required=("order_id",))
    document = bpmn("approval_v1.bpmn").replace(
        """<spiffworkflow:serviceTaskOperator id="notify">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="template" type="str" value="'order_accepted'" />""",
        """<spiffworkflow:serviceTaskOperator id="reserve" resultVariable="held">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="order_id" type="str" value="order_id" />""",
    )
    services.processes.deploy(document)

    instance = services.processes.start(
        "order_flow", correlation_key="ORD-7", variables={"order_id": "ORD-7"}
    )

    assert calls == [{"parameters": {"order_id": "ORD-7"}, "key": "ORD-7"}]
    view = services.processes.instance(instance.id)
    assert view.variables["held"] == {"reservation": "R-ORD-7"}


# --- acceptance 4: a changed process changes new instances only -------------------------------


@pytest.mark.postgres
def test_a_changed_process_changes_the_behaviour_of_new_instances_only(
    services: Services,
) -> None:
    services.processes.deploy(bpmn("approval_v1.bpmn"))
    before = services.processes.start(
        "order_flow", correlation_key="ORD-OLD", variables={"order_total": "900.00"}
    )

    services.processes.deploy(bpmn("approval_v2.bpmn"))
    large = services.processes.start(
        "order_flow", correlation_key="ORD-LARGE", variables={"order_total": "900.00"}
    )
    small = services.processes.start(
        "order_flow", correlation_key="ORD-SMALL", variables={"order_total": "120.00"}
    )

    def open_tasks(instance_id: str) -> list[str]:
        view = services.processes.instance(instance_id)
        return [t.element_id for t in view.tasks if t.state is TaskState.OPEN]

    assert (before.version, large.version, small.version) == (1, 2, 2)
    assert open_tasks(before.id) == ["Pack"]
    assert open_tasks(large.id) == ["Approve"]
    assert open_tasks(small.id) == ["Pack"]

    approval = next(t for t in services.processes.instance(large.id).tasks)
    assert approval.candidate_role == "care_agent"
    with pytest.raises(ProcessTaskDataInvalid):
        services.processes.complete(approval.id, CARE, {})
    services.processes.complete(approval.id, CARE, {"approved": True})
    assert open_tasks(large.id) == ["Pack"]

    pack_old = next(t for t in services.processes.instance(before.id).tasks)
    services.processes.complete(pack_old.id, SYSTEM, {})
    finished = services.processes.instance(before.id)
    assert finished.instance.status is InstanceStatus.COMPLETED
    assert finished.instance.version == 1
    assert "LargeOrder" not in {h.element_id for h in finished.history}


# --- timers (acceptance 2's idea) --------------------------------------------------------------


@pytest.mark.postgres
def test_uncollected_pickup_is_reminded_after_two_days_and_cancelled_after_seven(
    services: Services, clock: ControlledClock
) -> None:
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))
    instance_id = start_pickup(services)
    view = services.processes.instance(instance_id)
    assert sorted((t.element_id, t.due_at - clock.now()) for t in view.timers) == [
        ("Expire", timedelta(days=7)),
        ("Remind", timedelta(days=2)),
    ]
    assert notifications(services) == ["ready_for_pickup"]

    clock.advance(timedelta(days=1, hours=23))
    assert services.processes.run_due_timers().fired == 0
    clock.advance(timedelta(hours=1))
    assert services.processes.run_due_timers().fired == 1
    assert notifications(services) == ["ready_for_pickup", "pickup_reminder"]
    view = services.processes.instance(instance_id)
    assert [t.state for t in view.tasks] == [TaskState.OPEN]
    assert services.processes.run_due_timers().fired == 0

    clock.advance(timedelta(days=5))
    assert services.processes.run_due_timers().fired == 1

    view = services.processes.instance(instance_id)
    assert view.instance.status is InstanceStatus.COMPLETED
    assert view.variables["outcome"] == "cancelled"
    assert [t.state for t in view.tasks] == [TaskState.CANCELLED]
    assert {t.element_id: t.state for t in view.timers} == {
        "Remind": TimerState.FIRED,
        "Expire": TimerState.FIRED,
    }
    kinds = [h.kind for h in view.history]
    assert kinds.count("timer_fired") == 2
    assert kinds[-1] == "completed"
    assert notifications(services) == ["ready_for_pickup", "pickup_reminder"]


def test_collecting_in_time_cancels_the_timers_and_a_message_completes_it(
    services: Services, clock: ControlledClock
) -> None:
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))
    instance_id = start_pickup(services)
    task = services.processes.tasks(associate("S1"))[0]

    with pytest.raises(MessageNotExpected):
        services.processes.correlate("checked_in", "ORD-1", {"bay": 2})
    clock.advance(timedelta(hours=5))
    services.processes.complete(task.id, associate("S1"), {"pickup_code": "4711"})
    with pytest.raises(MessageNotExpected):
        services.processes.correlate("checked_in", "ORD-OTHER", {"bay": 2})
    delivered = services.processes.correlate("checked_in", "ORD-1", {"bay": 2})

    assert delivered == [instance_id]
    view = services.processes.instance(instance_id)
    assert view.instance.status is InstanceStatus.COMPLETED
    assert view.variables["check_in"] == {"bay": 2}
    assert view.variables["pickup_code"] == "4711"
    assert {t.state for t in view.timers} == {TimerState.CANCELLED}
    clock.advance(timedelta(days=10))
    assert services.processes.run_due_timers().fired == 0
    assert notifications(services) == ["ready_for_pickup"]


def test_a_failing_activity_marks_its_timer_failed_without_firing_again(
    services: Services, clock: ControlledClock
) -> None:
    def broken(call: ActivityCall) -> None:
        raise RuntimeError("the mail server is down")

    services.processes.activities.register("page_manager", broken, required=("template",))
    services.processes.deploy(
        bpmn("pickup_reminder.bpmn").replace(
            """<spiffworkflow:serviceTaskOperator id="notify">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="template" type="str" value="'pickup_reminder'" />""",
            """<spiffworkflow:serviceTaskOperator id="page_manager">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="template" type="str" value="'pickup_reminder'" />""",
        )
    )
    instance_id = start_pickup(services)
    clock.advance(timedelta(days=3))

    run = services.processes.run_due_timers()

    assert (run.fired, run.failed) == (0, 1)
    timers = {t.element_id: t for t in services.processes.instance(instance_id).timers}
    assert timers["Remind"].state is TimerState.FAILED
    assert "mail server is down" in (timers["Remind"].error or "")
    assert services.processes.run_due_timers().failed == 0


@pytest.mark.postgres
def test_a_failing_timer_in_a_batch_is_undone_alone_and_the_others_fire(
    services: Services, clock: ControlledClock
) -> None:
    def page(call: ActivityCall) -> dict[str, str]:
        call.uow.record(
            ProcessNotificationRequested(
                instance_id=call.instance_id,
                correlation_key=call.correlation_key,
                template="paged",
                recipient=None,
                channel="pager",
                values={},
            )
        )
        if call.correlation_key == "ORD-BAD":
            raise RuntimeError("the pager is down")
        return {"paged": call.correlation_key}

    services.processes.activities.register("page_manager", page, required=("template",))
    services.processes.deploy(
        bpmn("pickup_reminder.bpmn").replace(
            """<spiffworkflow:serviceTaskOperator id="notify">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="template" type="str" value="'pickup_reminder'" />""",
            """<spiffworkflow:serviceTaskOperator id="page_manager">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="template" type="str" value="'pickup_reminder'" />""",
        )
    )
    ids = {key: start_pickup(services, key) for key in ("ORD-A", "ORD-BAD", "ORD-C")}
    clock.advance(timedelta(days=3))

    run = services.processes.run_due_timers(batch=10)

    assert (run.fired, run.failed) == (2, 1)
    # the failing one's writes and events were undone with its savepoint, the others committed
    events = services.events.read(types=["process.notification_requested"], limit=100)
    assert sorted(e.data["instance_id"] for e in events if e.data["template"] == "paged") == (
        sorted([ids["ORD-A"], ids["ORD-C"]])
    )
    bad = services.processes.instance(ids["ORD-BAD"])
    assert bad.instance.revision == 1
    [remind] = [t for t in bad.timers if t.element_id == "Remind"]
    assert remind.state is TimerState.FAILED
    assert "pager is down" in (remind.error or "")
    for key in ("ORD-A", "ORD-C"):
        view = services.processes.instance(ids[key])
        assert {t.element_id: t.state for t in view.timers}["Remind"] is TimerState.FIRED
    assert services.processes.run_due_timers() == TimerRun(fired=0, failed=0)


# --- tasks and location scope -----------------------------------------------------------------


def test_associates_see_and_act_only_on_their_own_locations_tasks(services: Services) -> None:
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))
    start_pickup(services, "ORD-1", "S1")
    start_pickup(services, "ORD-2", "S2")
    s1, s2 = associate("S1"), associate("S2")

    mine = services.processes.tasks(s1)
    assert [(t.location_code, t.name) for t in mine] == [("S1", "Hand over to the customer")]
    assert sorted(t.location_code or "" for t in services.processes.tasks(SYSTEM)) == ["S1", "S2"]
    assert services.processes.tasks(CARE) == []
    with pytest.raises(Forbidden):
        services.processes.tasks(s1, location_code="S2")
    with pytest.raises(Forbidden):
        services.processes.claim(mine[0].id, s2)
    with pytest.raises(Forbidden):
        services.processes.claim(mine[0].id, CARE)

    claimed = services.processes.claim(mine[0].id, s1)
    assert (claimed.state, claimed.claimed_by) == (TaskState.CLAIMED, s1.actor)
    assert services.processes.claim(mine[0].id, s1).state is TaskState.CLAIMED
    colleague = Principal(
        key_id="other", name="b", role=Role.STORE_ASSOCIATE, location_codes=frozenset({"S1"})
    )
    with pytest.raises(ProcessTaskNotOpen):
        services.processes.claim(mine[0].id, colleague)
    with pytest.raises(ProcessTaskNotOpen):
        services.processes.complete(mine[0].id, colleague, {"pickup_code": "1"})
    done = services.processes.complete(mine[0].id, s1, {"pickup_code": "1"})
    assert done.state is TaskState.COMPLETED
    with pytest.raises(ProcessTaskNotOpen):
        services.processes.complete(mine[0].id, s1, {"pickup_code": "1"})
    assert services.processes.tasks(s1) == []


# --- the caller's unit of work ----------------------------------------------------------------


def test_starting_inside_another_areas_unit_of_work_commits_or_rolls_back_with_it(
    services: Services,
) -> None:
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))
    variables = {"location_code": "S1", "customer_email": "c@x.io"}

    with services.uow() as uow:
        services.processes.start_in(
            uow, "test_pickup", correlation_key="ORD-9", variables=variables
        )
        uow.rollback()
    assert services.processes.instances_for("ORD-9") == []
    assert notifications(services) == []
    assert services.processes.tasks(SYSTEM) == []

    with services.uow() as uow:
        started = services.processes.start_in(
            uow, "test_pickup", correlation_key="ORD-9", variables=variables
        )
        uow.commit()
    assert [i.id for i in services.processes.instances_for("ORD-9")] == [started.id]
    assert notifications(services) == ["ready_for_pickup"]


# --- restarts and several workers (acceptance 3's idea) ---------------------------------------


@pytest.mark.postgres
def test_instances_continue_after_a_restart_in_a_fresh_services_container(
    services: Services, settings: Settings, clock: ControlledClock
) -> None:
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))
    instance_id = start_pickup(services)
    services.close()

    engine = make_engine(settings.resolved_database_url())
    restarted = build_services(settings, clock=clock, engine=engine)
    try:
        clock.advance(timedelta(days=2))
        assert restarted.processes.run_due_timers().fired == 1
        task = restarted.processes.tasks(associate("S1"))[0]
        restarted.processes.complete(task.id, associate("S1"), {"pickup_code": "9"})
        restarted.processes.correlate("checked_in", "ORD-1", {})
        view = restarted.processes.instance(instance_id)
    finally:
        restarted.close()
    assert view.instance.status is InstanceStatus.COMPLETED
    assert notifications(restarted) == ["ready_for_pickup", "pickup_reminder"]


@pytest.mark.postgres
def test_several_workers_never_fire_the_same_timer_twice(
    services: Services, settings: Settings, clock: ControlledClock
) -> None:
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))
    for number in range(12):
        start_pickup(services, f"ORD-{number}")
    clock.advance(timedelta(days=2, minutes=1))

    workers = [
        build_services(settings, clock=clock, engine=make_engine(settings.resolved_database_url()))
        for _ in range(3)
    ]
    fired: list[int] = []
    errors: list[BaseException] = []

    def work(worker: Services) -> None:
        try:
            fired.append(worker.processes.run_due_timers().fired)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker in workers:
        worker.close()

    assert errors == []
    assert sum(fired) == 12
    assert notifications(services).count("pickup_reminder") == 12
    with services.uow(read_only=True) as uow:
        revisions = uow.connection.execute(select(process_instances.c.revision)).scalars().all()
    assert sorted(set(revisions)) == [2]


# --- the default definitions ------------------------------------------------------------------

DEFAULTS = Path(__file__).parents[2] / "src" / "oms" / "processes" / "definitions"


def register_recording_fulfillment_activities(services: Services) -> list[tuple[str, str]]:
    """Stand-ins for the activities fulfillment registers: they replace them and record calls."""
    calls: list[tuple[str, str]] = []

    def recorder(name: str) -> Any:
        def handler(call: ActivityCall) -> dict[str, Any]:
            calls.append((name, call.element_id))
            return {"done": name}

        return handler

    order = ("order_id",)
    both = ("order_id", "fulfillment_id")
    registry = services.processes.activities

    def register(name: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
        registry.register(name, recorder(name), required=required, optional=optional, replace=True)

    register("source", order)
    register("release", both)
    register("capture_payment", both)
    register("create_transfer", both)
    register("cancel_remainder", both, ("reason",))
    register("remind_pickup", both)
    return calls


def test_the_default_definitions_are_refused_until_their_activities_are_registered(
    services: Services, clock: ControlledClock
) -> None:
    bare = ActivityRegistry()
    register_generic_activities(bare)
    without = ProcessService(services.uow, clock=clock, ids=services.ids, activities=bare)
    for file in sorted(DEFAULTS.glob("*.bpmn")):
        with pytest.raises(ProcessDefinitionInvalid, match="unknown activity"):
            without.deploy(file.read_text())

    register_recording_fulfillment_activities(services)
    deployed = [services.processes.deploy(f.read_text()) for f in sorted(DEFAULTS.glob("*.bpmn"))]

    assert sorted(d.definition.key for d in deployed) == [
        "curbside",
        "dropship",
        "pickup",
        "reserve_and_collect",
        "ship",
        "ship_to_store",
    ]


@pytest.mark.postgres
def test_the_default_pickup_and_ship_processes_run_end_to_end(
    services: Services, clock: ControlledClock
) -> None:
    calls = register_recording_fulfillment_activities(services)
    for name in ("pickup", "ship"):
        services.processes.deploy((DEFAULTS / f"{name}.bpmn").read_text())
    variables = {
        "order_id": "ORD-5",
        "fulfillment_id": "FUL-5",
        "location_code": "S1",
        "customer_email": "c@x.io",
    }
    pickup = services.processes.start("pickup", correlation_key="ORD-5", variables=variables)
    shipped = services.processes.start(
        "ship", correlation_key="ORD-6", variables={**variables, "order_id": "ORD-6"}
    )
    s1 = associate("S1")

    pick = services.processes.tasks(s1)[0]
    services.processes.complete(pick.id, s1, {"picked_quantity": 2})
    clock.advance(timedelta(days=2, minutes=1))
    assert services.processes.run_due_timers().fired == 1
    hand_over = services.processes.tasks(s1)[0]
    assert hand_over.element_id == "HandOver"
    services.processes.complete(hand_over.id, s1, {"pickup_code": "1234"})
    services.processes.correlate("shipped", "ORD-6", {"tracking": "1Z999"})
    services.processes.correlate("delivered", "ORD-6", {})

    assert services.processes.instance(pickup.id).instance.status is InstanceStatus.COMPLETED
    view = services.processes.instance(shipped.id)
    assert view.instance.status is InstanceStatus.COMPLETED
    assert view.variables["shipment"] == {"tracking": "1Z999"}
    assert [name for name, _ in calls] == [
        "source",
        "release",
        "source",
        "release",
        "remind_pickup",
        "capture_payment",
        "capture_payment",
    ]
    assert notifications(services) == ["ready_for_pickup", "order_shipped"]


class WorkerKilled(BaseException):
    """Stands for the worker process dying in the middle of a step (not an ordinary error)."""


@pytest.mark.postgres
def test_a_worker_killed_mid_step_leaves_nothing_half_done_and_the_next_run_fires_once(
    services: Services, settings: Settings, clock: ControlledClock
) -> None:
    alive = {"worker": False}

    def remind(call: ActivityCall) -> None:
        call.uow.record(
            ProcessNotificationRequested(
                instance_id=call.instance_id,
                correlation_key=call.correlation_key,
                template="pickup_reminder",
                recipient=None,
                channel="email",
                values={},
            )
        )
        if not alive["worker"]:
            raise WorkerKilled

    services.processes.activities.register("remind", remind, required=("template",))
    services.processes.deploy(
        bpmn("pickup_reminder.bpmn").replace(
            """<spiffworkflow:serviceTaskOperator id="notify">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="template" type="str" value="'pickup_reminder'" />""",
            """<spiffworkflow:serviceTaskOperator id="remind">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="template" type="str" value="'pickup_reminder'" />""",
        )
    )
    instance_id = start_pickup(services)
    clock.advance(timedelta(days=2))

    with pytest.raises(WorkerKilled):
        services.processes.run_due_timers()
    services.close()

    assert notifications(services) == ["ready_for_pickup"]
    restarted = build_services(
        settings, clock=clock, engine=make_engine(settings.resolved_database_url())
    )
    restarted.processes.activities.register("remind", remind, required=("template",))
    alive["worker"] = True
    try:
        assert restarted.processes.run_due_timers().fired == 1
        assert restarted.processes.run_due_timers().fired == 0
        view = restarted.processes.instance(instance_id)
    finally:
        restarted.close()
    assert notifications(restarted) == ["ready_for_pickup", "pickup_reminder"]
    assert [h.kind for h in view.history].count("timer_fired") == 1


def test_a_refusal_of_an_activity_reaches_the_caller_and_nothing_is_kept(
    services: Services,
) -> None:
    class OutOfStock(Conflict):
        slug = "out-of-stock-test"

    def source(call: ActivityCall) -> None:
        raise OutOfStock(f"no stock for {call.parameters['order_id']}")

    services.processes.activities.register("source", source, required=("order_id",), replace=True)
    services.processes.deploy(
        bpmn("approval_v1.bpmn").replace(
            """<spiffworkflow:serviceTaskOperator id="notify">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="template" type="str" value="'order_accepted'" />""",
            """<spiffworkflow:serviceTaskOperator id="source">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="order_id" type="str" value="order_id" />""",
        )
    )

    with pytest.raises(OutOfStock, match="no stock for ORD-3"):
        services.processes.start(
            "order_flow", correlation_key="ORD-3", variables={"order_id": "ORD-3"}
        )

    assert services.processes.instances_for("ORD-3") == []
    assert services.events.read(types=["process.instance_started"]) == []


def test_running_instances_load_while_an_activity_is_missing_and_its_call_says_so(
    services: Services, settings: Settings, clock: ControlledClock
) -> None:
    services.processes.activities.register("remind", lambda call: None, required=("template",))
    services.processes.deploy(
        bpmn("pickup_reminder.bpmn").replace(
            """<spiffworkflow:serviceTaskOperator id="notify">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="template" type="str" value="'pickup_reminder'" />""",
            """<spiffworkflow:serviceTaskOperator id="remind">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="template" type="str" value="'pickup_reminder'" />""",
        )
    )
    instance_id = start_pickup(services)
    forgetful = build_services(
        settings, clock=clock, engine=make_engine(settings.resolved_database_url())
    )
    try:
        assert forgetful.processes.instance(instance_id).instance.status is InstanceStatus.RUNNING
        clock.advance(timedelta(days=2))
        assert forgetful.processes.run_due_timers().failed == 1
        view = forgetful.processes.instance(instance_id)
    finally:
        forgetful.close()
    failed = next(t for t in view.timers if t.element_id == "Remind")
    assert failed.state is TimerState.FAILED
    assert "activity 'remind' is not registered" in (failed.error or "")


@pytest.mark.postgres
def test_cancelling_stops_an_instance_where_it_stands(
    services: Services, clock: ControlledClock
) -> None:
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))
    instance_id = start_pickup(services)
    task = services.processes.tasks(SYSTEM)[0]

    with pytest.raises(Invalid):
        services.processes.cancel(instance_id, reason=" ")
    services.processes.cancel(instance_id, reason="order cancelled by the customer")

    view = services.processes.instance(instance_id)
    assert view.instance.status is InstanceStatus.CANCELLED
    assert [t.state for t in view.tasks] == [TaskState.CANCELLED]
    assert {t.state for t in view.timers} == {TimerState.CANCELLED}
    assert view.instance.active_elements == []
    assert "cancelled" in [h.kind for h in view.history]
    clock.advance(timedelta(days=8))
    assert services.processes.run_due_timers().fired == 0
    assert notifications(services) == ["ready_for_pickup"]
    with pytest.raises(ProcessTaskNotOpen):
        services.processes.complete(task.id, SYSTEM, {"pickup_code": "1"})
    with pytest.raises(ProcessInstanceNotRunning):
        services.processes.cancel(instance_id, reason="again")
    with pytest.raises(MessageNotExpected):
        services.processes.correlate("checked_in", "ORD-1", {})
    cancelled = services.events.read(types=["process.instance_cancelled"])
    assert [e.data["reason"] for e in cancelled] == ["order cancelled by the customer"]


def test_a_claimed_task_can_be_given_back(services: Services) -> None:
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))
    start_pickup(services)
    first, second = (
        associate("S1"),
        Principal(
            key_id="second", name="b", role=Role.STORE_ASSOCIATE, location_codes=frozenset({"S1"})
        ),
    )
    task = services.processes.claim(services.processes.tasks(first)[0].id, first)

    with pytest.raises(ProcessTaskNotOpen):
        services.processes.release(task.id, second)
    released = services.processes.release(task.id, first)
    assert (released.state, released.claimed_by) == (TaskState.OPEN, None)
    assert services.processes.claim(task.id, second).claimed_by == second.actor


@pytest.mark.postgres
def test_an_early_message_is_kept_and_delivered_once_when_the_instance_waits_for_it(
    services: Services,
) -> None:
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))
    instance_id = start_pickup(services, "ORD-1")

    kept = services.processes.correlate("checked_in", "ORD-1", {"bay": 7}, buffer=True)
    assert kept == []
    assert services.processes.instance(instance_id).instance.status is InstanceStatus.RUNNING

    task = services.processes.tasks(SYSTEM)[0]
    services.processes.complete(task.id, SYSTEM, {"pickup_code": "1"})

    view = services.processes.instance(instance_id)
    assert view.instance.status is InstanceStatus.COMPLETED
    assert view.variables["check_in"] == {"bay": 7}
    received = [h for h in view.history if h.kind == "message_received"]
    assert [h.detail["message"] for h in received] == ["checked_in"]

    second = start_pickup(services, "ORD-1")
    other = services.processes.tasks(SYSTEM)[0]
    services.processes.complete(other.id, SYSTEM, {"pickup_code": "2"})
    assert services.processes.instance(second).instance.waiting_messages == ["checked_in"]


def test_a_missing_process_variable_is_named_and_nothing_is_started(services: Services) -> None:
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))

    with pytest.raises(ActivityFailed) as failed:
        services.processes.start(
            "test_pickup", correlation_key="ORD-8", variables={"location_code": "S1"}
        )

    assert failed.value.extensions["element_id"] == "NotifyReady"
    assert "no variable 'customer_email'" in failed.value.detail
    assert services.processes.instances_for("ORD-8") == []


@pytest.mark.postgres
def test_two_associates_completing_the_same_task_at_once_complete_it_once(
    services: Services, settings: Settings, clock: ControlledClock
) -> None:
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))
    instance_id = start_pickup(services)
    task = services.processes.tasks(SYSTEM)[0]
    devices = [
        build_services(settings, clock=clock, engine=make_engine(settings.resolved_database_url()))
        for _ in range(4)
    ]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(devices))

    def complete(device: Services, number: int) -> None:
        person = Principal(
            key_id=f"p{number}",
            name="p",
            role=Role.STORE_ASSOCIATE,
            location_codes=frozenset({"S1"}),
        )
        barrier.wait()
        try:
            device.processes.complete(task.id, person, {"pickup_code": str(number)})
            outcomes.append("completed")
        except (ProcessTaskNotOpen, ProcessChangedConcurrently) as refused:
            outcomes.append(type(refused).__name__)

    threads = [threading.Thread(target=complete, args=(d, n)) for n, d in enumerate(devices)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for device in devices:
        device.close()

    assert sorted(outcomes).count("completed") == 1
    assert len(outcomes) == 4
    view = services.processes.instance(instance_id)
    assert [h.kind for h in view.history].count("task_completed") == 1
    assert view.instance.waiting_messages == ["checked_in"]


@pytest.mark.postgres
def test_timers_left_behind_by_a_completed_task_are_closed_fired_or_cancelled_as_due(
    services: Services, clock: ControlledClock
) -> None:
    """Once nothing waits on a timer any more, its pending rows are closed in one statement:
    one due by now counts as fired along with the other work (at now), the others cancelled."""
    services.processes.deploy(bpmn("pickup_reminder.bpmn"))
    instance_id = start_pickup(services)
    clock.advance(timedelta(days=2, minutes=1))  # Remind is due; no worker has run it
    task = services.processes.tasks(SYSTEM)[0]
    services.processes.complete(task.id, SYSTEM, {"pickup_code": "1"})
    services.processes.correlate("checked_in", "ORD-1", {"bay": 1})

    view = services.processes.instance(instance_id)
    assert view.instance.status is InstanceStatus.COMPLETED
    closed = {t.element_id: (t.state, t.fired_at) for t in view.timers}
    assert closed == {
        "Remind": (TimerState.FIRED, clock.now()),
        "Expire": (TimerState.CANCELLED, None),
    }
    timer_history = [(h.kind, h.element_id) for h in view.history if h.kind.startswith("timer_")][
        -2:
    ]
    assert timer_history == [("timer_fired", "Remind"), ("timer_cancelled", "Expire")]
    clock.advance(timedelta(days=10))
    assert services.processes.run_due_timers().fired == 0


WAIT_FOR_PING = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="Definitions_ping" targetNamespace="http://oms.example/processes">
  <bpmn:message id="Message_ping" name="ping" />
  <bpmn:process id="wait_for_ping" name="Wait for a ping" isExecutable="true">
    <bpmn:startEvent id="Begin"><bpmn:outgoing>F1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="WaitPing" name="Ping">
      <bpmn:incoming>F1</bpmn:incoming>
      <bpmn:outgoing>F2</bpmn:outgoing>
      <bpmn:messageEventDefinition id="WaitPing_message" messageRef="Message_ping">
        <bpmn:extensionElements>
          <spiffworkflow:messageVariable>ping</spiffworkflow:messageVariable>
        </bpmn:extensionElements>
      </bpmn:messageEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="Done"><bpmn:incoming>F2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="Begin" targetRef="WaitPing" />
    <bpmn:sequenceFlow id="F2" sourceRef="WaitPing" targetRef="Done" />
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.mark.postgres
def test_a_message_kept_for_a_new_key_in_the_same_unit_of_work_reaches_its_instance(
    services: Services,
) -> None:
    """A key made in this unit of work (a new order's id) can only have messages this unit of
    work kept: those are still delivered at the start; for another new key nothing is looked
    up, and the instance waits."""
    services.processes.deploy(WAIT_FOR_PING)
    with services.uow() as uow:
        assert not uow.processes.kept_here("ORD-NEW")
        services.processes.correlate_in(uow, "ping", "ORD-NEW", {"n": 3}, buffer=True, instances=[])
        assert uow.processes.kept_here("ORD-NEW")
        assert not uow.processes.kept_here("ORD-OTHER")
        kept = services.processes.start_in(
            uow, "wait_for_ping", correlation_key="ORD-NEW", new_correlation_key=True
        )
        fresh = services.processes.start_in(
            uow, "wait_for_ping", correlation_key="ORD-OTHER", new_correlation_key=True
        )
        uow.commit()
    view = services.processes.instance(kept.id)
    assert view.instance.status is InstanceStatus.COMPLETED
    assert view.variables["ping"] == {"n": 3}
    other = services.processes.instance(fresh.id).instance
    assert (other.status, other.waiting_messages) == (InstanceStatus.RUNNING, ["ping"])
