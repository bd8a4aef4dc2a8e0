"""Order sourcing over HTTP and the CLI: a care agent reads why, a location refuses, an outage,
what-if over the latest orders."""

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
from tests.orders_support import an_order, line, order_network, put

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"


def sourcing_cli(shop: Services, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``oms sourcing ARGS`` against the shop's database, in another process."""
    env = {
        **os.environ,
        "OMS_DATABASE_URL": shop.settings.resolved_database_url(),
        "OMS_DATA_DIR": str(tmp_path),
        "COLUMNS": "200",
    }
    oms = str(Path(sys.executable).with_name("oms"))

    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [oms, "sourcing", *arguments],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    return run


@pytest.fixture
def shop(services: Services) -> Services:
    order_network(services)
    put(services, "LAMP-01", "DC-EAST", 5)
    put(services, "LAMP-01", "DC-WEST", 5)
    return services


def test_a_care_agent_reads_why_an_order_comes_from_where_it_does(
    shop: Services, client_for: Callable[..., TestClient]
) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 2))).order
    care = client_for(Role.CARE_AGENT)

    shown = care.get(f"/orders/{order.order_number}/sourcing")

    assert shown.status_code == 200
    body = shown.json()
    assert body["order_id"] == order.order_id and body["refusals"] == []
    [decision] = body["decisions"]
    assert decision["trigger"] == "capture"
    [explained] = decision["plan"]["explanation"]
    assert explained["chosen"] == [{"location": "DC-EAST", "quantity": 2}]
    assert "DC-EAST" in explained["summary"]
    assert {c["location"] for c in explained["candidates"]} == {"DC-EAST", "DC-WEST"}
    assert {"location": "S4", "filter": "status"} in [
        {k: e[k] for k in ("location", "filter")} for e in explained["excluded"]
    ]
    missing = care.get("/orders/NOPE/sourcing")
    assert (missing.status_code, missing.headers["content-type"]) == (404, PROBLEM)
    assert client_for(None).get(f"/orders/{order.order_id}/sourcing").status_code == 401


def test_a_store_associate_refuses_only_for_their_store_and_the_line_moves_on(
    shop: Services, client_for: Callable[..., TestClient]
) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 2))).order
    path = f"/orders/{order.order_id}/lines/1/refusals"
    refusal = {"location_code": "DC-EAST", "quantity": 2, "reason": "water damage"}

    elsewhere = client_for(Role.STORE_ASSOCIATE, locations=["S1"]).post(path, json=refusal)
    assert elsewhere.status_code == 403

    admin = client_for(Role.ADMIN)
    assert admin.post(path, json={**refusal, "trigger": "bored"}).status_code == 422
    assert admin.post(path, json={**refusal, "quantity": 3}).status_code == 409
    done = admin.post(path, json=refusal)
    assert done.status_code == 200, done.text
    assert done.json()["re_sourced"] == {"DC-WEST": 2}
    assert done.json()["excluded"] == ["DC-EAST"]
    shown = admin.get(f"/orders/{order.order_id}/sourcing").json()
    assert [r["location_code"] for r in shown["refusals"]] == ["DC-EAST"]
    assert [d["trigger"] for d in shown["decisions"]] == ["capture", "rejection"]


def test_an_outage_over_http_and_what_if_over_recent_orders(
    shop: Services, client_for: Callable[..., TestClient]
) -> None:
    for n in range(3):
        shop.orders.capture(an_order(line("LAMP-01", 1), reference=f"R-{n}"))
    admin = client_for(Role.ADMIN)

    what_if = admin.post(
        "/sourcing/simulations/recent", json={"orders": 3, "outage": {"DC-EAST": "offline"}}
    )
    assert what_if.status_code == 200, what_if.text
    assert what_if.json()["orders"] == 3
    assert len(what_if.json()["changed_orders"]) == 3
    bad = admin.post("/sourcing/simulations/recent", json={"orders": 0})
    assert (bad.status_code, bad.headers["content-type"]) == (422, PROBLEM)

    changed = admin.patch("/locations/DC-EAST", json={"status": "offline"})
    assert changed.status_code == 200, changed.text
    again = admin.post("/sourcing/locations/DC-EAST/replan").json()
    assert (again["status"], again["affected_units"]) == ("offline", 0)  # done on the change
    assert shop.inventory.item_availability("LAMP-01").atp.get("DC-WEST") == 2


def test_the_cli_simulates_the_latest_orders_and_explains_one(
    shop: Services, tmp_path: Path
) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 1))).order
    run = sourcing_cli(shop, tmp_path)
    simulated = run("simulate-recent", "--orders", "5", "--outage", "DC-EAST=offline")
    assert simulated.returncode == 0, simulated.stderr
    assert "1 order(s), 1 would change" in simulated.stdout
    wrong = run("simulate-recent", "--outage", "DC-EAST")
    assert wrong.returncode != 0 and "CODE=status" in (wrong.stdout + wrong.stderr)
    explained = run("explain", order.order_number)
    assert explained.returncode == 0, explained.stderr
    assert "capture (greedy)" in explained.stdout and "DC-EAST" in explained.stdout


def test_operations_refresh_and_read_the_bid_prices_over_http_and_the_cli(
    shop: Services, client_for: Callable[..., TestClient], tmp_path: Path
) -> None:
    for n in range(6):  # 5 from DC-EAST (near New York), 1 from DC-WEST: 4 units left, west
        shop.orders.capture(an_order(line("LAMP-01", 1), reference=f"BP-{n}"))
    admin = client_for(Role.ADMIN)
    reader = client_for(Role.CARE_AGENT)

    missing = reader.get("/sourcing/bid-prices")
    assert (missing.status_code, missing.headers["content-type"]) == (404, PROBLEM)
    assert "stock_opportunity" in missing.json()["detail"]
    off = admin.post("/sourcing/bid-prices", json={"orders": 6})
    assert off.status_code == 200, off.text
    assert off.json()["status"] == "off"  # no profile weighs it: nothing computed
    assert reader.post("/sourcing/bid-prices").status_code == 403
    bad = admin.post("/sourcing/bid-prices", json={"orders": 0, "scale": -1})
    assert (bad.status_code, bad.headers["content-type"]) == (422, PROBLEM)

    shop.sourcing.set_profile(
        {"name": "default", "weights": {"stock_opportunity": "1"}}, changed_by="test"
    )
    # twice the six orders' demand against the 4 units left: the west units are worth something
    done = admin.post("/sourcing/bid-prices", json={"orders": 6, "scale": 2})
    assert done.status_code == 200, done.text
    assert done.json() | {"lanes": 0} == {
        "status": "optimal",
        "history_orders": 6,
        "lanes": 0,
        "priced_skus": 1,
        "priced_locations": 1,
    }
    table = reader.get("/sourcing/bid-prices", params={"sku": ["LAMP-01", "NOPE-9"]})
    assert table.status_code == 200, table.text
    body = table.json()
    assert (body["history_orders"], body["scale"], body["priced_skus"]) == (6, 2.0, 1)
    assert set(body["stock"]) == {"LAMP-01"}
    assert set(body["stock"]["LAMP-01"]) == {"DC-WEST"}
    assert body["stock"]["LAMP-01"]["DC-WEST"] > 0
    assert reader.get("/sourcing/bid-prices", params={"sku": "NOPE-9"}).json()["stock"] == {}

    shown = sourcing_cli(shop, tmp_path)(
        "bid-prices", "--refresh", "--orders", "6", "--sku", "LAMP-01"
    )
    assert shown.returncode == 0, shown.stderr
    assert "refresh: optimal, 6 order(s)" in shown.stdout
    assert "1 SKU(s) priced" in shown.stdout and "DC-WEST" in shown.stdout
