"""Payments and invoices over HTTP, and the CLI's refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from oms.bootstrap import Services
from oms.domain.invoices import InvoiceLine
from oms.domain.payments import Money, Tender, TenderKind

pytestmark = pytest.mark.e2e


def issue_invoice(services: Services) -> str:
    invoice = services.invoices.issue(
        "W-2001",
        "SHP-1",
        currency="EUR",
        lines=[
            InvoiceLine("LAMP-01", "Desk lamp <b>", 2, Money.of("24.99", "EUR"), Decimal(19)),
            InvoiceLine("BOOK-02", "Cook book", 1, Money.of("10.00", "EUR"), Decimal(7)),
        ],
        seller={"name": "Shop GmbH", "vat_id": "DE123456789"},
        bill_to={"name": "Ada Lovelace", "city": "London"},
    )
    return invoice.invoice_id


def test_an_invoice_is_served_as_json_and_as_a_printable_document(
    app, client_for: Callable[..., TestClient]
) -> None:  # type: ignore[no-untyped-def]
    services: Services = app.state.services
    invoice_id = issue_invoice(services)
    assert issue_invoice(services) == invoice_id  # once per shipment
    agent = client_for("care_agent")

    response = agent.get(f"/invoices/{invoice_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["number"] == "INV-2026-000001"
    assert body["document"]["totals"] == {"net": "51.35", "tax": "8.63", "gross": "59.98"}
    assert [row["rate"] for row in body["document"]["tax_summary"]] == ["7", "19"]

    document = agent.get(f"/invoices/{invoice_id}/document")
    assert document.status_code == 200
    assert document.headers["content-type"].startswith("text/html")
    assert "Invoice INV-2026-000001" in document.text
    assert "59.98 EUR" in document.text and "Desk lamp &lt;b&gt;" in document.text

    listed = agent.get("/payments/W-2001/invoices").json()
    assert [i["invoice_id"] for i in listed] == [invoice_id]

    missing = agent.get("/invoices/nope")
    assert missing.status_code == 404
    assert missing.json()["type"] == "/problems/invoice-not-found"
    assert client_for(None).get(f"/invoices/{invoice_id}").status_code == 401
    associate = client_for("store_associate", locations=["S1"])
    assert associate.get(f"/invoices/{invoice_id}").status_code == 403


def test_payments_and_gateway_calls_are_readable(
    app, client_for: Callable[..., TestClient]
) -> None:  # type: ignore[no-untyped-def]
    services: Services = app.state.services
    services.payments.authorise(
        "W-2002", [Tender("card", TenderKind.CARD, "tok_timeout_once")], Money.of(1000, "JPY")
    )
    services.payments.capture("W-2002", Money.of(400, "JPY"), "SHP-1")
    agent = client_for("care_agent")

    payment = agent.get("/payments/W-2002").json()
    assert payment["currency"] == "JPY"
    assert (payment["captured"], payment["authorised_open"]) == ("400", "600")
    assert [t["kind"] for t in payment["transactions"]] == ["authorisation", "capture"]
    calls = agent.get("/payments/W-2002/gateway-calls").json()
    assert [(c["operation"], c["attempt"], c["outcome"]) for c in calls] == [
        ("authorise", 1, "timeout"), ("authorise", 2, "approved"),
        ("capture", 1, "timeout"), ("capture", 2, "approved"),
    ]  # fmt: skip
    assert agent.get("/payments/W-404").json()["type"] == "/problems/payment-not-found"


def test_contact_preferences_over_http(client_for: Callable[..., TestClient]) -> None:
    agent = client_for("care_agent")
    assert agent.get("/contact-preferences/ada@example.com").status_code == 404
    put = agent.put(
        "/contact-preferences/Ada@Example.com", json={"marketing_opt_out": True, "language": "de"}
    )
    assert put.status_code == 200
    assert put.json() == {
        "email": "ada@example.com", "email_enabled": True, "marketing_opt_out": True,
        "language": "de",
    }  # fmt: skip
    assert agent.get("/contact-preferences/ada@example.com").json()["language"] == "de"
    bad = agent.put("/contact-preferences/not-an-email", json={})
    assert bad.status_code == 422
    assert agent.get("/notifications", params={"recipient": "ada@example.com"}).json() == []


def test_cli_refuses_unknown_payments_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    env["OMS_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "oms.cli", "payments", "show", "W-404"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["oms: order 'W-404' has no payments"]
    sent = subprocess.run(
        [sys.executable, "-m", "oms.cli", "notifications", "dispatch"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert sent.returncode == 0 and "sent 0" in sent.stdout
