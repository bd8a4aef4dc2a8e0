"""The network and stock through HTTP and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from oms.bootstrap import Services
from oms.domain.access import Role

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"
OMS = str(Path(sys.executable).with_name("oms"))
BOSTON = {"latitude": 42.3601, "longitude": -71.0589}


def build_network(admin: TestClient) -> None:
    locations = [
        {
            "code": "DC-EAST",
            "name": "East DC",
            "type": "dc",
            "latitude": 40.7128,
            "longitude": -74.0060,
            "timezone": "America/New_York",
            "capabilities": ["ship", "receive_transfer"],
            "handling_cost": "1.25",
            "cutoff_time": "15:00",
            "pick_minutes": 120,
        },
        {
            "code": "S-BOS",
            "name": "Boston store",
            "type": "store",
            "latitude": 42.3555,
            "longitude": -71.0605,
            "timezone": "America/New_York",
            "capabilities": ["ship", "pickup", "curbside", "accept_returns"],
            "opening_hours": {"mon": [["09:00", "21:00"]], "tue": [["09:00", "21:00"]]},
            "pick_minutes": 30,
        },
        {
            "code": "S-CAM",
            "name": "Cambridge store",
            "type": "store",
            "status": "dark",
            "latitude": 42.3736,
            "longitude": -71.1097,
            "timezone": "America/New_York",
            "capabilities": ["ship", "pickup"],
        },
    ]
    for body in locations:
        response = admin.post("/locations", json=body)
        assert response.status_code == 201, response.text
    for sku in ("LAMP-01", "MUG-02"):
        assert admin.post("/items", json={"sku": sku, "name": sku}).status_code == 201
    snapshot = {
        "source": "wms",
        "as_of": "2026-01-05T08:00:00Z",
        "lines": [
            {"sku": "LAMP-01", "location": "DC-EAST", "on_hand": 20},
            {"sku": "LAMP-01", "location": "S-BOS", "on_hand": 5},
            {"sku": "LAMP-01", "location": "S-CAM", "on_hand": 9},
            {"sku": "MUG-02", "location": "S-BOS", "on_hand": 4},
        ],
    }
    response = admin.post("/inventory/snapshots", json=snapshot)
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 4


def test_locations_and_items_crud(admin: TestClient) -> None:
    build_network(admin)
    store = admin.get("/locations/S-BOS").json()
    assert store["capabilities"] == ["accept_returns", "curbside", "pickup", "ship"]
    assert admin.get("/locations/DC-EAST").json()["handling_cost"] == "1.25"

    changed = admin.patch("/locations/S-BOS", json={"status": "offline", "daily_capacity": 50})
    assert changed.status_code == 200
    assert (changed.json()["status"], changed.json()["daily_capacity"]) == ("offline", 50)
    assert admin.get("/locations", params={"type": "store"}).json()["items"][0]["code"] == "S-BOS"

    duplicate = admin.post("/items", json={"sku": "LAMP-01", "name": "again"})
    assert duplicate.status_code == 409
    assert duplicate.json()["type"] == "/problems/item-exists"
    bad = admin.post(
        "/locations",
        json={
            "code": "X",
            "name": "x",
            "type": "dc",
            "latitude": 1,
            "longitude": 2,
            "timezone": "Mars/Olympus",
        },
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["pointer"] == "#/timezone"
    assert admin.get("/items/NOPE").json()["type"] == "/problems/item-not-found"
    assert admin.patch("/items/MUG-02", json={"hazmat": True}).json()["hazmat"] is True
    assert admin.delete("/locations/S-CAM").json()["status"] == "closed"


def test_location_import_rejects_the_whole_file(admin: TestClient) -> None:
    csv_text = (
        "code,name,type,latitude,longitude,capabilities,opening_hours\n"
        "S1,One,store,40.1,-73.9,ship;pickup,mon=09:00-18:00;sat=10:00-14:00\n"
        "S2,Two,castle,40.2,-73.9,ship,\n"
        "S3,Three,store,140,-73.9,teleport,\n"
    )
    response = admin.post(
        "/locations/import", content=csv_text, headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "/problems/import-rejected"
    assert [row["row"] for row in body["rows"]] == [2, 3]
    assert {e["pointer"] for e in body["rows"][1]["errors"]} == {"#/latitude", "#/capabilities/0"}
    assert admin.get("/locations").json()["items"] == []

    fixed = csv_text.replace("castle", "dc").replace("140", "40.3").replace("teleport", "ship")
    response = admin.post("/locations/import", content=fixed, headers={"Content-Type": "text/csv"})
    assert response.json() == {
        "kind": "locations",
        "rows": 3,
        "created": 3,
        "updated": 0,
        "applied": 0,
        "unchanged": 0,
        "stale": [],
    }
    assert admin.get("/locations/S1").json()["opening_hours"]["sat"] == [["10:00", "14:00"]]


def test_availability_of_a_basket_near_me_and_promises(admin: TestClient) -> None:
    build_network(admin)
    basket = admin.post(
        "/availability",
        json={
            "lines": [{"sku": "LAMP-01", "quantity": 2}, {"sku": "MUG-02", "quantity": 1}],
            "method": "pickup",
            "destination": BOSTON,
            "radius_km": 30,
        },
    ).json()
    assert basket["fulfillable"] is True
    assert basket["single_locations"] == ["S-BOS"]  # S-CAM is dark: no walk-in customers
    assert basket["earliest_promise"] == "2026-01-05"  # Monday, opens 09:00 local, 30 min pick
    lamp = basket["lines"][0]
    assert [s["location"] for s in lamp["sources"]] == ["S-BOS"]
    assert lamp["sources"][0]["atp"] == 3  # 5 on hand minus the store's safety stock of 2

    shipped = admin.post(
        "/availability",
        json={
            "lines": [{"sku": "LAMP-01", "quantity": 31}],
            "method": "ship",
            "destination": BOSTON,
        },
    ).json()
    assert shipped["fulfillable"] is False
    assert shipped["lines"][0]["available"] == 20 + 3 + 7
    assert shipped["lines"][0]["reason"] == "not enough stock"

    near = admin.get(
        "/availability/near",
        params={**BOSTON, "radius_km": 10, "sku": ["LAMP-01:2"]},
    ).json()
    assert [(s["location"]["code"], s["has_all"]) for s in near] == [("S-BOS", True)]
    assert near[0]["distance_km"] < 1

    # Monday 09:00 UTC = 04:00 in New York: the DC ships today (before its 15:00 cut-off).
    promise = admin.get(
        "/availability/promise", params={"location": "DC-EAST", "method": "ship", **BOSTON}
    ).json()
    assert promise["ship_on"] == "2026-01-05"
    assert promise["deliver_on"] == "2026-01-06"


def test_holds_over_http_and_the_409_that_says_what_is_available(admin: TestClient) -> None:
    build_network(admin)
    hold = admin.post(
        "/reservations",
        json={
            "reference": "cart-1",
            "lines": [{"sku": "MUG-02", "quantity": 2, "location": "S-BOS"}],
        },
    )
    assert hold.status_code == 201
    refused = admin.post(
        "/reservations",
        json={
            "reference": "cart-2",
            "lines": [{"sku": "MUG-02", "quantity": 1, "location": "S-BOS"}],
        },
    )
    assert refused.status_code == 409
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["available"] == 0
    assert refused.json()["type"] == "/problems/insufficient-stock"

    hold_id = hold.json()["id"]
    confirmed = admin.post(f"/reservations/{hold_id}/confirmation")
    assert confirmed.json()["status"] == "confirmed"
    again = admin.delete(f"/reservations/{hold_id}")
    assert again.status_code == 409
    assert again.json()["type"] == "/problems/reservation-not-active"
    position = admin.get("/inventory/MUG-02").json()["positions"][0]
    assert (position["allocated"], position["reserved"], position["atp"]) == (2, 0, 0)


def test_deltas_channel_buffers_and_store_scoping(
    admin: TestClient, client_for: Callable[..., TestClient]
) -> None:
    build_network(admin)
    sale = {
        "source": "pos-bos",
        "deltas": [
            {
                "message_id": "t1",
                "sku": "LAMP-01",
                "location": "S-BOS",
                "kind": "sale",
                "quantity": 1,
                "occurred_at": "2026-01-05T08:30:00Z",
            }
        ],
    }
    store = client_for(Role.STORE_ASSOCIATE, locations=["S-BOS"])
    assert store.post("/inventory/deltas", json=sale).json()["applied"] == 1
    replay = store.post("/inventory/deltas", json=sale).json()
    assert replay["applied"] == 0 and replay["duplicates"][0]["message_id"] == "t1"
    elsewhere = {**sale, "deltas": [{**sale["deltas"][0], "location": "DC-EAST"}]}
    assert store.post("/inventory/deltas", json=elsewhere).status_code == 403

    assert (
        admin.put(
            "/inventory-settings/channel-buffers/marketplace", json={"percent": 50, "units": 1}
        ).status_code
        == 200
    )
    full = admin.get("/inventory/LAMP-01").json()
    marketplace = admin.get("/inventory/LAMP-01", params={"channel": "marketplace"}).json()
    assert full["atp"] == {"DC-EAST": 20, "S-BOS": 2, "S-CAM": 7}
    assert marketplace["atp"] == {"DC-EAST": 9, "S-CAM": 2}

    import_csv = "sku,location,on_hand\nLAMP-01,S-BOS,oops\nMUG-02,S-BOS,3\n"
    rejected = admin.post(
        "/inventory/imports", content=import_csv, headers={"Content-Type": "text/csv"}
    )
    assert rejected.status_code == 422
    assert rejected.json()["rows"] == [
        {"row": 1, "errors": [{"pointer": "#/on_hand", "detail": "'oops' is not a whole number"}]}
    ]


def test_cli_import_reports_every_bad_row(services: Services, tmp_path: Path) -> None:
    services.inventory.create_location(
        {"code": "DC-EAST", "name": "East", "type": "dc", "latitude": 40.7, "longitude": -74.0}
    )
    services.inventory.create_item({"sku": "LAMP-01", "name": "Lamp"})
    env = {
        **os.environ,
        "OMS_DATABASE_URL": services.settings.resolved_database_url(),
        "OMS_DATA_DIR": str(tmp_path),
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,location,on_hand\nLAMP-01,DC-EAST,4\nLAMP-01,NOWHERE,-1\n")
    run = subprocess.run(
        [OMS, "inventory", "import", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1
    assert "1 of 2 stock rows are not valid; nothing was imported" in run.stderr
    assert "unknown location 'NOWHERE'" in run.stderr and "must be >= 0" in run.stderr

    good = tmp_path / "good.csv"
    good.write_text("sku,location,on_hand\nLAMP-01,DC-EAST,4\n")
    run = subprocess.run(
        [OMS, "inventory", "import", str(good)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "stock: 1 rows; created 0, updated 0, applied 1" in run.stdout
    assert services.inventory.item_availability("LAMP-01").atp == {"DC-EAST": 4}


def test_store_associates_end_only_holds_at_their_stores(
    admin: TestClient, client_for: Callable[..., TestClient]
) -> None:
    build_network(admin)
    hold = admin.post(
        "/reservations",
        json={
            "reference": "c",
            "lines": [{"sku": "LAMP-01", "quantity": 1, "location": "DC-EAST"}],
        },
    ).json()
    store = client_for(Role.STORE_ASSOCIATE, locations=["S-BOS"])
    assert store.post(f"/reservations/{hold['id']}/confirmation").status_code == 403
    assert store.delete(f"/reservations/{hold['id']}").status_code == 403
    assert admin.delete(f"/reservations/{hold['id']}").json()["status"] == "released"
