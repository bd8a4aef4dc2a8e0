"""Fulfillment over HTTP, one test per delivery method, from capture to delivered / collected:
short picks re-sourced elsewhere, a rejected fulfillment, store associates kept to their store,
stock, payment and the customer emails moving with each step."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services
from oms.domain.access import Role
from tests.orders_support import order_network, put

pytestmark = pytest.mark.e2e
HOME = {
    "name": "Ann Lee",
    "line1": "1 Main St",
    "city": "New York",
    "postal_code": "10001",
    "country": "US",
    "latitude": 40.75,
    "longitude": -73.99,
}


@pytest.fixture
def shop(services: Services) -> Services:
    order_network(services)
    return services


@pytest.fixture
def ops(shop: Services, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(Role.INTEGRATION)


def capture(
    client: TestClient, reference: str, lines: list[dict[str, Any]], services: Services
) -> dict[str, Any]:
    total = sum(int(line["quantity"]) * float(line["unit_price"]) for line in lines)
    response = client.post(
        "/orders",
        json={
            "channel": "web",
            "channel_reference": reference,
            "customer": {"name": "Ann Lee", "email": "ann@example.com"},
            "currency": "USD",
            "lines": lines,
            "payments": [{"method": "card", "token": "tok_visa"}],
        },
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    # capture authorised the order total on the card, under the order number (reserve and
    # collect pays when the customer collects)
    if all(line["delivery"]["method"] != "reserve_and_collect" for line in lines):
        payment = client.get(f"/payments/{order['order_number']}").json()
        assert payment["authorised_open"] == f"{total:.2f}"
    return order


def order_number(client: TestClient, order_id: str) -> str:
    number: str = client.get(f"/orders/{order_id}").json()["order_number"]
    return number


def a_line(sku: str, quantity: int, price: str, method: str, store: str | None = None) -> dict:  # type: ignore[type-arg]
    delivery: dict[str, Any] = {"method": method}
    if store:
        delivery["pickup_location_code"] = store
    else:
        delivery["address"] = HOME
    return {"sku": sku, "quantity": quantity, "unit_price": price, "delivery": delivery}


def release(client: TestClient, order_id: str) -> list[dict[str, Any]]:
    response = client.post("/fulfillments/releases", json={"order_id": order_id})
    assert response.status_code == 201, response.text
    released: list[dict[str, Any]] = response.json()
    return released


def step(client: TestClient, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post(path, json=body or {})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def refused(client: TestClient, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post(path, json=body or {})
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    return problem


def order_of(client: TestClient, order_id: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/orders/{order_id}").json()
    return found


def at_location(order: dict[str, Any]) -> dict[tuple[int, str, str | None], int]:
    """(line_no, state, location) -> units, from the order's quantities."""
    result: dict[tuple[int, str, str | None], int] = {}
    for line in order["lines"]:
        for bucket in line["quantities"]:
            key = (line["line_no"], bucket["state"], bucket.get("location_code"))
            result[key] = result.get(key, 0) + bucket["quantity"]
    return result


def on_hand(services: Services, sku: str, location: str) -> tuple[int, int]:
    found = services.inventory.item_availability(sku, location_codes=[location])
    position = found.positions[0]
    return position.on_hand, position.allocated


def events_of(client: TestClient, *types: str) -> list[dict[str, Any]]:
    page = client.get("/events", params={"type": list(types), "limit": 1000}).json()
    items: list[dict[str, Any]] = page["items"]
    return items


def ship_all(client: TestClient, fulfillment: dict[str, Any], tracking: str) -> dict[str, Any]:
    f_id = fulfillment["id"]
    packed = step(
        client,
        f"/fulfillments/{f_id}/pack",
        {
            "packages": [
                {
                    "package_id": "P1",
                    "weight_kg": "1.250",
                    "length_cm": "30",
                    "width_cm": "20",
                    "height_cm": "10",
                    "lines": [
                        {"line_no": line["line_no"], "quantity": line["picked"]}
                        for line in fulfillment["lines"]
                        if line["picked"]
                    ],
                }
            ]
        },
    )
    assert packed["status"] == "packed"
    return step(
        client,
        f"/fulfillments/{f_id}/ship",
        {"carrier": "UPS", "service": "ground", "tracking": {"P1": tracking}},
    )


# --- ship --------------------------------------------------------------------------------------


def test_ship_with_short_pick_and_rejection_to_delivered(
    shop: Services, ops: TestClient, client_for: Callable[..., TestClient]
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 3)
    put(shop, "LAMP-01", "S3", 1)
    put(shop, "LAMP-01", "DC-WEST", 5)
    put(shop, "SHADE-02", "DC-EAST", 2)
    order = capture(
        ops,
        "WEB-F-1",
        [a_line("LAMP-01", 3, "20.00", "ship"), a_line("SHADE-02", 1, "15.00", "ship")],
        shop,
    )
    order_id = order["order_id"]
    [east] = release(ops, order_id)
    assert (east["location_code"], east["status"]) == ("DC-EAST", "released")
    assert [(x["line_no"], x["quantity"]) for x in east["lines"]] == [(1, 3), (2, 1)]

    # nothing ships before it is picked and packed
    problem = refused(
        ops,
        f"/fulfillments/{east['id']}/ship",
        {"carrier": "UPS", "service": "ground", "tracking": {"P1": "1Z"}},
    )
    assert problem["type"] == "/problems/fulfillment-step-refused"
    assert "cannot be shipped" in problem["detail"]

    step(ops, f"/fulfillments/{east['id']}/acknowledge")
    # short pick: 2 of 3 lamps found; the missing one is sourced again, never at DC-EAST
    east = step(ops, f"/fulfillments/{east['id']}/lines/1/pick", {"picked": 2, "reason": "damaged"})
    assert east["lines"][0]["short"] == 1
    assert refused(ops, f"/fulfillments/{east['id']}/lines/1/pick", {"picked": 1})[
        "detail"
    ].endswith("already picked")
    east = step(ops, f"/fulfillments/{east['id']}/lines/2/pick", {"picked": 1})
    assert east["status"] == "picked"
    moved = at_location(order_of(ops, order_id))
    assert moved[(1, "picked", "DC-EAST")] == 2
    assert moved[(1, "released", "S3")] == 1  # the nearest other location with stock
    assert on_hand(shop, "LAMP-01", "DC-EAST") == (3, 2)

    # S3 rejects: its lamp goes to DC-WEST
    [s3] = [
        f
        for f in ops.get("/fulfillments", params={"order_id": order_id}).json()["items"]
        if f["location_code"] == "S3"
    ]
    box = {"package_id": "P1", "weight_kg": "1", "length_cm": "1", "width_cm": "1",
           "height_cm": "1", "lines": [{"line_no": 1, "quantity": 1}]}  # fmt: skip
    unpicked = refused(ops, f"/fulfillments/{s3['id']}/pack", {"packages": [box]})
    assert unpicked["type"] == "/problems/fulfillment-step-refused"
    rejected = step(
        ops, f"/fulfillments/{s3['id']}/reject", {"reason": "store closed for inventory"}
    )
    assert (rejected["status"], rejected["reason"]) == ("rejected", "store closed for inventory")
    assert on_hand(shop, "LAMP-01", "S3") == (1, 0)
    moved = at_location(order_of(ops, order_id))
    assert moved[(1, "released", "DC-WEST")] == 1
    assert (1, "released", "S3") not in moved
    # the short pick and the rejection are remembered for good, with their triggers
    refusals = ops.get(f"/orders/{order_id}/sourcing").json()["refusals"]
    assert {(r["line_no"], r["location_code"], r["trigger"]) for r in refusals} == {
        (1, "DC-EAST", "short_pick"),
        (1, "S3", "rejection"),
    }

    east = ship_all(ops, east, "1ZEAST")
    assert east["status"] == "shipped"
    assert east["packages"][0]["tracking_number"] == "1ZEAST"
    assert on_hand(shop, "LAMP-01", "DC-EAST") == (1, 0)  # consumed
    assert on_hand(shop, "SHADE-02", "DC-EAST") == (1, 0)
    payment = ops.get(f"/payments/{order_number(ops, order_id)}").json()
    assert payment["captured"] == "55.00"  # 2 x 20 + 15

    [west] = [
        f
        for f in ops.get("/fulfillments", params={"order_id": order_id}).json()["items"]
        if f["location_code"] == "DC-WEST"
    ]
    step(ops, f"/fulfillments/{west['id']}/acknowledge")
    west = step(ops, f"/fulfillments/{west['id']}/lines/1/pick", {"picked": 1})
    west = ship_all(ops, west, "1ZWEST")
    assert ops.get(f"/payments/{order_number(ops, order_id)}").json()["captured"] == "75.00"

    again = {"carrier": "UPS", "service": "x", "tracking": {"P1": "2"}}
    assert refused(ops, f"/fulfillments/{east['id']}/ship", again)["detail"].startswith(
        f"fulfillment {east['id']} is 'shipped'"
    )
    step(ops, f"/fulfillments/{east['id']}/deliver")
    step(ops, f"/fulfillments/{west['id']}/deliver")
    final = order_of(ops, order_id)
    assert final["status"] == "delivered"

    types = [e["type"] for e in events_of(ops, "fulfillment.released", "fulfillment.rejected",
             "fulfillment.picked", "fulfillment.shipped", "fulfillment.delivered")]  # fmt: skip
    assert types.count("fulfillment.released") == 3
    assert types.count("fulfillment.rejected") == 1
    assert types.count("fulfillment.shipped") == 2
    assert types.count("fulfillment.delivered") == 2
    shipped = events_of(ops, "fulfillment.shipped")[0]["data"]
    assert shipped["tracking_number"] == "1ZEAST"
    assert shipped["customer"]["email"] == "ann@example.com"
    assert {line["description"] for line in shipped["lines"]} == {
        "Item LAMP-01",
        "Item SHADE-02",
    } or shipped["lines"]

    # the shipped emails are rendered from these events
    shop.notifications.collect()
    mails = ops.get("/notifications", params={"recipient": "ann@example.com"}).json()
    shipped_mails = [m for m in mails if m["event_type"] == "fulfillment.shipped"]
    assert len(shipped_mails) == 2
    assert all(m["status"] == "pending" for m in shipped_mails), shipped_mails


def test_nothing_else_can_serve_a_rejected_line_then_it_is_backordered(
    shop: Services, ops: TestClient
) -> None:
    put(shop, "CHAIR-04", "DC-EAST", 1)
    order = capture(ops, "WEB-F-2", [a_line("CHAIR-04", 1, "99.00", "ship")], shop)
    [east] = release(ops, order["order_id"])
    step(ops, f"/fulfillments/{east['id']}/reject", {"reason": "cannot find it"})
    final = order_of(ops, order["order_id"])
    assert final["status"] == "backordered"
    assert on_hand(shop, "CHAIR-04", "DC-EAST") == (1, 0)
    assert (
        ops.post(f"/fulfillments/{east['id']}/reject", json={"reason": "again"}).status_code == 409
    )


def test_a_dc_going_offline_hands_back_its_released_unpicked_work(
    shop: Services, ops: TestClient, client_for: Callable[..., TestClient]
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 2)
    put(shop, "LAMP-01", "DC-WEST", 5)
    waiting = capture(ops, "WEB-F-OUT-1", [a_line("LAMP-01", 1, "20.00", "ship")], shop)
    started = capture(ops, "WEB-F-OUT-2", [a_line("LAMP-01", 1, "20.00", "ship")], shop)
    [untouched] = release(ops, waiting["order_id"])
    [picking] = release(ops, started["order_id"])
    assert {untouched["location_code"], picking["location_code"]} == {"DC-EAST"}
    step(ops, f"/fulfillments/{picking['id']}/lines/1/pick", {"picked": 1})

    admin = client_for(Role.ADMIN)
    assert admin.patch("/locations/DC-EAST", json={"status": "offline"}).status_code == 200

    # the unpicked fulfillment is rejected on the DC's behalf and its lamp comes from DC-WEST
    gone = ops.get(f"/fulfillments/{untouched['id']}").json()
    assert (gone["status"], gone["reason"]) == ("rejected", "location DC-EAST went offline")
    moved = at_location(order_of(ops, waiting["order_id"]))
    assert moved.get((1, "released", "DC-EAST"), 0) == 0
    assert moved[(1, "released", "DC-WEST")] + moved.get((1, "allocated", "DC-WEST"), 0) == 1
    # the picked one stays: its lamp is in the DC's hands
    kept = ops.get(f"/fulfillments/{picking['id']}").json()
    assert kept["status"] == "picked"
    assert at_location(order_of(ops, started["order_id"]))[(1, "picked", "DC-EAST")] == 1
    assert on_hand(shop, "LAMP-01", "DC-EAST") == (2, 1)


# --- pickup -----------------------------------------------------------------------------------


def test_click_and_collect_with_code_and_store_scoping(
    shop: Services, ops: TestClient, client_for: Callable[..., TestClient]
) -> None:
    put(shop, "BULB-03", "S1", 3)
    put(shop, "SHADE-02", "S1", 1)
    order = capture(
        ops,
        "WEB-F-3",
        [
            a_line("BULB-03", 2, "5.00", "pickup", "S1"),
            a_line("SHADE-02", 1, "15.00", "pickup", "S1"),
        ],
        shop,
    )
    [store] = release(ops, order["order_id"])
    s1 = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    s2 = client_for(Role.STORE_ASSOCIATE, locations=["S2"])
    assert [f["id"] for f in s1.get("/fulfillments").json()["items"]] == [store["id"]]
    assert s2.get("/fulfillments").json()["items"] == []
    assert s2.get(f"/fulfillments/{store['id']}").status_code == 403
    assert s2.post(f"/fulfillments/{store['id']}/acknowledge").status_code == 403
    assert s2.get("/fulfillments", params={"location_code": "S1"}).status_code == 403

    step(s1, f"/fulfillments/{store['id']}/acknowledge")
    assert refused(s1, f"/fulfillments/{store['id']}/ready-for-pickup")["status"] == 409
    step(s1, f"/fulfillments/{store['id']}/lines/1/pick", {"picked": 2})
    # the shade is missing: only S1 can serve a pickup there, so it waits (backordered)
    picked = step(
        s1, f"/fulfillments/{store['id']}/lines/2/pick", {"picked": 0, "reason": "not found"}
    )
    assert picked["status"] == "picked"
    assert at_location(order_of(ops, order["order_id"]))[(2, "backordered", None)] == 1
    ready = step(s1, f"/fulfillments/{store['id']}/ready-for-pickup")
    code = ready["pickup_code"]
    assert ready["status"] == "ready_for_pickup" and len(code) == 6
    [notice] = events_of(ops, "fulfillment.ready_for_pickup")
    assert notice["data"]["pickup_code"] == code
    assert notice["data"]["location"]["code"] == "S1"

    wrong = "AAAAAA" if code != "AAAAAA" else "BBBBBB"
    problem = refused(s1, f"/fulfillments/{store['id']}/hand-over", {"pickup_code": wrong})
    assert problem["type"] == "/problems/pickup-code-mismatch"
    collected = step(s1, f"/fulfillments/{store['id']}/hand-over", {"pickup_code": code.lower()})
    assert collected["status"] == "collected"
    assert on_hand(shop, "BULB-03", "S1") == (1, 0)
    assert ops.get(f"/payments/{order['order_number']}").json()["captured"] == "10.00"
    lines = at_location(order_of(ops, order["order_id"]))
    assert lines[(1, "collected", "S1")] == 2
    shop.notifications.collect()
    mails = ops.get("/notifications", params={"recipient": "ann@example.com"}).json()
    assert [
        m["status"] != "invalid" for m in mails if m["event_type"] == "fulfillment.ready_for_pickup"
    ] == [True]


def test_curbside_needs_check_in_then_override_hand_over(
    shop: Services, ops: TestClient, client_for: Callable[..., TestClient]
) -> None:
    put(shop, "LAMP-01", "S1", 1)
    order = capture(ops, "WEB-F-4", [a_line("LAMP-01", 1, "20.00", "curbside", "S1")], shop)
    [store] = release(ops, order["order_id"])
    s1 = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    step(s1, f"/fulfillments/{store['id']}/lines/1/pick", {"picked": 1})
    step(s1, f"/fulfillments/{store['id']}/ready-for-pickup")
    problem = refused(
        s1, f"/fulfillments/{store['id']}/hand-over", {"override_reason": "ID checked"}
    )
    assert "not checked in" in problem["detail"]
    bad = s1.post(f"/fulfillments/{store['id']}/check-in", json={"note": "hi"})
    assert bad.status_code == 422
    checked = step(s1, f"/fulfillments/{store['id']}/check-in", {"bay": "3", "car": "red Golf"})
    assert checked["check_in"] == {"bay": "3", "car": "red Golf"}
    collected = step(
        s1, f"/fulfillments/{store['id']}/hand-over", {"override_reason": "phone lost, ID checked"}
    )
    assert (collected["status"], collected["override_reason"]) == (
        "collected",
        "phone lost, ID checked",
    )
    assert order_of(ops, order["order_id"])["status"] == "collected"
    assert on_hand(shop, "LAMP-01", "S1") == (0, 0)


def test_reserve_and_collect_pays_at_collection(
    shop: Services, ops: TestClient, client_for: Callable[..., TestClient], clock: ControlledClock
) -> None:
    put(shop, "LAMP-01", "S1", 2)
    order = capture(
        ops, "WEB-F-5", [a_line("LAMP-01", 2, "20.00", "reserve_and_collect", "S1")], shop
    )
    assert on_hand(shop, "LAMP-01", "S1") == (2, 2)  # held for the customer
    [store] = release(ops, order["order_id"])
    s1 = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    step(s1, f"/fulfillments/{store['id']}/lines/1/pick", {"picked": 2})
    ready = step(s1, f"/fulfillments/{store['id']}/ready-for-pickup")
    assert ready["collect_by"].startswith((clock.now() + timedelta(days=3)).date().isoformat())
    # nothing is authorised before the customer comes: reserve and collect pays at collection
    assert ops.get(f"/payments/{order['order_number']}").status_code == 404
    step(s1, f"/fulfillments/{store['id']}/hand-over", {"pickup_code": ready["pickup_code"]})
    assert ops.get(f"/payments/{order['order_number']}").json()["captured"] == "40.00"
    assert order_of(ops, order["order_id"])["status"] == "collected"


def test_ship_to_store_transfer_then_collection(
    shop: Services, ops: TestClient, client_for: Callable[..., TestClient], clock: ControlledClock
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 4)
    put(shop, "LAMP-01", "S1", 0)
    # the store keeps 2 back for walk-in shoppers; goods sent for a customer are not held back
    shop.inventory.set_safety_stock("LAMP-01", "S1", quantity=2)
    order = capture(ops, "WEB-F-6", [a_line("LAMP-01", 2, "20.00", "ship_to_store", "S1")], shop)
    [dc] = release(ops, order["order_id"])
    assert (dc["location_code"], dc["destination_code"]) == ("DC-EAST", "S1")
    s1 = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    assert [f["id"] for f in s1.get("/fulfillments").json()["items"]] == [dc["id"]]
    assert s1.post(f"/fulfillments/{dc['id']}/acknowledge").status_code == 403  # the DC's step
    step(ops, f"/fulfillments/{dc['id']}/acknowledge")
    dc = step(ops, f"/fulfillments/{dc['id']}/lines/1/pick", {"picked": 2})
    assert refused(s1, f"/fulfillments/{dc['id']}/receive")["status"] == 409
    moving = ship_all(ops, dc, "TRUCK-7")
    assert moving["status"] == "in_transit"
    assert on_hand(shop, "LAMP-01", "DC-EAST") == (2, 0)
    supply = shop.inventory.item_availability("LAMP-01", location_codes=["S1"]).supply
    assert [(s.kind, s.quantity, s.status) for s in supply] == [("transfer", 2, "in_transit")]

    clock.advance(timedelta(days=1))  # on the road
    step(s1, f"/fulfillments/{dc['id']}/receive")
    assert on_hand(shop, "LAMP-01", "S1") == (2, 2)
    supply = shop.inventory.item_availability("LAMP-01", location_codes=["S1"]).supply
    assert [s.status for s in supply] in ([], ["received"])
    ready = step(s1, f"/fulfillments/{dc['id']}/ready-for-pickup")
    step(s1, f"/fulfillments/{dc['id']}/hand-over", {"pickup_code": ready["pickup_code"]})
    assert on_hand(shop, "LAMP-01", "S1") == (0, 0)
    assert order_of(ops, order["order_id"])["status"] == "collected"
    assert ops.get(f"/payments/{order['order_number']}").json()["captured"] == "40.00"


def test_dropship_purchase_order_shipped_by_the_vendor(
    shop: Services, ops: TestClient, client_for: Callable[..., TestClient]
) -> None:
    put(shop, "CHAIR-04", "V1", 3)
    order = capture(ops, "WEB-F-7", [a_line("CHAIR-04", 1, "99.00", "dropship")], shop)
    [po] = release(ops, order["order_id"])
    assert po["location_code"] == "V1"
    assert po["purchase_order"] == f"PO-{order['order_number']}-V1"
    vendor = client_for(Role.INTEGRATION)
    step(vendor, f"/fulfillments/{po['id']}/acknowledge")
    po = step(vendor, f"/fulfillments/{po['id']}/lines/1/pick", {"picked": 1})
    po = ship_all(vendor, po, "FEDEX-1")
    assert po["status"] == "shipped"
    step(vendor, f"/fulfillments/{po['id']}/deliver")
    assert order_of(ops, order["order_id"])["status"] == "delivered"
    assert ops.get(f"/payments/{order['order_number']}").json()["captured"] == "99.00"


# --- deadlines --------------------------------------------------------------------------------


def test_uncollected_pickup_reminded_then_cancelled_and_restocked(
    shop: Services, ops: TestClient, client_for: Callable[..., TestClient], clock: ControlledClock
) -> None:
    put(shop, "BULB-03", "S1", 2)
    order = capture(ops, "WEB-F-8", [a_line("BULB-03", 2, "5.00", "pickup", "S1")], shop)
    [store] = release(ops, order["order_id"])
    s1 = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    step(s1, f"/fulfillments/{store['id']}/lines/1/pick", {"picked": 2})
    step(s1, f"/fulfillments/{store['id']}/ready-for-pickup")
    atp = shop.inventory.item_availability("BULB-03", location_codes=["S1"]).total_atp
    assert atp == 0

    clock.advance(timedelta(days=1, hours=23))
    assert shop.fulfillments.run_pickup_deadlines().reminded == 0
    clock.advance(timedelta(hours=2))
    assert shop.fulfillments.run_pickup_deadlines().reminded == 1
    assert shop.fulfillments.run_pickup_deadlines().reminded == 0  # once
    [reminder] = events_of(ops, "fulfillment.pickup_reminder_due")
    assert reminder["data"]["order_id"] == order["order_id"]

    clock.advance(timedelta(days=5))
    run = shop.fulfillments.run_pickup_deadlines()
    assert (run.reminded, run.cancelled) == (0, 1)
    assert ops.get(f"/fulfillments/{store['id']}").json()["status"] == "cancelled"
    assert order_of(ops, order["order_id"])["status"] == "cancelled"
    assert shop.inventory.item_availability("BULB-03", location_codes=["S1"]).total_atp == 2
    assert ops.get(f"/payments/{order['order_number']}").json()["authorised_open"] == "0.00"


def test_reserve_and_collect_declined_at_collection_holds_the_order_and_keeps_the_goods(
    shop: Services, ops: TestClient, client_for: Callable[..., TestClient]
) -> None:
    put(shop, "LAMP-01", "S1", 2)
    response = ops.post(
        "/orders",
        json={
            "channel": "web",
            "channel_reference": "WEB-F-DECLINE",
            "customer": {"name": "Ann Lee", "email": "ann@example.com"},
            "currency": "USD",
            "lines": [a_line("LAMP-01", 1, "20.00", "reserve_and_collect", "S1")],
            "payments": [{"method": "card", "token": "tok_decline"}],
        },
    )
    assert response.status_code == 201, response.text
    order = response.json()
    [store] = release(ops, order["order_id"])
    s1 = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    step(s1, f"/fulfillments/{store['id']}/lines/1/pick", {"picked": 1})
    ready = step(s1, f"/fulfillments/{store['id']}/ready-for-pickup")

    declined = s1.post(
        f"/fulfillments/{store['id']}/hand-over", json={"pickup_code": ready["pickup_code"]}
    )

    assert declined.status_code == 409
    assert declined.json()["type"] == "/problems/payment-refused-at-collection"
    after = order_of(ops, order["order_id"])
    assert any(hold["type"] == "payment" for hold in after["holds"] if not hold.get("released_at"))
    assert ops.get(f"/fulfillments/{store['id']}").json()["status"] == "ready_for_pickup"
    assert on_hand(shop, "LAMP-01", "S1") == (2, 1)  # the goods stay, still held
