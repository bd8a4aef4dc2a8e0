"""Sourcing through HTTP and the CLI: profiles, versions, rules, simulations, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from oms.api.routers.sourcing import LocationIn, OrderIn
from oms.bootstrap import Services
from oms.config import Settings
from oms.domain.access import Role

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"

LOCATIONS = [
    {
        "code": "DC-EAST",
        "type": "dc",
        "capabilities": ["ship"],
        "latitude": 40.7,
        "longitude": -74.0,
        "atp": {"LAMP": 10},
        "handling_cost": "1.10",
    },
    {
        "code": "STORE-1",
        "type": "store",
        "capabilities": ["ship", "pickup"],
        "latitude": 40.1,
        "longitude": -75.1,
        "atp": {"LAMP": 10},
        "handling_cost": "0.50",
    },
]
ORDERS = [
    {
        "order_id": "O1",
        "placed_at": "2026-01-05T09:00:00Z",
        "promise_on": "2026-01-08",
        "lines": [
            {
                "line_id": "1",
                "sku": "LAMP",
                "quantity": 1,
                "delivery_method": "ship",
                "latitude": 40.0,
                "longitude": -75.0,
            }
        ],
    }
]


def test_profiles_by_http(admin: TestClient) -> None:
    created = admin.post("/sourcing/profiles", json={"name": "web", "split_policy": "never"})
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    assert admin.post("/sourcing/profiles", json={"name": "web"}).status_code == 409

    changed = admin.put("/sourcing/profiles/web?expected_version=1", json={"max_shipments": 2})
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    stale = admin.put("/sourcing/profiles/web?expected_version=1", json={})
    assert stale.status_code == 409
    assert stale.headers["content-type"] == PROBLEM

    assert [p["version"] for p in admin.get("/sourcing/profiles/web/versions").json()] == [1, 2]
    assert admin.get("/sourcing/profiles/web?version=1").json()["document"]["split_policy"] == (
        "never"
    )
    assert [p["name"] for p in admin.get("/sourcing/profiles").json()] == ["web"]
    missing = admin.get("/sourcing/profiles/nope")
    assert missing.status_code == 404
    assert missing.json()["type"] == "/problems/sourcing-profile-not-found"


def test_a_bad_profile_is_a_422_problem_with_pointers(admin: TestClient) -> None:
    response = admin.post(
        "/sourcing/profiles", json={"name": "x", "split_policy": "sometimes", "speed": 3}
    )
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/sourcing-profile-invalid"
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert pointers == {"#/split_policy", "#/speed"}


def test_rules_by_http(admin: TestClient) -> None:
    admin.post("/sourcing/profiles", json={"name": "dc only", "allowed_types": ["dc"]})
    refused = admin.put("/sourcing/rules", json={"rules": [{"name": "r", "profile": "unknown"}]})
    assert refused.status_code == 422
    stored = admin.put(
        "/sourcing/rules",
        json={"rules": [{"name": "hazmat", "profile": "dc only", "item_flags": ["hazmat"]}]},
    )
    assert stored.status_code == 200, stored.text
    assert admin.get("/sourcing/rules").json()["version"] == 1


def test_what_if_simulation_changes_no_data(admin: TestClient) -> None:
    body = {"locations": LOCATIONS, "orders": ORDERS, "outage": {"STORE-1": "offline"}}
    response = admin.post("/sourcing/simulations", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["orders"] == 1
    assert result["changed_orders"][0]["current_sources"] == ["1:1@STORE-1"]
    assert result["changed_orders"][0]["simulated_sources"] == ["1:1@DC-EAST"]
    profile_change = admin.post(
        "/sourcing/simulations",
        json={
            "locations": LOCATIONS,
            "orders": ORDERS,
            "profile": {"name": "default", "allowed_types": ["dc"]},
        },
    )
    assert profile_change.json()["changed_orders"][0]["simulated_sources"] == ["1:1@DC-EAST"]
    assert admin.get("/sourcing/profiles").json() == []

    unknown = admin.post(
        "/sourcing/simulations",
        json={"locations": LOCATIONS, "orders": ORDERS, "outage": {"NOWHERE": "offline"}},
    )
    assert unknown.status_code == 422
    assert unknown.headers["content-type"] == PROBLEM


def test_care_agents_read_decisions_but_do_not_change_profiles(
    client_for: Callable[..., TestClient], services: Services
) -> None:
    order = OrderIn.model_validate(ORDERS[0]).to_domain()
    snapshot = [LocationIn.model_validate(loc).to_domain() for loc in LOCATIONS]
    services.sourcing.record_decision(services.sourcing.plan(order, snapshot), trigger="capture")
    agent = client_for(Role.CARE_AGENT)
    decisions = agent.get("/sourcing/decisions/O1")
    assert decisions.status_code == 200, decisions.text
    explained = decisions.json()[0]["plan"]["explanation"][0]
    assert explained["chosen"] == [{"location": "STORE-1", "quantity": 1}]
    assert "STORE-1" in explained["summary"]
    assert agent.get("/sourcing/decisions/O2").status_code == 404
    assert agent.get("/sourcing/profiles").status_code == 200
    assert agent.post("/sourcing/profiles", json={"name": "x"}).status_code == 403
    store = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    assert store.get("/sourcing/profiles").status_code == 403


def _oms(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from oms.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env={"OMS_DATABASE_URL": settings.resolved_database_url(), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_cli_set_list_show(settings: Settings, tmp_path: Path) -> None:
    file = tmp_path / "profiles.json"
    file.write_text(
        json.dumps(
            {
                "profiles": [{"name": "default"}, {"name": "stores first", "max_distance_km": 800}],
                "rules": {
                    "rules": [{"name": "app", "profile": "stores first", "channels": ["app"]}]
                },
            }
        )
    )
    done = _oms(settings, "sourcing", "set", str(file))
    assert done.returncode == 0, done.stderr
    assert "profile 'stores first' at version 1" in done.stdout
    assert "rules at version 1" in done.stdout

    listed = _oms(settings, "sourcing", "list")
    assert "stores first" in listed.stdout and "1 rule(s)" in listed.stdout
    shown = _oms(settings, "sourcing", "show", "stores first")
    assert json.loads(shown.stdout)["max_distance_km"] == 800

    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "split_policy": "sometimes"}')
    refused = _oms(settings, "sourcing", "set", str(bad))
    assert refused.returncode == 1
    assert refused.stderr.startswith("oms: the profile has 1 problem(s)")
    assert len(refused.stderr.strip().splitlines()) == 1
    missing = _oms(settings, "sourcing", "show", "nope")
    assert missing.returncode == 1 and "no sourcing profile 'nope'" in missing.stderr
