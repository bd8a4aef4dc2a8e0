"""Customer care over HTTP (issue 8, acceptance 3): an order is paid by card, shipped and
delivered, one unit comes back in store, is restocked (ATP rises at that store) and refunded;
an exchange ships a replacement; an appeasement above the agent's limit waits for a supervisor
and is refunded once approved.

Shipments go through fulfillment execution (release, acknowledge, pick, pack, ship, deliver),
which consumes the stock and captures the shipped amount on the card.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from oms.bootstrap import Services
from oms.domain.access import Role
from oms.domain.fulfillment import Package
from oms.domain.locations import LocationType
from tests.inventory_support import a_location, an_item, stock

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
    services.inventory.set_safety_stock_default(LocationType.STORE, 0)
    services.inventory.set_safety_stock_default(LocationType.DC, 0)
    services.inventory.create_location(
        a_location(
            "DC-EAST", latitude=40.71, longitude=-74.0, capabilities=["ship", "accept_returns"]
        )
    )
    services.inventory.create_location(
        a_location(
            "S1",
            type="store",
            latitude=40.76,
            longitude=-73.98,
            capabilities=["pickup", "accept_returns"],
        )
    )
    services.inventory.create_location(
        a_location("S2", type="store", latitude=42.36, longitude=-71.06, capabilities=["pickup"])
    )
    services.inventory.create_item(an_item("LAMP-01", name="Desk lamp"))
    stock(services, "LAMP-01", at="DC-EAST", on_hand=10)
    stock(services, "LAMP-01", at="S1", on_hand=1)
    return services


@pytest.fixture
def agent(shop: Services, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(Role.CARE_AGENT)


@pytest.fixture
def channel(shop: Services, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(Role.INTEGRATION)


def an_order(reference: str, quantity: int = 2, token: str = "tok_visa") -> dict[str, Any]:  # noqa: S107
    return {
        "channel": "web",
        "channel_reference": reference,
        "customer": {
            "customer_id": "C-9",
            "name": "Ann Lee",
            "email": "ann@example.com",
            "phone": "+1 212 555 0100",
        },
        "currency": "USD",
        "lines": [
            {
                "sku": "LAMP-01",
                "quantity": quantity,
                "unit_price": "40.00",
                "tax": str(Decimal("4.00") * quantity),
                "delivery": {"method": "ship", "address": HOME},
            }
        ],
        "payments": [{"method": "card", "token": token}],
    }


def ship_and_deliver(
    services: Services, order_id: str, quantity: int, shipment: str, *, deliver: bool = True
) -> None:
    """The warehouse's part, through fulfillment execution; a day passes first."""
    services.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]
    services.orders.release(order_id)
    [fulfillment] = [
        f for f in services.fulfillments.for_order(order_id) if f.status.value == "released"
    ]
    services.fulfillments.acknowledge(fulfillment.id)
    services.fulfillments.confirm_pick(fulfillment.id, 1, quantity)
    box = Package("P1", Decimal("1.2"), Decimal("30"), Decimal("20"), Decimal("10"), {1: quantity})
    services.fulfillments.pack(fulfillment.id, [box])
    shipped = services.fulfillments.ship(
        fulfillment.id, carrier="UPS", service="ground", tracking={"P1": shipment}
    )
    assert shipped.status.value == "shipped"
    if deliver:
        services.fulfillments.confirm_delivery(fulfillment.id)


def atp_at(services: Services, location: str) -> int:
    return services.inventory.item_availability("LAMP-01", location_codes=[location]).atp[location]


@pytest.mark.postgres
def test_ship_return_in_store_restock_and_refund(
    shop: Services, agent: TestClient, channel: TestClient, admin: TestClient,
    client_for: Callable[..., TestClient],
) -> None:  # fmt: skip
    created = channel.post("/orders", json=an_order("CARE-1"))
    assert created.status_code == 201, created.text
    order = created.json()
    number = order["order_number"]
    assert order["holds"] == [] if "holds" in order else True
    payment = admin.get(f"/payments/{number}").json()
    assert Decimal(payment["authorised_open"]) == Decimal("88.00")  # 2 x (40 + 4 tax)

    ship_and_deliver(shop, order["order_id"], 2, "SHP-1")
    payment = admin.get(f"/payments/{number}").json()
    assert Decimal(payment["captured"]) == Decimal("88.00")
    assert Decimal(payment["authorised_open"]) == Decimal("0")

    before = atp_at(shop, "S1")
    rma = agent.post(
        "/returns",
        json={
            "order_id": number,
            "method": "in_store",
            "location_code": "S1",
            "lines": [{"line_no": 1, "quantity": 1, "reason": "defective"}],
        },
    )
    assert rma.status_code == 201, rma.text
    rma_id = rma.json()["return_id"]
    assert rma.json()["status"] == "authorised"
    assert Decimal(rma.json()["lines"][0]["unit_value"]) == Decimal("44.00")

    # a third unit cannot be returned: only two were handed over, one is on this return
    too_many = agent.post(
        "/returns",
        json={
            "order_id": number,
            "method": "mail",
            "location_code": "DC-EAST",
            "lines": [{"line_no": 1, "quantity": 2, "reason": "other"}],
        },
    )
    assert too_many.status_code == 409 and too_many.json()["returnable"] == 1

    store = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    elsewhere = client_for(Role.STORE_ASSOCIATE, locations=["S2"])
    assert (
        elsewhere.post(f"/returns/{rma_id}/receipts", json={"location_code": "S1"}).status_code
        == 403
    )
    received = store.post(f"/returns/{rma_id}/receipts", json={"location_code": "S1"})
    assert received.status_code == 200, received.text
    assert received.json()["status"] == "received"
    lines = channel.get(f"/orders/{order['order_id']}").json()["lines"]
    assert lines[0]["quantities"] == [
        {"state": "delivered", "location_code": "DC-EAST", "quantity": 1},
        {"state": "returned", "location_code": None, "quantity": 1},
    ] or {q["state"]: q["quantity"] for q in lines[0]["quantities"]} == {
        "delivered": 1,
        "returned": 1,
    }

    inspected = store.post(
        f"/returns/{rma_id}/inspection",
        json={"dispositions": [{"line_no": 1, "disposition": "restock", "quantity": 1}]},
    )
    assert inspected.status_code == 200, inspected.text
    assert atp_at(shop, "S1") == before + 1  # back into ATP at the store

    refund = agent.post(f"/returns/{rma_id}/refund")
    assert refund.status_code == 200, refund.text
    assert refund.json()["status"] == "approved"
    assert Decimal(refund.json()["amount"]) == Decimal("44.00")
    assert refund.json()["return"]["status"] == "refunded"
    payment = admin.get(f"/payments/{number}").json()
    assert Decimal(payment["refunded"]) == Decimal("44.00")
    assert Decimal(payment["net_captured"]) == Decimal("44.00")
    again = agent.post(f"/returns/{rma_id}/refund")
    assert again.status_code == 409  # nothing paid out twice

    # the customer view shows it all, found by phone, name, email or order number
    for query in ("+1 212 555 0100", "ann lee", "ANN@example.com", number):
        found = agent.get("/care/customers", params={"q": query})
        assert found.status_code == 200, found.text
        assert [c["customer_key"] for c in found.json()] == ["C-9"], query
    assert (
        agent.post(f"/orders/{number}/notes", json={"text": "called about the flicker"}).status_code
        == 201
    )
    assert (
        agent.post("/care/customers/C-9/notes", json={"text": "prefers email"}).status_code == 201
    )
    shop.notifications.collect()
    view = agent.get("/care/customers/ann@example.com").json()
    assert [o["order_number"] for o in view["orders"]] == [number]
    assert [r["status"] for r in view["returns"]] == ["refunded"]
    assert [Decimal(r["amount"]) for r in view["refunds"]] == [Decimal("44.00")]
    assert sorted(n["text"] for n in view["notes"]) == ["called about the flicker", "prefers email"]
    contacts = {c["event_type"]: c for c in view["contacts"]}
    assert "Desk lamp" in shop.notifications.deliveries(recipient="ann@example.com")[0].body  # type: ignore[operator]
    assert contacts["order.created"]["status"] == "pending"
    assert contacts["payment.refunded"]["subject"]
    assert agent.get("/care/customers/nobody@example.com").status_code == 404


def test_an_exchange_ships_a_replacement(
    shop: Services, agent: TestClient, channel: TestClient
) -> None:
    order = channel.post("/orders", json=an_order("CARE-2", quantity=1)).json()
    ship_and_deliver(shop, order["order_id"], 1, "SHP-2")

    early = agent.post(
        "/returns",
        json={
            "order_id": order["order_id"],
            "method": "mail",
            "location_code": "DC-EAST",
            "lines": [{"line_no": 1, "quantity": 1, "reason": "size_or_fit"}],
            "resolution": "exchange",
            "allow_ship_before_return": True,
        },
    )
    assert early.status_code == 201, early.text
    replacement_id = early.json()["exchange_order_id"]
    replacement = channel.get(f"/orders/{replacement_id}").json()
    assert replacement["status"] == "allocated" and not replacement["on_hold"]
    assert "exchange" in replacement["tags"]
    # the replacement ships before the return arrives
    ship_and_deliver(shop, replacement_id, 1, "SHP-3", deliver=False)
    assert channel.get(f"/orders/{replacement_id}").json()["status"] == "shipped"
    # the replacement was free: there is nothing to capture for it
    assert channel.get(f"/payments/{replacement['order_number']}").status_code == 404

    received = agent.post(
        f"/returns/{early.json()['return_id']}/receipts", json={"location_code": "DC-EAST"}
    )
    assert received.status_code == 200
    closed = agent.post(f"/returns/{early.json()['return_id']}/exchange-closure")
    assert closed.json()["status"] == "exchanged"
    assert agent.post(f"/returns/{early.json()['return_id']}/refund").status_code == 409


def test_an_exchange_waits_for_the_return_unless_the_agent_allows_it(
    shop: Services, agent: TestClient, channel: TestClient
) -> None:
    order = channel.post("/orders", json=an_order("CARE-3", quantity=1)).json()
    ship_and_deliver(shop, order["order_id"], 1, "SHP-4")
    waiting = agent.post(
        "/returns",
        json={
            "order_id": order["order_id"],
            "method": "drop_off",
            "location_code": "S1",
            "lines": [{"line_no": 1, "quantity": 1, "reason": "wrong_item"}],
            "resolution": "exchange",
        },
    ).json()
    replacement_id = waiting["exchange_order_id"]
    assert channel.get(f"/orders/{replacement_id}").json()["on_hold"] is True
    assert channel.post(f"/orders/{replacement_id}/release").status_code == 409
    agent.post(f"/returns/{waiting['return_id']}/receipts", json={"location_code": "S1"})
    assert channel.get(f"/orders/{replacement_id}").json()["on_hold"] is False
    assert channel.post(f"/orders/{replacement_id}/release").status_code == 200


@pytest.mark.postgres
def test_an_appeasement_above_the_agents_limit_waits_for_a_supervisor(
    shop: Services, agent: TestClient, channel: TestClient, admin: TestClient
) -> None:
    order = channel.post("/orders", json=an_order("CARE-4")).json()
    number = order["order_number"]
    ship_and_deliver(shop, order["order_id"], 2, "SHP-5")

    small = agent.post(
        f"/orders/{number}/appeasements",
        json={"kind": "refund", "reason_code": "late_delivery", "amount": "10.00"},
    )
    assert small.status_code == 201, small.text
    assert small.json()["status"] == "issued" and small.json()["refund_status"] == "approved"

    big = agent.post(
        f"/orders/{number}/appeasements",
        json={"kind": "refund", "reason_code": "service_failure", "percent": "75"},
    )  # 75 % of 88.00 = 66.00 > the agent's 50.00
    assert big.status_code == 201, big.text
    assert big.json()["status"] == "pending_approval"
    assert Decimal(big.json()["amount"]) == Decimal("66.00")
    assert Decimal(admin.get(f"/payments/{number}").json()["refunded"]) == Decimal("10.00")
    pending = agent.get("/appeasements", params={"status": "pending_approval"}).json()
    assert [p["appeasement_id"] for p in pending] == [big.json()["appeasement_id"]]

    denied = agent.post(f"/appeasements/{big.json()['appeasement_id']}/approval", json={})
    assert denied.status_code == 403
    approved = admin.post(
        f"/appeasements/{big.json()['appeasement_id']}/approval", json={"reason": "ok"}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "issued"
    assert Decimal(admin.get(f"/payments/{number}").json()["refunded"]) == Decimal("76.00")
    # more than is left to refund is refused by the payment rules, and changes nothing
    too_much = admin.post(
        f"/orders/{number}/appeasements",
        json={"kind": "refund", "reason_code": "goodwill", "amount": "20.00"},
    )
    assert too_much.status_code == 409
    assert Decimal(admin.get(f"/payments/{number}").json()["refunded"]) == Decimal("76.00")


def test_a_declined_card_holds_the_order_and_care_agents_give_reasons(
    shop: Services, agent: TestClient, channel: TestClient
) -> None:
    declined = channel.post("/orders", json=an_order("CARE-5", token="tok_decline")).json()
    assert declined["on_hold"] is True
    assert channel.post(f"/orders/{declined['order_id']}/release").status_code == 409
    events = [e["type"] for e in channel.get(f"/orders/{declined['order_id']}").json()["events"]]
    assert "order.hold_placed" in events

    order = channel.post("/orders", json=an_order("CARE-6")).json()
    no_reason = agent.post(f"/orders/{order['order_id']}/lines/1/quantity", json={"quantity": 1})
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["pointer"] == "#/reason"
    with_reason = agent.post(
        f"/orders/{order['order_id']}/lines/1/quantity",
        json={"quantity": 1, "reason": "customer called"},
    )
    assert with_reason.status_code == 200, with_reason.text
    cancelled = agent.post(
        f"/orders/{order['order_id']}/cancellations", json={"reason": "changed mind"}
    )
    assert cancelled.status_code == 200, cancelled.text
    payment = agent.get(f"/payments/{order['order_number']}").json()
    assert Decimal(payment["authorised_open"]) == Decimal("0")  # 44.00 then 44.00 released


def test_the_cli_finds_customers_and_refuses_unknown_returns_in_one_line(
    shop: Services, channel: TestClient, tmp_path: Path
) -> None:
    number = channel.post("/orders", json=an_order("CARE-CLI")).json()["order_number"]
    env = {
        **os.environ,
        "OMS_DATABASE_URL": shop.settings.resolved_database_url(),
        "OMS_DATA_DIR": str(tmp_path),
        "COLUMNS": "200",
    }

    def oms(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).with_name("oms")), "care", *arguments],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    found = oms("customers", number)
    assert found.returncode == 0, found.stderr
    assert "C-9" in found.stdout and "ann@example.com" in found.stdout
    missing = oms("return", "RMA-NOPE")
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "RMA-NOPE" in missing.stderr
