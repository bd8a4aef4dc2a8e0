"""Process administration and associate task lists over HTTP, and the ``oms process`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services
from oms.domain.access import Role

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parents[1] / "fixtures" / "processes"
DEFINITIONS = Path(__file__).parents[2] / "src" / "oms" / "processes" / "definitions"


def deploy(client: TestClient, name: str) -> dict:  # type: ignore[type-arg]
    response = client.post(
        "/processes/definitions",
        content=(FIXTURES / name).read_bytes(),
        headers={"Content-Type": "application/xml"},
    )
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def test_deploy_list_and_read_definitions(admin: TestClient) -> None:
    first = deploy(admin, "approval_v1.bpmn")
    as_json = admin.post(
        "/processes/definitions",
        json={"bpmn_xml": (FIXTURES / "approval_v2.bpmn").read_text()},
    )
    again = admin.post(
        "/processes/definitions",
        json={"bpmn_xml": (FIXTURES / "approval_v2.bpmn").read_text()},
    )

    assert (first["key"], first["version"], first["created"]) == ("order_flow", 1, True)
    assert (as_json.status_code, as_json.json()["version"]) == (201, 2)
    assert (again.status_code, again.json()["created"], again.json()["version"]) == (200, False, 2)
    listed = admin.get("/processes/definitions").json()
    assert [(d["key"], d["version"]) for d in listed] == [("order_flow", 1), ("order_flow", 2)]
    document = admin.get("/processes/definitions/order_flow/versions/1").json()
    assert document["bpmn_xml"] == (FIXTURES / "approval_v1.bpmn").read_text()
    missing = admin.get("/processes/definitions/order_flow/versions/9")
    assert missing.status_code == 404
    assert missing.json()["type"] == "/problems/process-definition-not-found"
    activities = {a["name"]: a for a in admin.get("/processes/activities").json()}
    assert activities["notify"]["required"] == ["template"]


def test_a_broken_definition_is_a_422_problem_naming_the_element(admin: TestClient) -> None:
    response = admin.post(
        "/processes/definitions",
        content=(FIXTURES / "unknown_activity.bpmn").read_bytes(),
        headers={"Content-Type": "application/xml"},
    )
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["type"] == "/problems/process-definition-invalid"
    assert problem["element_id"] == "NotifyAccepted"
    assert "unknown activity 'send_postcard'" in problem["detail"]
    empty = admin.post("/processes/definitions", json={})
    assert empty.status_code == 422
    assert admin.get("/processes/definitions").json() == []


def test_only_process_writers_deploy(client_for: Callable[..., TestClient]) -> None:
    for role, locations in ((Role.STORE_ASSOCIATE, ["S1"]), (Role.CARE_AGENT, None)):
        response = client_for(role, locations=locations).post(
            "/processes/definitions",
            content=(FIXTURES / "approval_v1.bpmn").read_bytes(),
            headers={"Content-Type": "application/xml"},
        )
        assert response.status_code == 403


def test_associates_work_their_own_locations_tasks_and_the_instance_shows_it(
    admin: TestClient, client_for: Callable[..., TestClient], clock: ControlledClock
) -> None:
    deploy(admin, "pickup_reminder.bpmn")
    for order, location in (("ORD-1", "S1"), ("ORD-2", "S2")):
        started = admin.post(
            "/processes/instances",
            json={
                "process_key": "test_pickup",
                "correlation_key": order,
                "variables": {"location_code": location, "customer_email": "c@x.io"},
            },
        )
        assert started.status_code == 201, started.text
    store_one = client_for(Role.STORE_ASSOCIATE, locations=["S1"])

    tasks = store_one.get("/process-tasks").json()["items"]
    assert [(t["location_code"], t["state"]) for t in tasks] == [("S1", "open")]
    assert store_one.get("/process-tasks", params={"location_code": "S2"}).status_code == 403
    other = admin.get("/process-tasks", params={"location_code": "S2"}).json()["items"][0]
    assert store_one.post(f"/process-tasks/{other['id']}/claim").status_code == 403
    assert store_one.get(f"/process-tasks/{other['id']}").status_code == 403

    task_id = tasks[0]["id"]
    claimed = store_one.post(f"/process-tasks/{task_id}/claim")
    assert (claimed.status_code, claimed.json()["state"]) == (200, "claimed")
    colleague = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    taken = colleague.post(f"/process-tasks/{task_id}/claim")
    assert (taken.status_code, taken.json()["type"]) == (409, "/problems/process-task-not-open")
    incomplete = store_one.post(f"/process-tasks/{task_id}/complete", json={"data": {}})
    assert incomplete.status_code == 422
    assert incomplete.json()["errors"] == [{"pointer": "#/data/pickup_code", "detail": "required"}]

    clock.advance(timedelta(hours=2))
    done = store_one.post(
        f"/process-tasks/{task_id}/complete", json={"data": {"pickup_code": "4711"}}
    )
    assert (done.status_code, done.json()["state"]) == (200, "completed")

    instance_id = done.json()["instance_id"]
    view = store_one.get(f"/processes/instances/{instance_id}").json()
    assert view["status"] == "running"
    assert view["waiting_for_messages"] == ["checked_in"]
    assert [a["element_id"] for a in view["active_elements"]] == ["WaitShipped"]
    assert view["open_tasks"] == []
    assert {t["element_id"]: t["state"] for t in view["timers"]} == {
        "Remind": "cancelled",
        "Expire": "cancelled",
    }
    kinds = [h["kind"] for h in view["history"]]
    assert kinds[:2] == ["started", "element_completed"]
    assert "task_completed" in kinds

    message = admin.post(
        "/processes/messages",
        json={"message_name": "checked_in", "correlation_key": "ORD-1", "payload": {"bay": 4}},
    )
    assert (message.status_code, message.json()["delivered_to"]) == (200, [instance_id])
    again = admin.post(
        "/processes/messages",
        json={"message_name": "checked_in", "correlation_key": "ORD-1", "payload": {}},
    )
    assert (again.status_code, again.json()["type"]) == (
        409,
        "/problems/process-message-not-expected",
    )
    finished = admin.get("/processes/instances", params={"correlation_key": "ORD-1"}).json()
    assert [(i["id"], i["status"]) for i in finished] == [(instance_id, "completed")]


def test_the_default_definitions_deploy_now_that_fulfillment_registers_their_activities(
    admin: TestClient,
) -> None:
    files = sorted(DEFINITIONS.glob("*.bpmn"))
    assert [f.stem for f in files] == sorted(
        ["ship", "pickup", "curbside", "reserve_and_collect", "ship_to_store", "dropship"]
    )
    for file in files:
        response = admin.post(
            "/processes/definitions",
            content=file.read_bytes(),
            headers={"Content-Type": "application/xml"},
        )
        assert response.status_code == 201, (file.name, response.text)
        assert response.json()["key"] == file.stem


def run_cli(*args: str, database: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OMS_DATABASE_URL": f"sqlite:///{database}"}
    environment.pop("OMS_TEST_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-c", "from oms.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_cli_deploys_lists_and_refuses_broken_files_in_one_line(
    tmp_path: Path, services: Services
) -> None:
    database = tmp_path / "cli.db"

    deployed = run_cli("process", "deploy", str(FIXTURES / "approval_v1.bpmn"), database=database)
    assert deployed.returncode == 0, deployed.stderr
    assert "deployed order_flow version 1" in deployed.stdout

    broken = run_cli(
        "process", "deploy", str(FIXTURES / "missing_parameter.bpmn"), database=database
    )
    assert broken.returncode == 1
    assert broken.stderr.count("\n") == 1
    assert broken.stderr.startswith("oms: element 'NotifyAccepted': activity 'notify' needs")

    not_xml = tmp_path / "notes.bpmn"
    not_xml.write_text("this is not BPMN")
    refused = run_cli("process", "deploy", str(not_xml), database=database)
    assert (refused.returncode, refused.stderr.count("\n")) == (1, 1)
    assert "not well-formed XML" in refused.stderr

    absent = run_cli("process", "deploy", str(tmp_path / "absent.bpmn"), database=database)
    assert (absent.returncode, absent.stderr.count("\n")) == (1, 1)

    listed = run_cli("process", "list", database=database)
    assert listed.returncode == 0, listed.stderr
    assert "order_flow" in listed.stdout
    assert "Order flow" in listed.stdout


def test_release_a_task_and_cancel_an_instance_over_http(
    admin: TestClient, client_for: Callable[..., TestClient]
) -> None:
    deploy(admin, "pickup_reminder.bpmn")
    started = admin.post(
        "/processes/instances",
        json={
            "process_key": "test_pickup",
            "correlation_key": "ORD-3",
            "variables": {"location_code": "S1", "customer_email": "c@x.io"},
        },
    ).json()
    store = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    task_id = started["open_tasks"][0]["id"]
    assert store.post(f"/process-tasks/{task_id}/claim").json()["state"] == "claimed"
    released = store.post(f"/process-tasks/{task_id}/release")
    assert (released.status_code, released.json()["state"]) == (200, "open")

    assert (
        store.post(f"/processes/instances/{started['id']}/cancel", json={"reason": "x"}).status_code
        == 403
    )
    cancelled = admin.post(
        f"/processes/instances/{started['id']}/cancel", json={"reason": "order cancelled"}
    )
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["status"], body["open_tasks"], body["active_elements"]) == ("cancelled", [], [])
    again = admin.post(f"/processes/instances/{started['id']}/cancel", json={"reason": "again"})
    assert (again.status_code, again.json()["type"]) == (
        409,
        "/problems/process-instance-not-running",
    )
    unknown = admin.post("/processes/instances/nope/cancel", json={"reason": "x"})
    assert unknown.status_code == 404


def test_associates_see_only_instances_with_work_at_their_locations(
    admin: TestClient, client_for: Callable[..., TestClient]
) -> None:
    deploy(admin, "pickup_reminder.bpmn")
    ids = {}
    for order, location in (("ORD-1", "S1"), ("ORD-2", "S2")):
        ids[order] = admin.post(
            "/processes/instances",
            json={
                "process_key": "test_pickup",
                "correlation_key": order,
                "variables": {"location_code": location, "customer_email": "c@x.io"},
            },
        ).json()["id"]
    store = client_for(Role.STORE_ASSOCIATE, locations=["S1"])

    assert store.get(f"/processes/instances/{ids['ORD-1']}").status_code == 200
    assert store.get(f"/processes/instances/{ids['ORD-2']}").status_code == 403
    listed = store.get("/processes/instances", params={"correlation_key": "ORD-2"})
    assert (listed.status_code, listed.json()) == (200, [])
    care = client_for(Role.CARE_AGENT)
    assert care.get(f"/processes/instances/{ids['ORD-2']}").status_code == 200
    assert care.get("/process-tasks").json()["items"] == []
