"""Orders over HTTP: every channel, a mixed-delivery order walked through its quantity states with
hand-computed statuses, problems for refused and invalid requests, history and search."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from oms.bootstrap import Services
from oms.domain.access import Role
from tests.orders_support import order_network, put

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"
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
    put(services, "LAMP-01", "DC-EAST", 2)
    put(services, "LAMP-01", "S2", 1)
    put(services, "SHADE-02", "S1", 2)
    put(services, "SHADE-02", "DC-EAST", 5)
    put(services, "BULB-03", "S1", 1)
    put(services, "CHAIR-04", "V1", 4)
    return services


@pytest.fixture
def integration(shop: Services, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(Role.INTEGRATION)


def body(
    reference: str, lines: list[dict[str, Any]], channel: str = "web", **extra: Any
) -> dict[str, Any]:
    return {
        "channel": channel,
        "channel_reference": reference,
        "customer": {
            "customer_id": "C-9",
            "name": "Ann Lee",
            "email": "ann@example.com",
            "phone": "+1 212 555 0100",
        },
        "currency": "USD",
        "lines": lines,
        "payments": [{"method": "card", "token": "tok_visa_4242", "amount": "253.49"}],
        **extra,
    }


def ship_line(sku: str, quantity: int, price: str, **extra: Any) -> dict[str, Any]:
    return {
        "sku": sku,
        "quantity": quantity,
        "unit_price": price,
        "delivery": {"method": "ship", "address": HOME},
        **extra,
    }


def store_line(sku: str, quantity: int, price: str, method: str, store: str) -> dict[str, Any]:
    return {
        "sku": sku,
        "quantity": quantity,
        "unit_price": price,
        "delivery": {"method": method, "pickup_location_code": store},
    }


def statuses(order: dict[str, Any]) -> list[str]:
    return [line["status"] for line in order["lines"]]


@pytest.mark.postgres
def test_every_channel_captures_and_a_retry_returns_the_same_order(integration: TestClient) -> None:
    prefixes = {"web": "W-", "app": "A-", "store": "S-", "call_center": "C-", "marketplace": "M-"}
    for channel, prefix in prefixes.items():
        request = body(f"{channel}-1", [ship_line("SHADE-02", 1, "12.50")], channel=channel)
        created = integration.post("/orders", json=request)
        assert created.status_code == 201, created.json()
        order = created.json()
        assert (order["channel"], order["status"], order["total"]) == (
            channel,
            "allocated",
            "12.50",
        )
        assert order["order_number"].startswith(prefix)
        assert created.headers["location"] == f"/orders/{order['order_id']}"
        again = integration.post("/orders", json=request)
        assert again.status_code == 200
        assert again.json()["order_id"] == order["order_id"]
    assert len(integration.get("/orders", params={"email": "ann@example.com"}).json()["items"]) == 5


@pytest.mark.postgres
def test_a_mixed_delivery_order_walks_its_quantity_states(
    integration: TestClient, client_for: Callable[..., TestClient]
) -> None:
    lines = [
        ship_line("LAMP-01", 3, "25.00", tax="6.00"),
        store_line("SHADE-02", 2, "12.50", "pickup", "S1"),
        store_line("BULB-03", 1, "4.00", "curbside", "S1"),
        {
            "sku": "CHAIR-04",
            "quantity": 1,
            "unit_price": "120.00",
            "discount": "20.00",
            "delivery": {
                "method": "dropship",
                "address": HOME,
                "gift": True,
                "gift_message": "Happy birthday",
            },
        },
        store_line("LAMP-01", 1, "25.00", "reserve_and_collect", "S2"),
        store_line("SHADE-02", 1, "12.50", "ship_to_store", "S1"),
    ]
    # 75 + 25 + 4 + 120 + 25 + 12.50 = 261.50; - 20 discount + 6 tax + 5.99 shipping = 253.49
    totals = {
        "subtotal": "261.50",
        "discount": "20.00",
        "tax": "6.00",
        "shipping": "5.99",
        "total": "253.49",
        "currency": "USD",
    }
    created = integration.post(
        "/orders", json=body("MIX-1", lines, shipping_charge="5.99", totals=totals)
    )
    assert created.status_code == 201, created.json()
    order = created.json()
    oid = order["order_id"]
    assert order["total"] == "253.49"
    # DC-EAST has only 2 lamps to ship: 1 waits; every other line is allocated where it must be
    assert statuses(order) == [
        "partially_allocated",
        "allocated",
        "allocated",
        "allocated",
        "allocated",
        "allocated",
    ]
    assert [
        (q["state"], q["location_code"], q["quantity"]) for q in order["lines"][0]["quantities"]
    ] == [
        ("backordered", None, 1),
        ("allocated", "DC-EAST", 2),
    ]
    where = {line["line_no"]: line["quantities"][0]["location_code"] for line in order["lines"]}
    assert where == {1: None, 2: "S1", 3: "S1", 4: "V1", 5: "S2", 6: "DC-EAST"}
    assert order["status"] == "partially_allocated"  # 8 allocated, 1 backordered

    released = integration.post(f"/orders/{oid}/release")
    assert released.status_code == 200, released.json()
    assert released.json()["status"] == "partially_released"  # 8 released, 1 backordered

    def move(
        line_no: int, quantity: int, source: str, target: str, location: str
    ) -> dict[str, Any]:
        response = integration.post(
            f"/orders/{oid}/lines/{line_no}/quantity-moves",
            json={
                "from_state": source,
                "to_state": target,
                "quantity": quantity,
                "location_code": location,
            },
        )
        assert response.status_code == 200, response.json()
        return response.json()  # type: ignore[no-any-return]

    move(1, 2, "released", "picked", "DC-EAST")
    now = move(1, 1, "picked", "shipped", "DC-EAST")
    assert now["lines"][0]["status"] == "partially_shipped"  # 1 shipped, 1 picked, 1 waiting
    assert now["status"] == "partially_shipped"
    move(2, 2, "released", "picked", "S1")
    move(2, 2, "picked", "ready_for_pickup", "S1")
    now = move(2, 1, "ready_for_pickup", "collected", "S1")
    assert now["lines"][1]["status"] == "partially_collected"
    for source, target in (("released", "picked"), ("picked", "shipped"), ("shipped", "delivered")):
        now = move(4, 1, source, target, "V1")
    assert statuses(now) == [
        "partially_shipped",
        "partially_collected",
        "released",
        "delivered",
        "released",
        "released",
    ]
    # furthest state anywhere is 'delivered' while other units are still on their way
    assert now["status"] == "partially_delivered"

    illegal = integration.post(
        f"/orders/{oid}/lines/3/quantity-moves",
        json={
            "from_state": "released",
            "to_state": "shipped",
            "quantity": 1,
            "location_code": "S1",
        },
    )
    assert illegal.status_code == 409
    assert illegal.json()["type"] == "/problems/quantity-transition-refused"
    store = client_for(Role.STORE_ASSOCIATE, locations=["S2"])
    foreign = store.post(
        f"/orders/{oid}/lines/3/quantity-moves",
        json={"from_state": "released", "to_state": "picked", "quantity": 1, "location_code": "S1"},
    )
    assert foreign.status_code == 403

    detail = integration.get(f"/orders/{oid}").json()
    assert detail["lines"][3]["delivery"]["gift_message"] == "Happy birthday"
    assert [f["location_code"] for f in detail["fulfillments"]] == ["DC-EAST", "S1", "S2", "V1"]
    actions = [entry["action"] for entry in detail["timeline"]]
    assert actions[:4] == ["created", "allocated", "backordered", "released"]
    assert actions.count("quantity_moved") == 8
    assert all(entry["actor"].startswith("api-key:") for entry in detail["timeline"])
    types = {e["type"] for e in detail["events"]}
    assert {
        "order.created",
        "order.allocated",
        "order.backordered",
        "order.released",
        "order.line.status_changed",
        "order.status_changed",
    } <= types


def test_refused_changes_are_409_problems_that_say_why(integration: TestClient) -> None:
    oid = integration.post("/orders", json=body("R-1", [ship_line("SHADE-02", 2, "12.50")])).json()[
        "order_id"
    ]
    hold = integration.post(f"/orders/{oid}/holds", json={"type": "payment", "reason": "declined"})
    assert hold.status_code == 201 and hold.json()["placed_by"].startswith("api-key:")
    held = integration.post(f"/orders/{oid}/release")
    assert (held.status_code, held.json()["type"]) == (409, "/problems/order-on-hold")
    assert "payment" in held.json()["detail"]
    integration.post(f"/orders/{oid}/holds/payment/release", json={"reason": "paid"})
    assert integration.post(f"/orders/{oid}/release").status_code == 200

    late = integration.post(f"/orders/{oid}/lines/1/quantity", json={"quantity": 1})
    assert late.status_code == 409
    assert late.headers["content-type"] == PROBLEM
    assert late.json()["type"] == "/problems/order-change-refused"
    assert "already released" in late.json()["detail"]
    cancel = integration.post(f"/orders/{oid}/cancellations", json={"reason": "changed mind"})
    assert cancel.status_code == 200
    assert cancel.json()["cancelled"] == 0
    # The engine ships from DC-EAST, not the nearer store S1: both are in the first shipping
    # zone (same parcel price), but the 2 units are S1's last 2 (protected_units 2), which costs
    # 2 x 2.50 last_unit_penalty = 5.00 of stock balance; DC-EAST costs no stock balance.
    assert cancel.json()["cancel_requests"][0]["location_code"] == "DC-EAST"
    explained = integration.get(f"/orders/{oid}/sourcing")
    assert explained.status_code == 200
    line = explained.json()["decisions"][0]["plan"]["explanation"][0]
    costs = {c["location"]: c for c in line["candidates"]}
    assert costs["S1"]["terms"]["stock_balance"] == "5.00"
    assert costs["DC-EAST"]["terms"]["stock_balance"] == "0.00"
    assert costs["S1"]["terms"]["shipping"] == costs["DC-EAST"]["terms"]["shipping"]
    assert integration.get("/orders/nope").status_code == 404


def test_invalid_orders_are_422_problems_with_field_pointers(integration: TestClient) -> None:
    bad = body(
        "BAD-1",
        [
            ship_line("NOPE", 1, "1.00"),
            ship_line("LAMP-01", 0, "1.00"),
            store_line("LAMP-01", 1, "1.00", "pickup", "S3"),
            {
                "sku": "LAMP-01",
                "quantity": 1,
                "unit_price": "1.00",
                "delivery": {"method": "ship", "address": {"name": "Ann", "country": "US"}},
            },
        ],
    )
    response = integration.post("/orders", json=bad)
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/invalid-order"
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert pointers == {
        "#/lines/0/sku",
        "#/lines/1/quantity",
        "#/lines/2/delivery/pickup_location_code",
        "#/lines/3/delivery/address/line1",
        "#/lines/3/delivery/address/city",
        "#/lines/3/delivery/address/postal_code",
    }
    card = body("CARD-1", [ship_line("SHADE-02", 1, "12.50")])
    card["payments"] = [{"method": "card", "token": "4242424242424242"}]
    refused = integration.post("/orders", json=card)
    assert (refused.status_code, refused.json()["type"]) == (422, "/problems/card-number-rejected")
    assert refused.json()["errors"][0]["pointer"] == "#/payments/0/token"
    smuggled = body("CARD-2", [ship_line("SHADE-02", 1, "12.50")])
    smuggled["payments"] = [{"method": "card", "token": "tok_1", "card_number": "4242424242424242"}]
    assert integration.post("/orders", json=smuggled).status_code == 422
    assert integration.get("/orders", params={"channel_reference": "CARD-1"}).json()["items"] == []


def test_search_pages_with_a_cursor(integration: TestClient) -> None:
    for index in range(5):
        integration.post("/orders", json=body(f"P-{index}", [ship_line("SHADE-02", 1, "1.00")]))
    first = integration.get("/orders", params={"limit": 2}).json()
    second = integration.get("/orders", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    third = integration.get("/orders", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    references = [o["channel_reference"] for page in (first, second, third) for o in page["items"]]
    assert sorted(references) == [f"P-{i}" for i in range(5)]
    assert len(set(references)) == 5 and third["next_cursor"] is None
    broken = integration.get("/orders", params={"cursor": "not-a-cursor"})
    assert broken.status_code == 422


def _oms(services: Services, tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OMS_DATABASE_URL": services.settings.resolved_database_url(),
        "OMS_DATA_DIR": str(tmp_path),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(Path(sys.executable).with_name("oms")), "order", *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_cli_shows_cancels_and_refuses_in_one_line(
    shop: Services, integration: TestClient, tmp_path: Path
) -> None:
    order = integration.post("/orders", json=body("CLI-1", [ship_line("SHADE-02", 2, "12.50")]))
    number = order.json()["order_number"]

    shown = _oms(shop, tmp_path, "show", number)
    assert shown.returncode == 0, shown.stderr
    # DC-EAST, not S1: S1's last 2 units are protected for walk-in shoppers (see above)
    assert number in shown.stdout and "2 allocated@DC-EAST" in shown.stdout

    cancelled = _oms(
        shop,
        tmp_path,
        "cancel",
        number,
        "--reason",
        "customer called",
        "--line",
        "1",
        "--quantity",
        "1",
    )
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled 1 unit(s)" in cancelled.stdout

    refused = _oms(
        shop, tmp_path, "cancel", number, "--reason", "again", "--line", "1", "--quantity", "5"
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0
    assert "only 1 of 1 unit(s) can still be cancelled" in refused.stderr
    found = _oms(shop, tmp_path, "search", "--reference", "CLI-1")
    assert number in found.stdout and "partially_allocated" not in found.stdout
