"""Invoices issued when goods leave: one per shipment, a receipt per collection, each adding up
to exactly what was captured for it (absolute line tax and discount, shipping on the first)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services
from oms.domain.access import Role
from oms.domain.invoices import InvoiceLine
from oms.domain.payments import Money
from tests.e2e.test_fulfillment_api import (
    HOME,
    on_hand,
    refused,
    release,
    ship_all,
    step,
)
from tests.orders_support import order_network, put

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def shop(services: Services) -> Services:
    order_network(services)
    return services


@pytest.fixture
def ops(shop: Services, client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(Role.INTEGRATION)


def place(client: TestClient, reference: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(
        "/orders",
        json={
            "channel": "web",
            "channel_reference": reference,
            "customer": {"name": "Ann Lee", "email": "ann@example.com"},
            "currency": "USD",
            "payments": [{"method": "card", "token": "tok_visa"}],
            **body,
        },
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def captures(client: TestClient, number: str) -> dict[str, Decimal]:
    """shipment reference -> captured amount, from the payment ledger."""
    payment = client.get(f"/payments/{number}").json()
    found: dict[str, Decimal] = {}
    for t in payment["transactions"]:
        if t["kind"] == "capture":
            ref = t["shipment_ref"]
            found[ref] = found.get(ref, Decimal(0)) + Decimal(t["amount"])
    return found


def invoices_of(client: TestClient, number: str) -> list[dict[str, Any]]:
    response = client.get(f"/payments/{number}/invoices")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def test_two_shipments_give_two_invoices_that_add_up_to_the_captures(
    shop: Services, ops: TestClient, clock: ControlledClock
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 3)
    put(shop, "LAMP-01", "DC-WEST", 5)
    put(shop, "SHADE-02", "DC-EAST", 2)
    lamp = {"sku": "LAMP-01", "quantity": 3, "unit_price": "20.00", "discount": "1.00",
            "tax": "4.07", "delivery": {"method": "ship", "address": HOME}}  # fmt: skip
    shade = {"sku": "SHADE-02", "quantity": 1, "unit_price": "15.00", "tax": "1.20",
             "delivery": {"method": "ship", "address": HOME}}  # fmt: skip
    order = place(ops, "WEB-INV-1", {"lines": [lamp, shade], "shipping_charge": "5.99"})
    number = order["order_number"]
    # 63.07 + 16.20 + 5.99 shipping
    assert ops.get(f"/payments/{number}").json()["authorised_open"] == "85.26"

    [east] = release(ops, order["order_id"])
    step(ops, f"/fulfillments/{east['id']}/acknowledge")
    # the shipping charge goes with the order's first fulfillment: DC-WEST's comes later
    clock.advance(timedelta(minutes=5))
    # 2 of the 3 lamps found: the third is sourced again at DC-WEST (a second shipment)
    step(ops, f"/fulfillments/{east['id']}/lines/1/pick", {"picked": 2, "reason": "damaged"})
    east = step(ops, f"/fulfillments/{east['id']}/lines/2/pick", {"picked": 1})
    east = ship_all(ops, east, "1ZEAST")
    [first] = invoices_of(ops, number)
    assert first["kind"] == "invoice"
    assert first["order_ref"] == number and first["shipment_ref"] == east["shipment_id"]

    [west] = [
        f
        for f in ops.get("/fulfillments", params={"order_id": order["order_id"]}).json()["items"]
        if f["location_code"] == "DC-WEST"
    ]
    step(ops, f"/fulfillments/{west['id']}/acknowledge")
    west = step(ops, f"/fulfillments/{west['id']}/lines/1/pick", {"picked": 1})
    west = ship_all(ops, west, "1ZWEST")

    captured = captures(ops, number)
    assert captured == {
        east["shipment_id"]: Decimal("64.24"),
        west["shipment_id"]: Decimal("21.02"),
    }
    documents = {i["shipment_ref"]: i for i in invoices_of(ops, number)}
    assert set(documents) == set(captured)
    for ref, amount in captured.items():
        assert Decimal(documents[ref]["document"]["totals"]["gross"]) == amount
    assert sum(captured.values()) == Decimal("85.26")  # every cent of the order, once

    # first shipment: 2/3 of the lamp line (discount 0.67, tax 2.72 = 2.71 + the cent that
    # 2/3 x 63.07 = 42.0467 -> 42.05 rounds up to), the shade and the shipping charge
    doc = documents[east["shipment_id"]]["document"]
    rows = [(x["sku"], x["quantity"], x["unit_price"], x["discount"], x["tax"], x["gross"])
            for x in doc["lines"]]  # fmt: skip
    assert rows == [
        ("LAMP-01", 2, "20.00", "0.67", "2.72", "42.05"),
        ("SHADE-02", 1, "15.00", None, "1.20", "16.20"),
        ("SHIPPING", 1, "5.99", None, "0.00", "5.99"),
    ]
    assert doc["totals"] == {"net": "60.32", "tax": "3.92", "gross": "64.24"}
    assert doc["seller"]["name"] == "OMS Retail"
    assert doc["bill_to"]["name"] == "Ann Lee" and doc["bill_to"]["country"] == "US"
    # second shipment: the last lamp, 1/3 of the line (21.0233 -> 21.02), no shipping
    doc = documents[west["shipment_id"]]["document"]
    rows = [(x["sku"], x["quantity"], x["discount"], x["tax"], x["gross"]) for x in doc["lines"]]
    assert rows == [("LAMP-01", 1, "0.33", "1.35", "21.02")]
    # the line's discount and tax are split between the shipments without a cent lost
    assert Decimal("0.67") + Decimal("0.33") == Decimal(lamp["discount"])
    assert Decimal("2.72") + Decimal("1.35") == Decimal(lamp["tax"])
    assert documents[east["shipment_id"]]["number"] != documents[west["shipment_id"]]["number"]

    # the printable document renders
    html = ops.get(f"/invoices/{documents[east['shipment_id']]['invoice_id']}/document")
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "Invoice " + doc_number(documents, east) in html.text
    assert "LAMP-01" in html.text and "Shipping" in html.text and "64.24" in html.text

    # nothing is issued twice: shipping again is refused, and issuing the same document again
    # returns the one already issued
    again = {"carrier": "UPS", "service": "x", "tracking": {"P1": "2"}}
    refused(ops, f"/fulfillments/{east['id']}/ship", again)
    issued = documents[east["shipment_id"]]
    same = shop.invoices.issue(
        number,
        east["shipment_id"],
        currency="USD",
        lines=[
            InvoiceLine(
                x["sku"],
                x["description"],
                x["quantity"],
                Money.of(x["unit_price"], "USD"),
                tax_amount=Money.of(x["tax"], "USD"),
                discount=Money.of(x["discount"], "USD") if x["discount"] else None,
            )
            for x in issued["document"]["lines"]
        ],
        seller={},
        bill_to={},
        prices_include_tax=False,
    )
    assert (same.invoice_id, same.number) == (issued["invoice_id"], issued["number"])
    assert len(invoices_of(ops, number)) == 2


def doc_number(documents: dict[str, dict[str, Any]], f: dict[str, Any]) -> str:
    number: str = documents[f["shipment_id"]]["number"]
    return number


def test_pickup_hand_over_gives_a_receipt(
    shop: Services, ops: TestClient, client_for: Callable[..., TestClient]
) -> None:
    put(shop, "BULB-03", "S1", 3)
    pickup = {"method": "pickup", "pickup_location_code": "S1"}
    bulbs = {"sku": "BULB-03", "quantity": 2, "unit_price": "5.00", "discount": "0.50",
             "tax": "0.76", "delivery": pickup}  # fmt: skip
    order = place(ops, "WEB-INV-2", {"lines": [bulbs]})
    number = order["order_number"]
    [store] = release(ops, order["order_id"])
    s1 = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    step(s1, f"/fulfillments/{store['id']}/acknowledge")
    step(s1, f"/fulfillments/{store['id']}/lines/1/pick", {"picked": 2})
    ready = step(s1, f"/fulfillments/{store['id']}/ready-for-pickup")
    assert invoices_of(ops, number) == []  # nothing has left the store yet
    step(s1, f"/fulfillments/{store['id']}/hand-over", {"pickup_code": ready["pickup_code"]})
    assert on_hand(shop, "BULB-03", "S1") == (1, 0)

    [receipt] = invoices_of(ops, number)
    assert receipt["kind"] == "receipt"
    assert receipt["shipment_ref"].startswith("COL-")
    assert captures(ops, number) == {receipt["shipment_ref"]: Decimal("10.26")}
    doc = receipt["document"]
    assert doc["totals"] == {"net": "9.50", "tax": "0.76", "gross": "10.26"}
    assert [(x["sku"], x["quantity"], x["discount"], x["tax"]) for x in doc["lines"]] == [
        ("BULB-03", 2, "0.50", "0.76")
    ]
    html = ops.get(f"/invoices/{receipt['invoice_id']}/document")
    assert html.status_code == 200
    assert f"Receipt {receipt['number']}" in html.text
